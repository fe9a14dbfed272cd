# Stage 1 with class-balanced sampling (Decoupling Eq. 1, q = 0; Table 5 /
# Figure 1 "Class-balanced").
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))
