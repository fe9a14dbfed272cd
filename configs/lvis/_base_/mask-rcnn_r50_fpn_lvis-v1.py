# mmdet's Mask R-CNN R50-FPN on lt_mm's LVIS v1 data, LVIS test settings
# (as mmdet's lvis configs); no schedule: a leaf adds one.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './datasets/lvis_v1_uniform.py'
]

model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=_base_.num_classes),
        mask_head=dict(num_classes=_base_.num_classes)),
    test_cfg=dict(rcnn=dict(score_thr=0.0001, max_per_img=300)))
