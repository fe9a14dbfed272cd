# CDT, class-dependent temperatures (Ye et al., Eq. 3), one stage, on the
# ImageNet-LT stage-1 recipe (Decoupling Sec. 5). CDT reports no ImageNet-LT
# table; gamma and the deferred start follow its iNaturalist setting
# (Table 3, App. A.4: gamma = 0 for the first half of the 90 epochs, then
# gamma > 0; its iNaturalist grid is [0, 0.1]).
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

train_list = 'data/imagenet_lt/ImageNet_LT_train.txt'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        loss=dict(
            _delete_=True,
            type='CDTLoss',
            gamma=0.1,
            start_epoch=45,
            train_ann_file=train_list)))
