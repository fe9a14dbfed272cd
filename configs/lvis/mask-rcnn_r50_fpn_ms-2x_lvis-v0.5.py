# Baseline / stage 1: Mask R-CNN R50-FPN, LVIS v0.5, mmdet's 2x multi-scale
# recipe, uniform sampling ("Baseline" of DisAlign Table 8 / 17, TDE Table 4).
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v0.5.py',
    '../_base_/schedules/schedule_2x.py'
]
