# Tau-normalised box classifier (Kang et al., ICLR 2020, Eq. 3; its
# "tau-normalized" rows of Tables 2-4 are classification, no LVIS Table)
# as post-hoc calibration of an LVIS v0.5 Mask R-CNN R50-FPN:
# foreground rows of fc_cls -> w_j / ||w_j||^tau, foreground biases dropped,
# background row and bias unchanged; nothing trains. Tune tau on val.
#   python tools/test.py configs/lvis/mask-rcnn_r50_fpn_taunorm_lvis-v0.5.py CKPT
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='TauNormLinear', tau=1.0, keep_fg_bias=False))))
