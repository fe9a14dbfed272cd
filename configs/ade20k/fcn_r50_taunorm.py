# tau-norm, post hoc (test only), FCN-R50-D8, ADE20K (Decoupling Eq. 3 /
# Table 2; per-pixel transfer, DisAlign Table 16 split; README.md).
_base_ = './_base_/fcn_r50_ade20k.py'

model = dict(
    pretrained=None,
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='TauNormConvSeg', tau=1.0)))
