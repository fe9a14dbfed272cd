# Stage 1 with a cosine box classifier (scale 20, learnable), LVIS v1 (no v1
# Mask R-CNN table; v0.5: "Baseline*" of DisAlign Table 8 / 17).
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='CosineLinear', scale=20.0, learn_scale=True))))
