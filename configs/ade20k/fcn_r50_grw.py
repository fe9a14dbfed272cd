# GRW only, stage 2, FCN-R50-D8, ADE20K (DisAlign Table 11 "calibration x,
# G-RW v" / Table 12): the stock conv_seg re-trained (README.md).
_base_ = './fcn_r50_disalign.py'

model = dict(
    decode_head=dict(
        _delete_=True,
        **{
            k: v
            for k, v in _base_.model.decode_head.items()
            if k not in ('type', 'head_type', 'classifier', 'loss_decode')
        },
        type='FCNHead',
        loss_decode=dict(
            type='GRWCrossEntropyLoss',
            rho=0.3,
            stats_file='builtin:ade20k',
            num_classes=150)))

custom_hooks = [
    dict(type='Stage2FreezeHook', trainable=['decode_head.conv_seg'])
]
