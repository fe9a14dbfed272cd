# tau-normalised classifier, post hoc (Decoupling, ICLR 2020, Eq. 3, Table 2
# "tau-normalized"), tau = 0.7; test only, tau sweep: README.md.
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(head=dict(type='TauNormClsHead', tau=0.7))
