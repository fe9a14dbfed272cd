# tau-norm, post hoc (test only), FCN-R50-D8, ADE20K (Decoupling Eq. 3 /
# Table 2; per-pixel transfer, DisAlign Table 16 split; README.md).
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='TauNormConvSeg', tau=1.0)))

val_evaluator = dict(type='HeadBodyTailIoUMetric')
test_evaluator = val_evaluator

# (nothing trains; the stock schedule's `end` is left to the runner as in the
# other configs)
param_scheduler = [{
    k: v
    for k, v in _base_.param_scheduler[0].items() if k != 'end'
}]
