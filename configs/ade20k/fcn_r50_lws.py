# LWS stage 2, FCN-R50-D8 on ADE20K (Decoupling, ICLR 2020, Eq. 4 / Table 2
# "LWS"; per-pixel transfer): fcn_r50_disalign.py with LWS scales (README.md).
_base_ = './fcn_r50_disalign.py'

model = dict(
    decode_head=dict(
        classifier=dict(type='LWSConvSeg'),
        loss_decode=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            rho=0.3,
            stats_file='builtin:ade20k')))
