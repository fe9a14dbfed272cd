# CDT, class-dependent temperatures (Ye et al., Eq. 3), one stage; no
# ImageNet-LT table: gamma / start follow its iNaturalist Table 3 (README.md).
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        loss=dict(_delete_=True, type='CDTLoss', gamma=0.1, start_epoch=45)))
