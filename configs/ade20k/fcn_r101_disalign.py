# DisAlign stage 2 on ADE20K: FCN-R101-D8 (DisAlign, CVPR 2021, Table 6 /
# appendix Table 15, "FCN R-101"; head/body/tail split of Table 16).
#
# Same recipe as fcn_r50_disalign.py (see the choices documented there): stage
# 1 = the stock mmseg FCN-R101-D8 160k checkpoint, everything frozen but
# DisAlign's alpha, beta and sigma(x) around the stock `conv_seg` of FCNHead;
# GRW loss rho=0.3 (paper; reference code 0.2), 8k iterations (paper; reference
# code 4k), auxiliary loss off.
#
#   python tools/train.py configs/ade20k/fcn_r101_disalign.py
#   python tools/test.py configs/ade20k/fcn_r101_disalign.py \
#       work_dirs/fcn_r101_disalign/iter_8000.pth
# Everything but the backbone depth and the stage-1 checkpoint is inherited
# from fcn_r50_disalign.py (mmseg's FCN-R101 config differs from FCN-R50 only
# in depth and ImageNet init, which stage 2 does not use).
_base_ = './fcn_r50_disalign.py'

model = dict(backbone=dict(depth=101))
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/fcn/fcn_r101-d8_512x512_160k_ade20k/fcn_r101-d8_512x512_160k_ade20k_20200615_105816-fd192bd5.pth'  # noqa: E501
