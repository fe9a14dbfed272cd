# DisAlign stage 2 (Zhang et al., CVPR 2021) on LVIS v1, Mask R-CNN R50-FPN,
# linear box classifier: DisAlign reference README (LVIS v1 R50: baseline
# 18.8 / 18.3 -> DisAlign 21.9 / 21.3 box / mask AP); the LVIS v0.5
# counterpart is DisAlign Table 8 / Table 17 ("DisAlign").
# Everything of the stage-1 detector is frozen (Stage2FreezeHook: backbone,
# neck, RPN, box-head fcs, fc_cls, box regression, mask head); only the
# calibration of the foreground columns of fc_cls trains (alpha, beta,
# sigma(x) from the box-head feature; background column unchanged), with the
# generalized re-weighting loss on the foreground classes (rho = 0.8,
# background weight 1): 9k iterations at lr 0.02, x0.1 at 8k, batch 16
# (DisAlign Sec. C.2: "extra 9K iterations with a learning rate of 0.02").
#
# Stage 1: mask-rcnn_r50_fpn_ms-1x_lvis-v1.py, or the stock mmdet LVIS v1
# checkpoint below. Class counts: LVIS category image counts, written once by
#   python -m lt_mm.det.counts data/lvis_v1/annotations/lvis_v1_train.json
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

data_root = 'data/lvis_v1/'
num_classes = 1203

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
                'annotations/lvis_v1_train_class_stats_images.json'))))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1-aa78ac3d.pth'  # noqa
custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=True)]

max_iters = 9000
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
        milestones=[8000],
        gamma=0.1)
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
