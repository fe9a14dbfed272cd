# Quickstart cRT stage 2 for detection (Decoupling, Kang et al. ICLR 2020,
# Sec. 4): the box classifier fc_cls is re-initialised when the stage-1
# checkpoint is loaded and re-trained (weight, bias) on the frozen tiny
# Mask R-CNN with class-balanced image sampling; box regression, RPN and
# mask head stay frozen.
#
#   python tools/train.py configs/quickstart/digits_det_crt.py \
#       --cfg-options load_from=<stage-1 checkpoint>
_base_ = './digits_det_lws.py'

model = dict(
    roi_head=dict(bbox_head=dict(cls_predictor_cfg=dict(type='CRTLinear'))))
