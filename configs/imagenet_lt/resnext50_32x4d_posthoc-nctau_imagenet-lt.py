# CDT's post-hoc rule z_c / N_c ** tau (Ye et al., Eq. 5; CDT Table 3
# "ERM + N_c^tau"); test only, tau chosen on val (README.md).
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(
    head=dict(type='LTLinearClsHead', posthoc=dict(type='nc_tau', tau=0.5)))
