# DisAlign* stage 2 (Zhang et al., CVPR 2021) on LVIS v1, Mask R-CNN R50-FPN
# with the cosine box classifier: DisAlign reference README (LVIS v1 R50
# cosine -> 24.8 / 24.2 box / mask AP); LVIS v0.5 counterpart: DisAlign
# Table 8 / Table 17 ("DisAlign*"). Same stage-2 recipe as
# mask-rcnn_r50_fpn_disalign_9k_lvis-v1.py (rho = 0.8, 9k iterations, lr
# 0.02, step at 8k); stage 1: mask-rcnn_r50_fpn_cosine_ms-1x_lvis-v1.py
# (set load_from to its checkpoint).
_base_ = './mask-rcnn_r50_fpn_disalign_9k_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                _delete_=True,
                type='DisAlignCosineLinear',
                scale=20.0,
                learn_scale=True))))

load_from = 'work_dirs/mask-rcnn_r50_fpn_cosine_ms-1x_lvis-v1/epoch_12.pth'
