# Baseline / stage 1: Cascade Mask R-CNN R50-FPN, LVIS v1 (Cascade "Baseline"
# of DisAlign Table 9 / 7 and TDE Table 4): mmdet's model, LVIS data (README).
_base_ = [
    './_base_/cascade-mask-rcnn_r50_fpn_lvis-v1.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]

# the step scheduler's `end` is left to the runner, which sets it to
# train_cfg.max_epochs (also under --cfg-options)
param_scheduler = [
    _base_.param_scheduler[0], {
        k: v
        for k, v in _base_.param_scheduler[1].items() if k != 'end'
    }
]
