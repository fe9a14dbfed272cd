# cRT (Decoupling, Kang et al., ICLR 2020, Table 2 "cRT", Sec. 5): frozen
# stage-1 representation, classifier re-initialised and re-trained for 10
# epochs with class-balanced sampling (4 samples per class visit), batch
# 512, SGD lr 0.2 cosine (restarted), wd 5e-4.
# Stage-1 checkpoint: --cfg-options load_from=...
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(head=dict(type='CRTClsHead'))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))

custom_hooks = [dict(type='Stage2FreezeHook')]
load_from = None  # required: the stage-1 checkpoint

param_scheduler = dict(T_max=10)
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2))
