# Generalized re-weighting alone (DisAlign Eq. 11, the "GR" ablation of
# DisAlign Table 5 transferred to LVIS; no paper number): one-stage Mask
# R-CNN R50-FPN on LVIS v0.5 with foreground weights r_j^-rho (rho = 0.8),
# background weight 1.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

data_root = 'data/lvis_v0.5/'
num_classes = 1230

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type='GRWLoss',
                num_classes=num_classes,
                rho=0.8,
                stats_file=data_root +
                'annotations/lvis_v0.5_train_class_stats_images.json'))))
