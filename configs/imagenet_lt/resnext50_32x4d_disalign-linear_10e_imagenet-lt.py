# DisAlign stage 2, linear classifier (DisAlign, CVPR 2021, Table 1 / Table
# 10 "DisAlign", X-50): rho = 1.2, 10 epochs (Sec. A.1). Details: README.md.
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(
    head=dict(
        type='DisAlignLinearClsHead',
        loss=dict(_delete_=True, type='GRWLoss', rho=1.2)))

custom_hooks = [dict(type='Stage2FreezeHook')]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
load_from = None  # required: --cfg-options load_from=<stage-1 checkpoint>

train_dataloader = dict(batch_size=32)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=2)
auto_scale_lr = dict(base_batch_size=256)
default_hooks = dict(checkpoint=dict(interval=2))
