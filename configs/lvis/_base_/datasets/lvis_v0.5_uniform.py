# mmdet's LVIS v0.5 data settings (multi-scale training) with uniform image
# sampling (no repeat-factor sampling) and lt_mm's LVIS metric.
_base_ = 'mmdet::_base_/datasets/lvis_v0.5_instance.py'

custom_imports = dict(imports=['lt_mm.det'], allow_failed_imports=False)

num_classes = 1230

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=_base_.dataset_type,
        data_root=_base_.data_root,
        ann_file='annotations/lvis_v0.5_train.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=_base_.train_pipeline))

val_evaluator = dict(type='LTLVISMetric')
test_evaluator = val_evaluator
