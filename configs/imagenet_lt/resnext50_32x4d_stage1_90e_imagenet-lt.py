# ImageNet-LT stage 1 ("joint", instance-balanced): ResNeXt-50 32x4d, 90
# epochs (Decoupling, ICLR 2020, Sec. 5 / Table 2 "Joint"). Data: README.md.
_base_ = 'mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py'

custom_imports = dict(imports=['lt_mm.cls'], allow_failed_imports=False)

data_root = 'data/imagenet_lt'
train_list = data_root + '/ImageNet_LT_train.txt'
num_classes = 1000

model = dict(head=dict(num_classes=num_classes, topk=(1, 5)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(
        _delete_=True,
        type='ImageNetLTDataset',
        data_root=data_root,
        ann_file='ImageNet_LT_train.txt',
        num_classes=num_classes,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    train_dataloader,
    dataset=dict(
        train_dataloader['dataset'],
        ann_file='ImageNet_LT_val.txt',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = dict(
    val_dataloader,
    dataset=dict(val_dataloader['dataset'], ann_file='ImageNet_LT_test.txt'))

# many (> 100 training images) / medium / few (< 20) top-1, overall top-1/5
val_evaluator = dict(
    _delete_=True,
    type='LongTailAccuracy',
    topk=(1, 5),
    train_ann_file=train_list,
    many_thr=100,
    few_thr=20)
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.2, momentum=0.9, weight_decay=5e-4))
# cosine to 0 over the run: T_max and `end` are left to the runner, which
# sets them to train_cfg.max_epochs (also under --cfg-options)
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', by_epoch=True, eta_min=0.0)
train_cfg = dict(by_epoch=True, max_epochs=90, val_interval=5)
auto_scale_lr = dict(base_batch_size=512)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook',
        interval=5,
        max_keep_ckpts=2,
        save_best='accuracy/top1'))
