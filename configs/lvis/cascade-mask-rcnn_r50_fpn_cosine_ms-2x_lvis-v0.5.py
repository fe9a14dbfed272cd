# Stage 1 with cosine box classifiers in all three stages on LVIS v0.5:
# Cascade R-CNN "Baseline*" of DisAlign Table 7 / Table 18 (box AP 28.8,
# APr 15.4; mask AP 26.2); learnable scale initialised at 20. Stage 1 of
# cascade-mask-rcnn_r50_fpn_disalign-cosine_4.5k_lvis-v0.5.py.
_base_ = './cascade-mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

num_classes = 1230

model = dict(
    roi_head=dict(bbox_head=[
        dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=stds),
            reg_class_agnostic=True,
            cls_predictor_cfg=dict(
                type='CosineLinear', scale=20.0, learn_scale=True),
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                     [0.033, 0.033, 0.067, 0.067])
    ]))
