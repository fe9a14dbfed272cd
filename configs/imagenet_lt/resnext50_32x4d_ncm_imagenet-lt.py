# Nearest class mean classifier (Decoupling, Kang et al., ICLR 2020,
# Sec. 4, Table 2 "NCM"): cl2n features (centred by the training mean,
# L2-normalised), squared-L2 distance. The class means are computed from
# the training set before testing (NCMCentroidHook) and saved with the
# model as <work_dir>/ncm_centroids.pth. No training:
#   python tools/test.py CONFIG STAGE1.pth
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(head=dict(type='NCMClsHead', feat_type='cl2n', dist='l2'))

custom_hooks = [dict(type='NCMCentroidHook')]
