# Post-hoc logit adjustment z_c - tau * log N_c, tau = 1 (DisAlign Table 1
# "Logit Adjust (post)"); test only.
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(
    head=dict(
        type='LTLinearClsHead', posthoc=dict(type='logit_adjust', tau=1.0)))
