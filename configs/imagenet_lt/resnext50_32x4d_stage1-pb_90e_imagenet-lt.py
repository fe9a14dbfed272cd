# Stage 1 with progressively-balanced sampling (Decoupling Eq. 2, T = 90
# epochs; Table 5 / Figure 1 "Progressively-balanced").
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ProgressivelyBalancedSampler', total_epochs=90))
