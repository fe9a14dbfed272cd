# De-confound-TDE, one stage (TDE, NeurIPS 2020, Table 2, Sec. 5): causal-norm
# head K = 2, tau = 16, gamma = 1/32; alpha = 3.0 at test.
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(
    head=dict(
        _delete_=True,
        type='CausalNormClsHead',
        num_classes=1000,
        in_channels=2048,
        num_heads=2,
        tau=16.0,
        gamma=1 / 32,
        alpha=3.0,
        momentum=0.9,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
