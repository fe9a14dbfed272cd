# Baseline / stage 1: Mask R-CNN R50-FPN, LVIS v1, mmdet's 1x multi-scale
# recipe, uniform sampling ("Baseline" of DisAlign Table 8, TDE Table 4).
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v1.py',
    '../_base_/schedules/schedule_1x.py'
]
