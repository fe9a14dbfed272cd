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

# stage 1: the uniformly sampled baseline (Table 8 "Baseline", 20.8 box AP);
# mmdet's RFS checkpoint (sample1e-3, Table 8 "RFS" 23.6) is another stage 1
load_from = 'work_dirs/mask-rcnn_r50_fpn_ms-2x_lvis-v0.5/epoch_24.pth'
