# CDT's post-hoc rule (Ye et al., Eq. 5) per pixel on the stage-1 tiny FCN:
# decision values z_c / N_c ** tau with the training pixel counts
# (tools/class_stats.py). No training:
#
#   python tools/test.py configs/quickstart/digits_seg_posthoc_nc_tau.py \
#       work_dirs/digits_seg_fcn_stage1/iter_1500.pth
#
# tau has no published value for segmentation: tune it on val
# (--cfg-options model.decode_head.posthoc.tau=...).
_base_ = './digits_seg_fcn_stage1.py'

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        posthoc=dict(
            type='nc_tau',
            tau=0.3,
            stats_file='{{$LT_MM_DATA_ROOT:data/quickstart}}/seg/'
            'class_stats.json')))
