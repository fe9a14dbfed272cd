# LWS box classifier (Decoupling Eq. 4; its Tables 2-4 are classification,
# no LVIS table): stage 2 on the v1 baseline, class-balanced. README.md.
_base_ = './mask-rcnn_r50_fpn_disalign_9k_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='LWSLinear'),
            loss_cls=dict(
                _delete_=True,
                type='CrossEntropyLoss',
                use_sigmoid=False,
                loss_weight=1.0))))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))
