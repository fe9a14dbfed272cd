# LWS box classifier (Decoupling Eq. 4; its Tables 2-4 are classification,
# no LVIS table): stage 2 on the v1 baseline, class-balanced. README.md.
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v1.py', '../_base_/schedules/stage2_9k.py'
]

model = dict(
    roi_head=dict(bbox_head=dict(cls_predictor_cfg=dict(type='LWSLinear'))))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1-aa78ac3d.pth'  # noqa
