# CDT, one stage, FCN-R50-D8, ADE20K (Ye et al., Eq. 3; no segmentation
# table: per-pixel transfer, DisAlign Table 16 split; README.md).
_base_ = './_base_/fcn_r50_ade20k.py'

model = dict(
    decode_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='CDTCrossEntropyLoss',
            gamma=0.1,
            stats_file='builtin:ade20k',
            num_classes=150)))
