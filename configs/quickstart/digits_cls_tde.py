# De-confounded training + TDE inference (Tang et al., NeurIPS 2020), one
# stage: the causal-norm classifier (K = 2, tau = 16, gamma = 1/32, as on
# ImageNet-LT, TDE Sec. 5) is trained jointly with the backbone while the
# head direction (buffer head.fc.head_direction) is updated at every
# training step. alpha is the test-time TDE strength: 1.0 here (TDE uses
# 1.0 on 10-class CIFAR-10-LT, 3.0 on ImageNet-LT); change it at test with
#   --cfg-options model.head.alpha=2.0
_base_ = './digits_cls_resnet_stage1.py'

model = dict(
    head=dict(
        _delete_=True,
        type='CausalNormClsHead',
        num_classes=10,
        in_channels=128,
        num_heads=2,
        tau=16.0,
        gamma=1 / 32,
        alpha=1.0,
        momentum=0.9,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
