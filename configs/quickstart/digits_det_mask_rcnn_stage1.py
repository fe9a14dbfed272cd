# Quickstart / test stage 1 for detection and instance segmentation: mmdet's
# LVIS v1 Mask R-CNN R50-FPN recipe shrunk to a tiny ResNet-18-FPN for 64x64
# canvases of digits written as an LVIS v1 json (r/c/f frequencies) by
# `tools/quickstart.py` (lt_mm.toydata.make_lvis). It stands in for the
# stock LVIS Mask R-CNN that DisAlign (Table 17) and TDE calibrate/train.
_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'

custom_imports = dict(imports=['lt_mm.det'], allow_failed_imports=False)

data_root = '{{$LT_MM_DATA_ROOT:data/quickstart}}/det/'
num_classes = 8
metainfo = dict(classes=tuple(f'digit_{i}' for i in range(num_classes)))

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        depth=18,
        base_channels=16,
        stem_channels=16,
        frozen_stages=-1,
        norm_eval=False,
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(
        in_channels=32,
        feat_channels=32,
        anchor_generator=dict(scales=[4], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(
            in_channels=32, fc_out_channels=64, num_classes=num_classes),
        # 7x7 mask RoIs -> 14x14 mask predictions (FCNMaskHead upsamples x2)
        mask_roi_extractor=dict(
            out_channels=32, roi_layer=dict(output_size=7)),
        mask_head=dict(
            num_convs=2,
            in_channels=32,
            conv_out_channels=32,
            num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(sampler=dict(num=64), mask_size=14)),
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(score_thr=0.0001, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='LVISV1Dataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/lvis_v1_train.json',
        data_prefix=dict(img=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='LVISV1Dataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/lvis_v1_val.json',
        data_prefix=dict(img=''),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# LVIS AP with APr / APc / APf, on the project's numpy (lt_mm.det)
val_evaluator = dict(
    _delete_=True,
    type='LTLVISMetric',
    ann_file=data_root + 'annotations/lvis_v1_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay=1e-4))
# 36 epochs (steps at 27 and 33, the 1x schedule's 9/12 and 11/12): the
# shortest of 12 / 24 / 36 / 48 after which the box classifier labels at
# least half of the common-class *training* boxes correctly (3 seeds: 12
# epochs 4 %, 24: 11 %, 36: 55 %, 48: 72 %); at 12 it labels almost every
# common and every rare box as another class, so no classifier
# re-balancing can show
# (`tools/analysis/det_disalign_experiment.py --gt-boxes`)
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# schedule length from train_cfg (mmengine's default `end`); a --resume
# with a longer train_cfg follows the longer schedule (ResumeScheduleHook)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
    resume_schedule=dict(type='ResumeScheduleHook'))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0, deterministic=False)
