# mmdet's 2x schedule and default runtime; the step scheduler's `end` is left
# to the runner, which sets it to train_cfg.max_epochs (also under --cfg-options).
_base_ = [
    'mmdet::_base_/schedules/schedule_2x.py',
    'mmdet::_base_/default_runtime.py'
]

param_scheduler = [
    _base_.param_scheduler[0], {
        k: v
        for k, v in _base_.param_scheduler[1].items() if k != 'end'
    }
]
