# DisAlign* stage 2, Cascade Mask R-CNN R50-FPN, LVIS v1 (DisAlign, CVPR
# 2021, Table 9 "DisAlign*"): every stage calibrated (README.md).
_base_ = './cascade-mask-rcnn_r50_fpn_cosine_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(bbox_head=[
        dict(
            head,
            cls_predictor_cfg=dict(
                type='DisAlignCosineLinear', scale=20.0, learn_scale=True),
            loss_cls=dict(
                type='GRWLoss',
                num_classes=_base_.num_classes,
                rho=0.8,
                stats_file=_base_.data_root +
                'annotations/lvis_v1_train_class_stats_images.json'))
        for head in _base_.model.roi_head.bbox_head
    ]))

load_from = 'work_dirs/cascade-mask-rcnn_r50_fpn_cosine_ms-1x_lvis-v1/epoch_12.pth'  # noqa
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
