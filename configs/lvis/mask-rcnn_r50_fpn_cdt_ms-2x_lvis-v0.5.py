# Class-dependent temperatures (Ye et al., CDT Eq. 3; the paper's Tables
# 1-4 are classification only, no LVIS number) on the box classifier of
# Mask R-CNN R50-FPN, LVIS v0.5: a_j = (N_max / N_j)^gamma on the
# foreground classes (instances), background temperature 1, gamma = 0.1; raw
# logits at test.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

data_root = 'data/lvis_v0.5/'
num_classes = 1230

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
                'annotations/lvis_v0.5_train_class_stats_instances.json'))))
