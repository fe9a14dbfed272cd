# Baseline / stage 1: Cascade Mask R-CNN R50-FPN, LVIS v1 (DisAlign Table 9
# has Baseline* only; v0.5: Table 7 / 18 "Baseline"): mmdet's model (README).
_base_ = [
    './_base_/cascade-mask-rcnn_r50_fpn_lvis-v1.py',
    '../_base_/schedules/schedule_1x.py'
]
