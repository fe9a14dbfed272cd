# Quickstart tau-normalised classifier for segmentation (Decoupling, ICLR
# 2020, Eq. 3, per pixel), post hoc: the stage-1 checkpoint evaluated with
# `conv_seg` rows w_c / ||w_c|| ** tau and no bias (no training).
#
#   python tools/test.py configs/quickstart/digits_seg_taunorm.py \
#       work_dirs/digits_seg_fcn_stage1/iter_1500.pth
_base_ = './digits_seg_fcn_stage1.py'

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='TauNormConvSeg', tau=1.0)))
