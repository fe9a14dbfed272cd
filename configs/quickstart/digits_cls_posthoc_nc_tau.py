# CDT's post-hoc rule (Ye et al., Eq. 5) on the stage-1 model: decision
# values z_c / N_c ** tau. No training:
#   python tools/test.py configs/quickstart/digits_cls_posthoc_nc_tau.py \
#       STAGE1.pth
# tau is tuned on val in the paper: tools/analysis/sweep_posthoc.py CONFIG
# STAGE1.pth --select-on val --report test.
_base_ = './digits_cls_resnet_stage1.py'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        # class counts: from train_dataloader.dataset (lt_mm.engine.counts)
        posthoc=dict(type='nc_tau', tau=0.5)))
