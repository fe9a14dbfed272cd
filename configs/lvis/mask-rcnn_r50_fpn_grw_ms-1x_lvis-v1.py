# Generalized re-weighting alone (DisAlign, Zhang et al. CVPR 2021, Eq. 11;
# the "GR" ablation of its Table 5, transferred to LVIS as a one-stage
# re-weighted Mask R-CNN R50-FPN on LVIS v1 -- no paper number): the
# foreground classes of the box classifier are weighted by r_j^-rho
# (normalised to mean 1), the background keeps weight 1, rho = 0.8 (the
# DisAlign LVIS value). Class counts written once by
#   python -m lt_mm.det.counts data/lvis_v1/annotations/lvis_v1_train.json
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

data_root = 'data/lvis_v1/'
num_classes = 1203

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type='GRWLoss',
                num_classes=num_classes,
                rho=0.8,
                stats_file=data_root +
                'annotations/lvis_v1_train_class_stats_images.json'))))
