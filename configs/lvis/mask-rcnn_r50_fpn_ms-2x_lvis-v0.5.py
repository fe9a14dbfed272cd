# Baseline / stage 1: Mask R-CNN R50-FPN, LVIS v0.5, mmdet's 2x multi-scale
# recipe, uniform sampling ("Baseline" of DisAlign Table 8 / 17, TDE Table 4).
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v0.5.py',
    'mmdet::_base_/schedules/schedule_2x.py',
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
