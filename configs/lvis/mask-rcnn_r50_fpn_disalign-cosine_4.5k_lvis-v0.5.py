# DisAlign* stage 2 on LVIS v0.5, Mask R-CNN R50-FPN with the cosine box
# classifier: DisAlign (Zhang et al., CVPR 2021) Table 8 / Table 17,
# ResNet-50 "DisAlign*" row (box AP 25.6, APr 13.7, APc 25.6, APf 30.5; mask
# AP 26.3). Recipe of mask-rcnn_r50_fpn_disalign_4.5k_lvis-v0.5.py; stage 1:
# mask-rcnn_r50_fpn_cosine_ms-2x_lvis-v0.5.py.
_base_ = './mask-rcnn_r50_fpn_disalign_4.5k_lvis-v0.5.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                _delete_=True,
                type='DisAlignCosineLinear',
                scale=20.0,
                learn_scale=True))))

load_from = 'work_dirs/mask-rcnn_r50_fpn_cosine_ms-2x_lvis-v0.5/epoch_24.pth'
