# De-confound-TDE, Cascade Mask R-CNN R101-FPN on LVIS v1.0: the setting of
# TDE (Tang et al., NeurIPS 2020) Table 4, V1.0 rows ("De-confound" 23.5 /
# "De-confound-TDE" 27.1 mask AP, APr 5.2 -> 16.0). Same as
# cascade-mask-rcnn_r50_fpn_tde_ms-20e_lvis-v1.py with a ResNet-101.
_base_ = './cascade-mask-rcnn_r50_fpn_tde_ms-20e_lvis-v1.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
