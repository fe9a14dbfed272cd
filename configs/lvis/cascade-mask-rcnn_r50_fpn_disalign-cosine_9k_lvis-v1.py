# DisAlign* stage 2, Cascade Mask R-CNN R50-FPN, LVIS v1 (DisAlign, CVPR
# 2021, Table 9 "DisAlign*"): every stage calibrated (README.md).
_base_ = [
    './_base_/cascade-mask-rcnn_r50_fpn_lvis-v1.py',
    '../_base_/schedules/stage2_9k.py'
]

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
