# Quickstart DisAlign stage 2 for segmentation (DisAlign, CVPR 2021, Table 6
# protocol at toy scale; head/body/tail as Table 16): the stage-1 tiny FCN
# (digits_seg_fcn_stage1.py) is frozen and only DisAlign's alpha, beta and
# per-pixel sigma(x) around the stock `conv_seg` train, with the GRW loss on
# the training pixel frequencies (tools/class_stats.py writes them).
#
#   python tools/train.py configs/quickstart/digits_seg_disalign.py \
#       --cfg-options load_from=work_dirs/digits_seg_fcn_stage1/iter_1500.pth
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
            # average over the labelled pixels: ~80 % of a mosaic is
            # "other" (ignored); averaging over all pixels would scale the
            # gradient of alpha / beta / sigma down by ~5
            avg_non_ignore=True,
            stats_file=stats_file)),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

custom_hooks = [dict(type='Stage2FreezeHook')]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
load_from = None  # the stage-1 checkpoint: --cfg-options load_from=...

# Only alpha, beta and sigma(x) train (a few hundred parameters): a large
# learning rate and no weight decay on them. With the stage-1 settings
# (lr 0.01, weight decay 5e-4) 200 iterations moved alpha / beta by <= 0.03
# and sigma(x) stayed ~0.5, so the calibration never changed a pixel
# (issue #11); DisAlign's 8k ADE20K iterations are out of reach on a CPU.
optim_wrapper = dict(
    optimizer=dict(lr=0.1, weight_decay=0.0),
    paramwise_cfg=dict(
        custom_keys={'conv_seg.calibration': dict(decay_mult=0.0)}))
max_iters = 200
# poly over train_cfg.max_iters (no end: see the stage-1 config)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
