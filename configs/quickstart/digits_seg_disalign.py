# Quickstart DisAlign stage 2 for segmentation (DisAlign, CVPR 2021, Table 6
# protocol at toy scale; head/body/tail as Table 16): the stage-1 tiny FCN
# (digits_seg_fcn_stage1.py) is frozen and only DisAlign's alpha, beta and
# per-pixel sigma(x) around the stock `conv_seg` train, with the GRW loss on
# the training pixel frequencies (tools/class_stats.py writes them).
#
#   python tools/train.py configs/quickstart/digits_seg_disalign.py \
#       --cfg-options load_from=work_dirs/digits_seg_fcn_stage1/iter_400.pth
_base_ = './digits_seg_fcn_stage1.py'

stats_file = '{{$LT_MM_DATA_ROOT:data/quickstart}}/seg/class_stats.json'
model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='DisAlignConvSeg'),
        loss_decode=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            rho=0.3,  # DisAlign appendix B.2 (ADE20K)
            stats_file=stats_file)),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

custom_hooks = [dict(type='Stage2FreezeHook')]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
load_from = None  # the stage-1 checkpoint: --cfg-options load_from=...

optim_wrapper = dict(optimizer=dict(lr=0.01))
max_iters = 200
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
