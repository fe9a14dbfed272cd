# GRW alone, one stage (DisAlign Eq. 11, the "GR" ablation of its Table 5,
# on LVIS: no paper number), Mask R-CNN R50-FPN, LVIS v0.5, rho = 0.8.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type='GRWLoss',
                num_classes=_base_.num_classes,
                rho=0.8,
                stats_file=_base_.data_root +
                'annotations/lvis_v0.5_train_class_stats_images.json'))))
