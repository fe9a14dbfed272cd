# DisAlign on Cascade Mask R-CNN R50-FPN with linear box classifiers, LVIS
# v0.5: DisAlign Table 7 / Table 18, ResNet-50 "DisAlign" row (box AP 28.7,
# APr 9.0; mask AP 26.1). Stage 2 of
# cascade-mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py with the recipe of
# cascade-mask-rcnn_r50_fpn_disalign-cosine_4.5k_lvis-v0.5.py.
_base_ = './cascade-mask-rcnn_r50_fpn_disalign-cosine_4.5k_lvis-v0.5.py'

data_root = 'data/lvis_v0.5/'
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
            cls_predictor_cfg=dict(type='DisAlignLinear'),
            loss_cls=dict(
                type='GRWLoss',
                num_classes=num_classes,
                rho=0.8,
                stats_file=data_root +
                'annotations/lvis_v0.5_train_class_stats_images.json'),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                     [0.033, 0.033, 0.067, 0.067])
    ]))

load_from = 'work_dirs/cascade-mask-rcnn_r50_fpn_ms-2x_lvis-v0.5/epoch_24.pth'
