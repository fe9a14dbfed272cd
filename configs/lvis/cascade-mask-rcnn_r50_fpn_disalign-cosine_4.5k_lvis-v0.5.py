# DisAlign* stage 2, Cascade Mask R-CNN R50-FPN, LVIS v0.5 (DisAlign, CVPR
# 2021, Table 7 / 18 "DisAlign*", box AP 32.2, mask AP 29.4; README.md).
_base_ = [
    './_base_/cascade-mask-rcnn_r50_fpn_lvis-v0.5.py',
    '../_base_/schedules/stage2_4.5k.py'
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
                'annotations/lvis_v0.5_train_class_stats_images.json'))
        for head in _base_.model.roi_head.bbox_head
    ]))

load_from = 'work_dirs/cascade-mask-rcnn_r50_fpn_cosine_ms-2x_lvis-v0.5/epoch_24.pth'  # noqa
