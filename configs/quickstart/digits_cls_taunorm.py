# tau-normalised classifier (Kang et al., ICLR 2020, Eq. 3): post-hoc, no
# training. Test the stage-1 checkpoint with it:
#   python tools/test.py configs/quickstart/digits_cls_taunorm.py STAGE1.pth
# tau = 0.7 (mmpretrain decouple port, ImageNet-LT); change it with
# --cfg-options model.head.tau=1.0 or sweep it with
# tools/analysis/sweep_posthoc.py.
_base_ = './digits_cls_resnet_stage1.py'

model = dict(head=dict(type='TauNormClsHead', tau=0.7))
