# Stage 1 with a cosine box classifier, "Baseline*" of DisAlign Tables 8 / 17
# (cosine classifier, learnable scale initialised at 20) and "Cosine" of TDE
# Table 4, on LVIS v1 with mmdet's 1x recipe. Stage 1 of
# mask-rcnn_r50_fpn_disalign-cosine_9k_lvis-v1.py.
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='CosineLinear', scale=20.0, learn_scale=True))))
