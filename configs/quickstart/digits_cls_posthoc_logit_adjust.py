# Post-hoc logit adjustment (Menon et al.; the "Logit Adjust (post)" row of
# DisAlign Table 1) on the stage-1 model: z_c - tau * log N_c, tau = 1.
# No training:
#   python tools/test.py \
#       configs/quickstart/digits_cls_posthoc_logit_adjust.py STAGE1.pth
_base_ = './digits_cls_resnet_stage1.py'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        # class counts: from train_dataloader.dataset (lt_mm.engine.counts)
        posthoc=dict(type='logit_adjust', tau=1.0)))
