# DisAlign stage 2, Mask R-CNN R50-FPN, LVIS v1 (DisAlign, CVPR 2021: reference
# README, LVIS v1 R50; v0.5 counterpart Table 8 / 17). Details: README.md.
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='DisAlignLinear'),
            loss_cls=dict(
                _delete_=True,
                type='GRWLoss',
                num_classes=_base_.num_classes,
                rho=0.8,
                stats_file=_base_.data_root +
                'annotations/lvis_v1_train_class_stats_images.json'))))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1-aa78ac3d.pth'  # noqa
custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=True)]

# 9k iterations, lr 0.02, x0.1 at 8k (DisAlign Sec. C.2); `end` is left to
# the runner (= train_cfg.max_iters)
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=9000,
    val_interval=9000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=False,
        milestones=[8000],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=9000))
log_processor = dict(by_epoch=False)
