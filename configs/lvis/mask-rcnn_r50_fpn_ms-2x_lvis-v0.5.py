# Baseline / stage 1: Mask R-CNN R50-FPN, LVIS v0.5, mmdet's 2x multi-scale
# recipe, uniform sampling ("Baseline" of DisAlign Table 8 / 17, TDE Table 4).
_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-2x_lvis-v0.5.py'

custom_imports = dict(imports=['lt_mm.det'], allow_failed_imports=False)

dataset_type = 'LVISV05Dataset'
data_root = 'data/lvis_v0.5/'
num_classes = 1230

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v0.5_train.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline={{_base_.train_pipeline}}))

val_evaluator = dict(
    type='LTLVISMetric',
    ann_file=data_root + 'annotations/lvis_v0.5_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator

# the stock schedule; the step scheduler's `end` is left to the runner, which
# sets it to train_cfg.max_epochs (also under --cfg-options)
param_scheduler = [
    _base_.param_scheduler[0], {
        k: v
        for k, v in _base_.param_scheduler[1].items() if k != 'end'
    }
]
