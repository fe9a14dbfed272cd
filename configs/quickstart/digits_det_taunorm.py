# Quickstart tau-normalised box classifier (Decoupling, Kang et al. ICLR
# 2020, Eq. 3): post-hoc, nothing trains. Evaluate the stage-1 checkpoint
# with the foreground rows of fc_cls rescaled by ||w_j||^-tau (background row
# and bias left as they are; foreground biases dropped as in the paper):
#
#   python tools/test.py configs/quickstart/digits_det_taunorm.py \
#       work_dirs/digits_det_mask_rcnn_stage1/epoch_36.pth
_base_ = './digits_det_mask_rcnn_stage1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='TauNormLinear', tau=1.0, keep_fg_bias=False))))
