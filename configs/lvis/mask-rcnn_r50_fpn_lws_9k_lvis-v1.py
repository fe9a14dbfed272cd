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

# stage 1: the instance-balanced (uniformly sampled) baseline, as Decoupling's
# joint stage; mmdet's RFS checkpoint (sample1e-3) would re-balance twice
load_from = 'work_dirs/mask-rcnn_r50_fpn_ms-1x_lvis-v1/epoch_12.pth'
