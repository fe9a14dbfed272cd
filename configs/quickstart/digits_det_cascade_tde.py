# Quickstart / test Cascade Mask R-CNN with TDE (Tang et al., NeurIPS 2020,
# Table 4 uses Cascade Mask R-CNN): the tiny stage-1 detector of
# digits_det_mask_rcnn_stage1.py with a 3-stage cascade box head whose every
# stage has its own causal-norm classifier and head direction. At test each
# stage returns background-exempted log-probabilities (TDE Eq. 9); Cascade
# averages them and the last stage applies softmax, i.e. the normalised
# geometric mean of the stages' exempted distributions (see
# lt_mm/det/bbox_heads.py).
_base_ = './digits_det_mask_rcnn_stage1.py'

num_classes = 8

model = dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=32,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=[
            dict(
                type='CausalNormShared2FCBBoxHead',
                in_channels=32,
                fc_out_channels=64,
                roi_feat_size=7,
                num_classes=num_classes,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=stds),
                reg_class_agnostic=True,
                cls_predictor_cfg=dict(
                    type='CausalNormLinear',
                    num_heads=2,
                    tau=16.0,
                    gamma=1 / 32,
                    alpha=1.5,
                    momentum=0.9998,
                    background_exempt=True),
                loss_cls=dict(
                    type='CrossEntropyLoss',
                    use_sigmoid=False,
                    loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                         [0.033, 0.033, 0.067, 0.067])
        ],
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=32,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=2,
            in_channels=32,
            conv_out_channels=32,
            num_classes=num_classes,
            loss_mask=dict(
                type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=[
        dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=iou,
                neg_iou_thr=iou,
                min_pos_iou=iou,
                match_low_quality=False,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=64,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            mask_size=14,
            pos_weight=-1,
            debug=False) for iou in (0.5, 0.6, 0.7)
    ]),
    test_cfg=dict(rcnn=dict(score_thr=1e-5, max_per_img=300)))
