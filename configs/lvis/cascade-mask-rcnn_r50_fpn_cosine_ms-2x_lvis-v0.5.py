# Stage 1 with cosine box classifiers in the three stages, LVIS v0.5:
# Cascade "Baseline*" of DisAlign Table 7 / 18 (box AP 28.8, mask AP 26.2).
_base_ = './cascade-mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

model = dict(
    roi_head=dict(bbox_head=[
        dict(
            head,
            cls_predictor_cfg=dict(
                type='CosineLinear', scale=20.0, learn_scale=True))
        for head in _base_.model.roi_head.bbox_head
    ]))
