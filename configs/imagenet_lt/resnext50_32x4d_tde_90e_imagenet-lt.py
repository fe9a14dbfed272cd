# De-confounded training + TDE inference, one stage (TDE, Tang et al.,
# NeurIPS 2020, Table 2 "De-confound-TDE", Sec. 5 implementation details):
# ResNeXt-50 32x4d, 90 epochs, batch 512, SGD lr 0.2 cosine, wd 5e-4;
# causal-norm classifier K = 2, tau = 16, gamma = 1/32, momentum 0.9;
# alpha = 3.0 at test (--cfg-options model.head.alpha=... to change it).
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
