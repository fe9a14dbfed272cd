# De-confound-TDE, one stage, FCN-R50-D8, ADE20K (TDE, NeurIPS 2020, Eq. 7-8;
# per-pixel transfer, DisAlign Table 16 split; README.md).
_base_ = './_base_/fcn_r50_ade20k.py'

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(
            type='CausalNormConvSeg',
            num_heads=2,
            tau=16.0,
            gamma=1 / 32,
            alpha=1.5,
            momentum=0.9)))
