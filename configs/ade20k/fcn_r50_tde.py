# De-confound-TDE, one stage, FCN-R50-D8, ADE20K (TDE, NeurIPS 2020, Eq. 7-8;
# per-pixel transfer, DisAlign Table 16 split; README.md).
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(
            type='CausalNormConvSeg',
            num_heads=2,
            tau=16.0,
            gamma=1 / 32,
            alpha=1.5,
            momentum=0.9)))

val_evaluator = dict(type='HeadBodyTailIoUMetric')
test_evaluator = val_evaluator

# the stock 160k schedule; `end` is left to the runner, which sets it to
# train_cfg.max_iters (also under --cfg-options)
param_scheduler = [{
    k: v
    for k, v in _base_.param_scheduler[0].items() if k != 'end'
}]
