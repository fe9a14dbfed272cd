# cRT, classifier re-training (Kang et al., ICLR 2020, Sec. 4): the stage-1
# backbone is frozen, `head.fc` is re-initialised when the stage-1
# checkpoint is loaded and re-trained with class-balanced sampling
# (Decoupling Sec. 5: 10 epochs, class-aware sampler with 4 samples per
# class; the same on the toy set, whose epochs are a few iterations).
# Stage-1 checkpoint on the command line: --cfg-options load_from=...
_base_ = './digits_cls_resnet_stage1.py'

model = dict(head=dict(type='CRTClsHead'))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))

custom_hooks = [dict(type='Stage2FreezeHook')]
load_from = None  # the stage-1 checkpoint, given with --cfg-options

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
# cosine over train_cfg.max_epochs (no T_max / end: see the stage-1 config)
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True)
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=1))
