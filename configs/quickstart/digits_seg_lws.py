# Quickstart LWS stage 2 for segmentation (Decoupling, ICLR 2020, Eq. 4 /
# Table 2 "LWS", per pixel): the stage-1 tiny FCN is frozen, only the
# per-class scales f of (W x + b) * f train; class balance from the GRW loss
# (pixels cannot be re-sampled).
#
#   python tools/train.py configs/quickstart/digits_seg_lws.py \
#       --cfg-options load_from=work_dirs/digits_seg_fcn_stage1/iter_1500.pth
_base_ = './digits_seg_disalign.py'

model = dict(
    decode_head=dict(classifier=dict(_delete_=True, type='LWSConvSeg')))
