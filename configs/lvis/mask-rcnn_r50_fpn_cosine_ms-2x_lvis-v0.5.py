# Stage 1 with a cosine box classifier on LVIS v0.5: "Baseline*" of DisAlign
# Table 8 / Table 17 (box AP 22.8, APr 10.2; mask AP 23.8) and "Cosine" of
# TDE Table 4 (V0.5); learnable scale initialised at 20. Stage 1 of
# mask-rcnn_r50_fpn_disalign-cosine_4.5k_lvis-v0.5.py.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='CosineLinear', scale=20.0, learn_scale=True))))
