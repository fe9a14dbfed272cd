# Baseline / stage 1: Cascade Mask R-CNN R50-FPN, LVIS v0.5 (Cascade
# "Baseline" of DisAlign Table 7 / 18): mmdet's model, LVIS v0.5 data, 2x.
_base_ = [
    './_base_/cascade-mask-rcnn_r50_fpn_lvis-v0.5.py',
    '../_base_/schedules/schedule_2x.py'
]
