# DisAlign stage 2, Mask R-CNN R50-FPN, LVIS v0.5 (DisAlign, CVPR 2021, Table
# 8 / Table 17 "DisAlign", box AP 23.9, mask AP 24.3). Details: README.md.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

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
                'annotations/lvis_v0.5_train_class_stats_images.json'))))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_2x_lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_2x_lvis-dbd06831.pth'  # noqa
custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=True)]

# 4.5k iterations, lr 0.02, x0.1 at 4k (DisAlign reference v0.5 config);
# `end` is left to the runner (= train_cfg.max_iters)
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=4500,
    val_interval=4500)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=False,
        milestones=[4000],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=4500))
log_processor = dict(by_epoch=False)
