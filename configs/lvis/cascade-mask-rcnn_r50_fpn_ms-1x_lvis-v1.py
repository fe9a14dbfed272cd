# Baseline / stage 1: Cascade Mask R-CNN R50-FPN, LVIS v1 (Cascade "Baseline"
# of DisAlign Table 9 / 7 and TDE Table 4): mmdet's model, LVIS data (README).
_base_ = [
    './_base_/cascade-mask-rcnn_r50_fpn_lvis-v1.py',
    '../_base_/schedules/schedule_1x.py'
]
