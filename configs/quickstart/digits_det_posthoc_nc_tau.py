# CDT's post-hoc rule (Ye et al., Eq. 5) on the box classifier of the stage-1
# tiny Mask R-CNN: foreground decision values z_c / N_c ** tau (N_c = LVIS
# image counts of train_dataloader.dataset, lt_mm.engine.counts), background
# probability kept. No training:
#   python tools/test.py configs/quickstart/digits_det_posthoc_nc_tau.py \
#       work_dirs/digits_det_mask_rcnn_stage1/epoch_36.pth
_base_ = './digits_det_mask_rcnn_stage1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='PosthocLinear', posthoc=dict(type='nc_tau', tau=0.5)))))
