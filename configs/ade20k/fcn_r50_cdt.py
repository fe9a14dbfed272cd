# CDT, one stage, FCN-R50-D8, ADE20K (Ye et al., Eq. 3; no segmentation
# table: per-pixel transfer, DisAlign Table 16 split; README.md).
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='CDTCrossEntropyLoss',
            gamma=0.1,
            stats_file='builtin:ade20k',
            num_classes=150)))

val_evaluator = dict(type='HeadBodyTailIoUMetric')
test_evaluator = val_evaluator

# the stock 160k schedule; `end` is left to the runner, which sets it to
# train_cfg.max_iters (also under --cfg-options)
param_scheduler = [{
    k: v
    for k, v in _base_.param_scheduler[0].items() if k != 'end'
}]
