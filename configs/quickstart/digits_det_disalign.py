# Quickstart DisAlign stage 2 for detection (DisAlign, Zhang et al. CVPR
# 2021, Sec. 3.2 and Tables 8 / 17 recipe, shrunk to the tiny digits LVIS):
# the stage-1 tiny Mask R-CNN is frozen (backbone, neck, RPN, box-head fcs,
# box regression, mask head) and only the calibration of the box classifier
# trains -- alpha, beta and the confidence layer sigma(x) of
# roi_head.bbox_head.fc_cls.calibration -- on the foreground columns, with
# the generalized re-weighting loss (rho = 0.8, background weight 1).
#
#   python tools/train.py configs/quickstart/digits_det_disalign.py \
#       --cfg-options load_from=<stage-1 checkpoint>
_base_ = './digits_det_mask_rcnn_stage1.py'

data_root = '{{$LT_MM_DATA_ROOT:data/quickstart}}/det/'
num_classes = 8

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='DisAlignLinear'),
            loss_cls=dict(
                _delete_=True,
                type='GRWLoss',
                num_classes=num_classes,
                rho=0.8,
                # class counts: LVIS category image counts of
                # train_dataloader.dataset (lt_mm.engine.counts)
                loss_weight=1.0))))

# the stage-1 checkpoint (default work dir of tools/train.py for the stage-1
# quickstart config); override with --cfg-options load_from=...
load_from = 'work_dirs/digits_det_mask_rcnn_stage1/epoch_36.pth'
custom_hooks = [dict(type='Stage2FreezeHook')]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True

max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=True,  # end: train_cfg.max_epochs
        milestones=[5],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
