# Baseline / stage 1: Cascade Mask R-CNN R50-FPN, LVIS v0.5 (Cascade
# "Baseline" of DisAlign Table 7 / 18): the v1 config on v0.5 data, 2x.
_base_ = './cascade-mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

dataset_type = 'LVISV05Dataset'
data_root = 'data/lvis_v0.5/'
num_classes = 1230

model = dict(
    roi_head=dict(
        bbox_head=[
            dict(head, num_classes=num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_head=dict(num_classes=num_classes)))

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v0.5_train.json',
        data_prefix=dict(img='train2017/')))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v0.5_val.json',
        data_prefix=dict(img='val2017/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json')
test_evaluator = val_evaluator

# 2x schedule (as mmdet's LVIS v0.5 configs); `end` left to the runner
train_cfg = dict(max_epochs=24)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]
