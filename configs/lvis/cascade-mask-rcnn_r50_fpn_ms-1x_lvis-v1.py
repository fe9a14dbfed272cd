# Baseline / stage 1: Cascade Mask R-CNN R50-FPN, LVIS v1 (Cascade "Baseline"
# of DisAlign Table 9 / 7 and TDE Table 4): mmdet's model, LVIS data (README).
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['lt_mm.det'], allow_failed_imports=False)

dataset_type = 'LVISV1Dataset'
data_root = 'data/lvis_v1/'
num_classes = 1203

model = dict(
    roi_head=dict(
        bbox_head=[
            dict(head, num_classes=num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_head=dict(num_classes=num_classes)),
    test_cfg=dict(rcnn=dict(score_thr=0.0001, max_per_img=300)))

# the LVIS data settings of mmdet::_base_/datasets/lvis_v1_instance.py
# (multi-scale training), without repeat-factor sampling
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736),
                (1333, 768), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v1_train.json',
        data_prefix=dict(img=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v1_val.json',
        data_prefix=dict(img='')))
test_dataloader = val_dataloader

val_evaluator = dict(
    _delete_=True,
    type='LTLVISMetric',
    ann_file=data_root + 'annotations/lvis_v1_val.json',
    metric=['bbox', 'segm'],
    backend_args=backend_args)
test_evaluator = val_evaluator

# the stock 1x schedule; the step scheduler's `end` is left to the runner,
# which sets it to train_cfg.max_epochs (also under --cfg-options)
param_scheduler = [
    _base_.param_scheduler[0], {
        k: v
        for k, v in _base_.param_scheduler[1].items() if k != 'end'
    }
]
