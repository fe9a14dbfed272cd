# Tau-normalised box classifier (Kang et al., ICLR 2020, Eq. 3; the
# "tau-normalized" rows of its Tables 2-4 are classification -- the paper
# has no LVIS table) as a post-hoc calibration of an LVIS v1 Mask R-CNN
# R50-FPN: nothing trains. At test the foreground rows of fc_cls become
# w_j / ||w_j||^tau (foreground biases dropped, as Eq. 3 discards the bias);
# the background row and its bias are left as they are. Choose tau on
# validation data (the paper sweeps [0, 2]).
#
#   python tools/test.py configs/lvis/mask-rcnn_r50_fpn_taunorm_lvis-v1.py \
#       <stage-1 checkpoint, e.g. mmdet's LVIS v1 Mask R-CNN R50 checkpoint>
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='TauNormLinear', tau=1.0, keep_fg_bias=False))))
