# tau-normalised classifier on ADE20K: FCN-R50-D8, post hoc (no training).
# (Decoupling, Kang et al., ICLR 2020, Eq. 3 / Table 2 "tau-normalized";
# the paper has no segmentation table, so this is the per-pixel transfer,
# evaluated with DisAlign's Table 16 split.)
#
# The stock FCN-R50 160k checkpoint evaluated with `conv_seg` rows rescaled
# to w_c / ||w_c|| ** tau and the bias dropped. tau = 1.0 is a starting
# point: the Decoupling reference sweeps tau in [0, 2] (step 0.1) on val:
#
#   python tools/test.py configs/ade20k/fcn_r50_taunorm.py \
#       https://download.openmmlab.com/mmsegmentation/v0.5/fcn/fcn_r50-d8_512x512_160k_ade20k/fcn_r50-d8_512x512_160k_ade20k_20200615_100713-4edbc3b4.pth \
#       --cfg-options model.decode_head.classifier.tau=0.5
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
