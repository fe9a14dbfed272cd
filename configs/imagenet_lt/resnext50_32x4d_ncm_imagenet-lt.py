# Nearest class mean classifier (Decoupling, ICLR 2020, Sec. 4, Table 2
# "NCM"), cl2n features, squared L2; test only (README.md).
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(head=dict(type='NCMClsHead', feat_type='cl2n', dist='l2'))

custom_hooks = [dict(type='NCMCentroidHook')]
