# DisAlign* on Cascade Mask R-CNN R50-FPN, LVIS v0.5: DisAlign (Zhang et
# al., CVPR 2021) Table 7 / Table 18, ResNet-50 "DisAlign*" row (box AP 32.2,
# APr 21.6; mask AP 29.4). Stage 2 on the cosine cascade
# (cascade-mask-rcnn_r50_fpn_cosine_ms-2x_lvis-v0.5.py): every stage's fc_cls
# is calibrated on its foreground columns (alpha, beta, sigma(x)) and trained
# with GRW (rho = 0.8, background weight 1); everything else is frozen by
# Stage2FreezeHook. 4.5k iterations at lr 0.02, x0.1 at 4k.
_base_ = './cascade-mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

data_root = 'data/lvis_v0.5/'
num_classes = 1230

model = dict(
    roi_head=dict(bbox_head=[
        dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=stds),
            reg_class_agnostic=True,
            cls_predictor_cfg=dict(
                type='DisAlignCosineLinear', scale=20.0, learn_scale=True),
            loss_cls=dict(
                type='GRWLoss',
                num_classes=num_classes,
                rho=0.8,
                stats_file=data_root +
                'annotations/lvis_v0.5_train_class_stats_images.json'),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                     [0.033, 0.033, 0.067, 0.067])
    ]))

load_from = 'work_dirs/cascade-mask-rcnn_r50_fpn_cosine_ms-2x_lvis-v0.5/epoch_24.pth'  # noqa
custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=True)]

max_iters = 4500
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[4000],
        gamma=0.1)
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
