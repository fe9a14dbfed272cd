# Learnable weight scaling (LWS) stage 2 on ADE20K: FCN-R50-D8.
# (Decoupling, Kang et al., ICLR 2020, Eq. 4 / Table 2 "LWS"; the paper has no
# segmentation table, so this is the per-pixel transfer, evaluated with
# DisAlign's Table 16 split.)
#
# Stage 1 = the stock FCN-R50 160k checkpoint; only the per-class scales f of
# (W x + b) * f (`decode_head.conv_seg.lws.scales`) train. Pixels cannot be
# re-sampled class-balanced as in the paper, so the balancing comes from the
# GRW loss (DisAlign Sec. 3.2.2 makes the same argument for pixel tasks) with
# DisAlign's segmentation rho = 0.3; schedule as DisAlign's stage 2 (8k).
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='LWSConvSeg'),
        loss_decode=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            rho=0.3,
            stats_file='builtin:ade20k')),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

custom_hooks = [dict(type='Stage2FreezeHook')]
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
