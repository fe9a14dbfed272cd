# CDT box classifier (Ye et al., Eq. 3; its Tables 1-4 are classification:
# no LVIS table), Mask R-CNN R50-FPN, LVIS v1, gamma = 0.1 (README.md).
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type='CDTLoss',
                num_classes=_base_.num_classes,
                gamma=0.1,
                count_unit='instances',
                stats_file=_base_.data_root +
                'annotations/lvis_v1_train_class_stats_instances.json'))))
