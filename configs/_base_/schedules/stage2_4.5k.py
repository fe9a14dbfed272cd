# DisAlign stage-2 schedule on LVIS v0.5 (its reference v0.5 config): 4.5k
# iterations, lr 0.02, x0.1 at 4k.
_base_ = './stage2_9k.py'

train_cfg = dict(max_iters=4500, val_interval=4500)
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], milestones=[4000])
]
default_hooks = dict(checkpoint=dict(interval=4500))
