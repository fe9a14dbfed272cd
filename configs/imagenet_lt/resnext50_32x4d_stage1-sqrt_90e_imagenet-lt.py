# Stage 1 with square-root sampling (Decoupling Eq. 1, q = 1/2; Table 5 /
# Figure 1 "Square-root").
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

train_dataloader = dict(
    sampler=dict(_delete_=True, type='SquareRootSampler', q=0.5))
