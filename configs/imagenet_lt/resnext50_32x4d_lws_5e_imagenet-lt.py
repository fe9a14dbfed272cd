# LWS (Decoupling, Kang et al., ICLR 2020, Eq. 4, Table 2 "LWS"): frozen
# stage-1 model, per-class scales learned for 5 epochs with class-balanced
# sampling, batch 512, SGD lr 0.2 cosine, wd 5e-4 (also on the scales, as
# the reference code).
# Stage-1 checkpoint: --cfg-options load_from=...
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(head=dict(type='LWSClsHead'))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))

custom_hooks = [dict(type='Stage2FreezeHook')]
load_from = None  # required: the stage-1 checkpoint

param_scheduler = dict(T_max=5)
train_cfg = dict(by_epoch=True, max_epochs=5, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1))
