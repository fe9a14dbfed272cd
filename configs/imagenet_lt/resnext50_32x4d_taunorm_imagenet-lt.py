# tau-normalised classifier (Decoupling, Kang et al., ICLR 2020, Eq. 3,
# Table 2 "tau-normalized"): post-hoc on the stage-1 model, bias dropped.
# tau = 0.7 (the mmpretrain decouple port's ImageNet-LT value); the paper
# selects tau on val: tools/analysis/sweep_posthoc.py CONFIG STAGE1.pth
# --select-on val --report test. No training:
#   python tools/test.py CONFIG STAGE1.pth [--cfg-options model.head.tau=..]
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(head=dict(type='TauNormClsHead', tau=0.7))
