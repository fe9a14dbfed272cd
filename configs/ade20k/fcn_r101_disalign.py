# DisAlign stage 2, FCN-R101-D8 on ADE20K (DisAlign, CVPR 2021, Table 6 /
# Table 15 "FCN R-101"): fcn_r50_disalign.py with depth 101.
_base_ = './fcn_r50_disalign.py'

model = dict(backbone=dict(depth=101))
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/fcn/fcn_r101-d8_512x512_160k_ade20k/fcn_r101-d8_512x512_160k_ade20k_20200615_105816-fd192bd5.pth'  # noqa: E501
