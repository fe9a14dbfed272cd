# DisAlign stage 2 (Zhang et al., CVPR 2021) on the quickstart digits: the
# stage-1 classifier `head.fc` is kept frozen and the calibration
# (alpha = logit_scale, beta = logit_bias, sigma(x) = confidence_layer) is
# learned with the GRW loss (rho = 1.2, 10 epochs: DisAlign Sec. A.1 /
# Table 1).
# Stage-1 checkpoint on the command line:
#   python tools/train.py configs/quickstart/digits_cls_disalign.py \
#       --work-dir work_dirs/digits_cls_disalign \
#       --cfg-options load_from=work_dirs/digits_cls_resnet_stage1/epoch_30.pth
_base_ = './digits_cls_resnet_stage1.py'

model = dict(
    head=dict(
        type='DisAlignLinearClsHead',
        # class counts: from train_dataloader.dataset (lt_mm.engine.counts)
        loss=dict(_delete_=True, type='GRWLoss', rho=1.2)))

# freeze everything but the DisAlign parameters; needs load_from
custom_hooks = [dict(type='Stage2FreezeHook')]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
load_from = None  # the stage-1 checkpoint, given with --cfg-options

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
# cosine over train_cfg.max_epochs (no T_max / end: see the stage-1 config)
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True)
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=1))
