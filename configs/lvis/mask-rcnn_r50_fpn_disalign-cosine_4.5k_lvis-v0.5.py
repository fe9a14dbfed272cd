# DisAlign* stage 2, Mask R-CNN R50-FPN, cosine classifier, LVIS v0.5
# (DisAlign Table 8 / 17 "DisAlign*"); stage 1: the cosine_ms-2x config.
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
