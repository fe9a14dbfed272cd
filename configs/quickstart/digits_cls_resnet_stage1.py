# Quickstart / test stage 1 for classification: a small CIFAR-style ResNet
# trained jointly (instance-balanced sampling) on the long-tailed digits set
# written in the ImageNet-LT list format by `tools/quickstart.py`
# (lt_mm.toydata.make_imagenet_lt). This plays the role of the ImageNet-LT
# "joint" stage-1 model of Decoupling Table 2 / DisAlign Table 3 at toy scale.
_base_ = 'mmpretrain::resnet/resnet18_8xb16_cifar10.py'

custom_imports = dict(imports=['lt_mm.cls'], allow_failed_imports=False)

data_root = '{{$LT_MM_DATA_ROOT:data/quickstart}}/cls'
num_classes = 10

model = dict(
    backbone=dict(depth=18, stem_channels=16, base_channels=16),
    head=dict(num_classes=num_classes, in_channels=128))

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='ImageNetLTDataset',
        data_root=data_root,
        ann_file='ImageNet_LT_train.txt',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='ImageNetLTDataset',
        data_root=data_root,
        ann_file='ImageNet_LT_val.txt',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
# the test list, otherwise as val
test_dataloader = dict(
    val_dataloader,
    dataset=dict(val_dataloader['dataset'], ann_file='ImageNet_LT_test.txt'))

# many / medium / few accuracy; the split comes from the training list.
# ImageNet-LT uses many > 100 and few < 20 training images; the toy set has
# at most 100 images per class, so the thresholds are scaled down (the
# quickstart's training images 100 64 41 27 17 11 7 4 3 2: many = classes
# 0-3, medium = 4-5, few = 6-9).
val_evaluator = dict(
    _delete_=True,
    type='LongTailAccuracy',
    topk=(1, 5),
    train_ann_file=data_root + '/ImageNet_LT_train.txt',
    many_thr=25,
    few_thr=10)
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
# schedule length from train_cfg (mmengine's default `end`); a --resume
# with a longer train_cfg follows the longer schedule (ResumeScheduleHook)
param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', by_epoch=True)
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=30)
auto_scale_lr = dict(enable=False, base_batch_size=32)

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='CheckpointHook', interval=30, max_keep_ckpts=1),
    resume_schedule=dict(type='ResumeScheduleHook'))
randomness = dict(seed=0, deterministic=False)
