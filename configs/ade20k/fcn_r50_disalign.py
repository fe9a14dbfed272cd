# DisAlign stage 2, FCN-R50-D8 on ADE20K (DisAlign, CVPR 2021, Table 6 /
# Table 15 "FCN R-50"; head/body/tail split of Table 16). Choices: README.md.
_base_ = './_base_/fcn_r50_ade20k.py'

model = dict(
    pretrained=None,  # every weight comes from the stage-1 checkpoint
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='DisAlignConvSeg'),
        loss_decode=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            rho=0.3,
            stats_file='builtin:ade20k',
            reduction='mean')),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

custom_hooks = [dict(type='Stage2FreezeHook')]
find_unused_parameters = True  # frozen parameters: needed under DDP
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/fcn/fcn_r50-d8_512x512_160k_ade20k/fcn_r50-d8_512x512_160k_ade20k_20200615_100713-4edbc3b4.pth'  # noqa: E501

# 8k iterations (appendix B.2); the scheduler's `end` is left to the runner,
# which sets it to train_cfg.max_iters (also under --cfg-options)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, by_epoch=False)
]
train_cfg = dict(max_iters=8000, val_interval=800)
default_hooks = dict(checkpoint=dict(interval=800))
