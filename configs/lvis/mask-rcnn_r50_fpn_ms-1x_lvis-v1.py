# Baseline / stage 1 for the LVIS v1 configs of lt_mm: Mask R-CNN R50-FPN
# (the "Baseline" rows of DisAlign Table 8 and TDE Table 4, here on LVIS v1
# with mmdet's 1x multi-scale recipe). Unlike mmdet's stock LVIS config it
# samples images uniformly (no repeat-factor sampling), as the baselines of
# both papers; mmdet's RFS-trained checkpoint of
# mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py loads as stage 1
# as well (same parameter names).
# Evaluation: LTLVISMetric = official LVIS protocol (federated, 300
# detections per image) with AP, APr, APc, APf for bbox and segm on numpy 2.
_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'

custom_imports = dict(imports=['lt_mm.det'], allow_failed_imports=False)

dataset_type = 'LVISV1Dataset'
data_root = 'data/lvis_v1/'
num_classes = 1203

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v1_train.json',
        data_prefix=dict(img=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline={{_base_.train_pipeline}}))

val_evaluator = dict(
    type='LTLVISMetric',
    ann_file=data_root + 'annotations/lvis_v1_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator
