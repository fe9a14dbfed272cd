# De-confound-TDE, one stage, Mask R-CNN R50-FPN, LVIS v1 (TDE, NeurIPS
# 2020, Table 4, V1.0 rows use Cascade R101; README.md).
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            type='CausalNormShared2FCBBoxHead',
            cls_predictor_cfg=dict(
                type='CausalNormLinear',
                num_heads=2,
                tau=16.0,
                gamma=1 / 32,
                alpha=1.5,
                momentum=0.9998,
                direction_update='reference',
                background_exempt=True))),
    test_cfg=dict(rcnn=dict(score_thr=1e-5, max_per_img=300)))

# 20 epochs, lr 0.02, x0.1 at 16 and 19 (TDE reference); `end` is left to the
# runner (= train_cfg.max_epochs)
train_cfg = dict(max_epochs=20, val_interval=20)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        by_epoch=True,
        milestones=[16, 19],
        gamma=0.1)
]
