# De-confound-TDE, Cascade Mask R-CNN R101-FPN, LVIS v1 (TDE, NeurIPS 2020,
# Table 4, V1.0 rows): the R50 config with a ResNet-101.
_base_ = './cascade-mask-rcnn_r50_fpn_tde_ms-20e_lvis-v1.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
