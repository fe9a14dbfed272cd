# cRT box classifier (Decoupling Sec. 4; its Tables 2-4 are classification,
# no LVIS table): stage 2 on the v1 baseline, class-balanced. README.md.
_base_ = './mask-rcnn_r50_fpn_lws_9k_lvis-v1.py'

model = dict(
    roi_head=dict(bbox_head=dict(cls_predictor_cfg=dict(type='CRTLinear'))))
