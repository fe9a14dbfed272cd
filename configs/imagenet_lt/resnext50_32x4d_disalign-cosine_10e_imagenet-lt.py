# DisAlign* stage 2 (DisAlign Table 1 / 10 "DisAlign*"): the linear recipe on
# the cosine head of the cosine-stage1 config, rho = 1.5 (Sec. A.1).
_base_ = './resnext50_32x4d_disalign-linear_10e_imagenet-lt.py'

model = dict(
    head=dict(type='DisAlignCosineClsHead', scale=16.0, loss=dict(rho=1.5)))
