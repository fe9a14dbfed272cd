# Baseline / stage 1: Mask R-CNN R50-FPN, LVIS v1, mmdet's 1x ms recipe,
# uniform sampling (no v1 Mask R-CNN table; v0.5: DisAlign Table 8 Baseline).
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v1.py',
    '../_base_/schedules/schedule_1x.py'
]
