# GRW only, stage 2 on ADE20K: FCN-R50-D8 -- the stock classifier `conv_seg`
# re-trained with the generalized re-weighting loss, no calibration
# (DisAlign, CVPR 2021, Table 11 row "calibration x, G-RW v" and Table 12
# column "Generalized Re-weighting" ablations, transferred to ADE20K).
#
# Stage 1 = the stock FCN-R50 160k checkpoint; everything frozen but
# `decode_head.conv_seg` (weight, bias), which continues from its stage-1
# values (not re-initialised); rho = 0.3 and the 8k schedule as
# fcn_r50_disalign.py.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    decode_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            rho=0.3,
            stats_file='builtin:ade20k',
            num_classes=150)),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

custom_hooks = [
    dict(type='Stage2FreezeHook', trainable=['decode_head.conv_seg'])
]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/fcn/fcn_r50-d8_512x512_160k_ade20k/fcn_r50-d8_512x512_160k_ade20k_20200615_100713-4edbc3b4.pth'  # noqa: E501

max_iters = 8000
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=800)
default_hooks = dict(checkpoint=dict(interval=800))

val_evaluator = dict(type='HeadBodyTailIoUMetric')
test_evaluator = val_evaluator
