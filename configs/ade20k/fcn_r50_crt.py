# cRT stage 2, FCN-R50-D8 on ADE20K (Decoupling, ICLR 2020, Sec. 4 / Table 2
# "cRT"; per-pixel transfer): conv_seg re-initialised, re-trained (README.md).
_base_ = './fcn_r50_disalign.py'

model = dict(
    decode_head=dict(
        classifier=dict(_delete_=True, type='CRTConvSeg'),
        loss_decode=dict(
            _delete_=True,
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0)))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))
