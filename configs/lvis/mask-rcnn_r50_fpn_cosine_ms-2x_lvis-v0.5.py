# Stage 1 with a cosine box classifier (scale 20, learnable), LVIS v0.5:
# "Baseline*" of DisAlign Table 8 / 17, "Cosine" of TDE Table 4.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='CosineLinear', scale=20.0, learn_scale=True))))
