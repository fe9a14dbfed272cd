# mmdet's Cascade Mask R-CNN R50-FPN on lt_mm's LVIS v0.5 data, LVIS test
# settings; no schedule: a leaf adds one.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './datasets/lvis_v0.5_uniform.py'
]

model = dict(
    roi_head=dict(
        bbox_head=[
            dict(head, num_classes=_base_.num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_head=dict(num_classes=_base_.num_classes)),
    test_cfg=dict(rcnn=dict(score_thr=0.0001, max_per_img=300)))

# the train pipeline, dataset and metric as the Cascade configs have always
# written them out (no `_scope_`: they resolve in the default scope mmdet;
# `backend_args` given)
train_pipeline = [
    {k: v for k, v in t.items() if k != '_scope_'}
    for t in _base_.train_pipeline
]
train_dataloader = dict(
    dataset=dict(pipeline=train_pipeline, backend_args=None))
val_evaluator = dict(
    _delete_=True,
    type='LTLVISMetric',
    ann_file=_base_.val_evaluator.ann_file,
    metric=['bbox', 'segm'],
    backend_args=None)
test_evaluator = val_evaluator
