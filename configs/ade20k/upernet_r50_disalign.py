# DisAlign stage 2 on ADE20K: UPerNet-R50 (not in the paper: DisAlign, CVPR
# 2021, Table 6 covers FCN and DeepLabV3+; same protocol, Table 16 split).
#
# Same recipe as fcn_r50_disalign.py (see the choices documented there): stage
# 1 = the stock mmseg UPerNet-R50 160k checkpoint, everything frozen but
# DisAlign's alpha, beta and sigma(x) around the stock `conv_seg` of UPerHead;
# GRW loss rho=0.3 (paper; reference code 0.2), 8k iterations (paper; reference
# code 4k), auxiliary loss off.
#
#   python tools/train.py configs/ade20k/upernet_r50_disalign.py
#   python tools/test.py configs/ade20k/upernet_r50_disalign.py \
#       work_dirs/upernet_r50_disalign/iter_8000.pth
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

model = dict(
    pretrained=None,  # every weight comes from the stage-1 checkpoint
    decode_head=dict(
        type='LTDecodeHead',
        head_type='UPerHead',
        classifier=dict(type='DisAlignConvSeg'),
        loss_decode=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            rho=0.3,
            stats_file='builtin:ade20k',
            reduction='mean')),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

custom_hooks = [dict(type='Stage2FreezeHook')]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/upernet/upernet_r50_512x512_160k_ade20k/upernet_r50_512x512_160k_ade20k_20200615_184328-8534de8d.pth'  # noqa: E501

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

# aAcc / mIoU / mAcc + mIoU_head/body/tail, mAcc_head/body/tail (Table 16)
val_evaluator = dict(type='HeadBodyTailIoUMetric')
test_evaluator = val_evaluator
