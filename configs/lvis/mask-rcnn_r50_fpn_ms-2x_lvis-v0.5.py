# Baseline / stage 1 for the LVIS v0.5 configs of lt_mm: Mask R-CNN R50-FPN,
# the "Baseline" row of DisAlign Table 8 / Table 17 (box AP 20.8, APr 3.3;
# mask AP 21.2) and of TDE Table 4 (V0.5), with mmdet's 2x multi-scale recipe
# (~90k iterations at batch 16, as the DisAlign baselines). Uniform image
# sampling (no repeat-factor sampling); mmdet's RFS-trained checkpoint of
# mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-2x_lvis-v0.5.py loads as stage
# 1 as well. Evaluation: LTLVISMetric (official LVIS protocol, APr/APc/APf).
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
