# Post-hoc logit adjustment z_c - tau * log N_c, tau = 1 (DisAlign Table 1
# "Logit Adjust (post)"); test only.
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

train_list = 'data/imagenet_lt/ImageNet_LT_train.txt'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        posthoc=dict(type='logit_adjust', tau=1.0, train_ann_file=train_list)))
