# mmdet's Cascade Mask R-CNN R50-FPN on lt_mm's LVIS v1 data, LVIS test
# settings; no schedule: a leaf adds one.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './datasets/lvis_v1_uniform.py'
]

model = dict(
    roi_head=dict(
        bbox_head=[
            dict(head, num_classes=_base_.num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_head=dict(num_classes=_base_.num_classes)),
    test_cfg=dict(rcnn=dict(score_thr=0.0001, max_per_img=300)))

# `backend_args` given, as the Cascade configs have always written them
train_dataloader = dict(dataset=dict(backend_args=None))
val_evaluator = dict(backend_args=None)
test_evaluator = val_evaluator
