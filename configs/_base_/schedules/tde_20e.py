# De-confound-TDE schedule (reference detection code): 20 epochs, lr 0.02
# (batch 16), x0.1 at 16 and 19; `end` is left to the runner.
_base_ = [
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
train_cfg = dict(max_epochs=20, val_interval=20)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=True,
        milestones=[16, 19],
        gamma=0.1)
]
