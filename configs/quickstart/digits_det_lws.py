# Quickstart LWS stage 2 for detection (Decoupling, Kang et al. ICLR 2020,
# Eq. 4): the stage-1 tiny Mask R-CNN is frozen and only the scales of the
# foreground rows of the box classifier train (roi_head.bbox_head.fc_cls.
# lws.scales; background scale 1), with softmax cross-entropy and
# class-balanced image sampling (instance classes of each image).
#
#   python tools/train.py configs/quickstart/digits_det_lws.py \
#       --cfg-options load_from=<stage-1 checkpoint>
_base_ = './digits_det_disalign.py'

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
