# DisAlign stage 2 on the cosine classifier (DisAlign Table 1 / Table 10,
# "DisAlign*" row): stage 1 = resnext50_32x4d_cosine-stage1_90e; rho = 1.5
# for the cosine head (DisAlign Sec. A.1), 10 epochs, lr 0.1, batch 256.
# Stage-1 checkpoint: --cfg-options load_from=...
_base_ = './resnext50_32x4d_cosine-stage1_90e_imagenet-lt.py'

train_list = 'data/imagenet_lt/ImageNet_LT_train.txt'

model = dict(
    head=dict(
        type='DisAlignCosineClsHead',
        loss=dict(
            _delete_=True, type='GRWLoss', rho=1.5,
            train_ann_file=train_list)))

custom_hooks = [dict(type='Stage2FreezeHook')]
load_from = None  # required: the stage-1 checkpoint

train_dataloader = dict(batch_size=32)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(T_max=10)
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=2)
auto_scale_lr = dict(base_batch_size=256)
default_hooks = dict(checkpoint=dict(interval=2))
