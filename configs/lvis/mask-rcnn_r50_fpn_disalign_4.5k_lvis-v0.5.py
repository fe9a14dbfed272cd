# DisAlign stage 2 (Zhang et al., CVPR 2021) on LVIS v0.5, Mask R-CNN R50-FPN
# with the linear box classifier: DisAlign Table 8 / Table 17, ResNet-50
# "DisAlign" row (box AP 23.9, APr 7.5, APc 25.0, APf 29.1; mask AP 24.3).
# Frozen stage-1 detector (Stage2FreezeHook); only the foreground calibration
# of fc_cls (alpha, beta, sigma(x)) trains with GRW (rho = 0.8, background
# weight 1): 4.5k iterations at lr 0.02, x0.1 at 4k, batch 16 (DisAlign
# reference LVIS v0.5 config).
# Stage 1: mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py or the stock mmdet checkpoint
# below. Class counts: python -m lt_mm.det.counts \
#     data/lvis_v0.5/annotations/lvis_v0.5_train.json
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

data_root = 'data/lvis_v0.5/'
num_classes = 1230

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='DisAlignLinear'),
            loss_cls=dict(
                _delete_=True,
                type='GRWLoss',
                num_classes=num_classes,
                rho=0.8,
                stats_file=data_root +
                'annotations/lvis_v0.5_train_class_stats_images.json'))))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_2x_lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_2x_lvis-dbd06831.pth'  # noqa
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
