# tau-normalised box classifier, post hoc (Decoupling, ICLR 2020, Eq. 3;
# Tables 2-4 are classification: no LVIS table), LVIS v0.5; test only.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='TauNormLinear', tau=1.0, keep_fg_bias=False))))
