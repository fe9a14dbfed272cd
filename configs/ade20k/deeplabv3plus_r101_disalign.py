# DisAlign stage 2, DeepLabV3+-R101-D8 on ADE20K (DisAlign, CVPR 2021,
# Table 6 / Table 15 "DeepLabV3+ R-101"): deeplabv3plus_r50 with depth 101.
_base_ = './deeplabv3plus_r50_disalign.py'

model = dict(backbone=dict(depth=101))
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3plus/deeplabv3plus_r101-d8_512x512_160k_ade20k/deeplabv3plus_r101-d8_512x512_160k_ade20k_20200615_123232-38ed86bb.pth'  # noqa: E501
