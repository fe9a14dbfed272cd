# Baseline / stage 1: Cascade Mask R-CNN R50-FPN, LVIS v0.5 (Cascade
# "Baseline" of DisAlign Table 7 / 18): mmdet's model, LVIS v0.5 data, 2x.
_base_ = [
    './_base_/cascade-mask-rcnn_r50_fpn_lvis-v0.5.py',
    'mmdet::_base_/schedules/schedule_2x.py',
    'mmdet::_base_/default_runtime.py'
]

# mmdet's 2x steps; the step scheduler's `end` is left to the runner, which
# sets it to train_cfg.max_epochs (also under --cfg-options)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]
