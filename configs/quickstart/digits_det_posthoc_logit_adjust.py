# Post-hoc logit adjustment z_c - tau * log N_c (tau = 1) of the foreground
# box logits of the stage-1 tiny Mask R-CNN, background probability kept
# (lt_mm.det.decoupling). No training:
#   python tools/test.py \
#       configs/quickstart/digits_det_posthoc_logit_adjust.py \
#       work_dirs/digits_det_mask_rcnn_stage1/epoch_36.pth
_base_ = './digits_det_posthoc_nc_tau.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                posthoc=dict(type='logit_adjust', tau=1.0)))))
