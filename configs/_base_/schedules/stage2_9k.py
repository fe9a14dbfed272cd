# DisAlign stage-2 schedule (Sec. C.2): 9k iterations, lr 0.02, x0.1 at 8k,
# frozen stage 1; `end` is left to the runner (= train_cfg.max_iters).
_base_ = [
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]

custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=True)]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=9000,
    val_interval=9000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=False,
        milestones=[8000],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=9000))
log_processor = dict(by_epoch=False)
