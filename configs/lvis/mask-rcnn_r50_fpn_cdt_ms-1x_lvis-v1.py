# Class-dependent temperatures (Ye et al., "Identifying and Compensating for
# Feature Deviation in Imbalanced Deep Learning", Eq. 3; the paper reports
# classification only, Tables 1-4, so there is no LVIS number to match) on
# the box classifier of Mask R-CNN R50-FPN, LVIS v1: training logits
# z_j / a_j with a_j = (N_max / N_j)^gamma for the foreground classes
# (N_j = training instances) and temperature 1 for the background; test uses
# the raw logits. gamma = 0.1 (the paper's range for the most imbalanced
# data, iNaturalist: [0, 0.1]). Class counts written once by
#   python -m lt_mm.det.counts data/lvis_v1/annotations/lvis_v1_train.json \
#       --unit instances
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

data_root = 'data/lvis_v1/'
num_classes = 1203

model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(
                _delete_=True,
                type='CDTLoss',
                num_classes=num_classes,
                gamma=0.1,
                count_unit='instances',
                stats_file=data_root +
                'annotations/lvis_v1_train_class_stats_instances.json'))))
