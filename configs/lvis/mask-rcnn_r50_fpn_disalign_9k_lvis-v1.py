# DisAlign stage 2, Mask R-CNN R50-FPN, LVIS v1 (DisAlign, CVPR 2021: reference
# README, LVIS v1 R50; v0.5 counterpart Table 8 / 17). Details: README.md.
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v1.py', '../_base_/schedules/stage2_9k.py'
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
                'annotations/lvis_v1_train_class_stats_images.json'))))

# stage 1: the uniformly sampled baseline (reference README: 18.8 box AP);
# mmdet's RFS checkpoint (sample1e-3) is another, stronger stage 1
load_from = 'work_dirs/mask-rcnn_r50_fpn_ms-1x_lvis-v1/epoch_12.pth'
