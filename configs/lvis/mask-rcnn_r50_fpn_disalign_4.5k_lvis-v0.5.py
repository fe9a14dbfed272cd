# DisAlign stage 2, Mask R-CNN R50-FPN, LVIS v0.5 (DisAlign, CVPR 2021, Table
# 8 / Table 17 "DisAlign", box AP 23.9, mask AP 24.3). Details: README.md.
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v0.5.py',
    '../_base_/schedules/stage2_4.5k.py'
]

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
