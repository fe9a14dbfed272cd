# Stage 1 with cosine box classifiers (scale 20, learnable) in the three
# stages: Cascade "Baseline*" of DisAlign Table 9 (LVIS v1.0).
_base_ = './cascade-mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(bbox_head=[
        dict(
            head,
            cls_predictor_cfg=dict(
                type='CosineLinear', scale=20.0, learn_scale=True))
        for head in _base_.model.roi_head.bbox_head
    ]))
