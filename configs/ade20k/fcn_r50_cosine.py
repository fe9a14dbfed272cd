# Cosine classifier, one stage, FCN-R50-D8, ADE20K (DisAlign Table 1 "*"
# classifier, per-pixel transfer; Table 16 split; README.md).
_base_ = './fcn_r50_tde.py'

model = dict(
    decode_head=dict(
        classifier=dict(_delete_=True, type='CosineConvSeg', scale=16.0)))
