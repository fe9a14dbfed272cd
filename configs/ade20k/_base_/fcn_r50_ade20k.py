# mmseg's FCN-R50-D8 160k ADE20K recipe with lt_mm.seg imported, the
# head/body/tail metrics of DisAlign Table 16 and the scheduler `end` left to
# the runner (it sets it to train_cfg.max_iters, also under --cfg-options).
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

val_evaluator = dict(type='HeadBodyTailIoUMetric')
test_evaluator = val_evaluator

param_scheduler = [{
    k: v
    for k, v in _base_.param_scheduler[0].items() if k != 'end'
}]
