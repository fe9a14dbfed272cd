# Quickstart cosine classifier for segmentation (the normalised classifier
# of DisAlign Table 1 "*" rows, per pixel), one stage: the stage-1 recipe
# with a `conv_seg` giving y_c = s * cos(x_p, w_c), s = 16, no bias.
#
#   python tools/train.py configs/quickstart/digits_seg_cosine.py
_base_ = './digits_seg_fcn_stage1.py'

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='CosineConvSeg', scale=16.0)))
