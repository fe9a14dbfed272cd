# De-confound-TDE on LVIS v0.5 (Tang et al., NeurIPS 2020, Table 4, V0.5
# "(Ours) De-confound-TDE": mask AP 28.4, APr 22.1 with Cascade R101-FPN; see
# cascade-mask-rcnn_r50_fpn_tde_ms-20e_lvis-v0.5.py), here Mask R-CNN
# R50-FPN. K = 2, tau = 16, gamma = 1/32, foreground-only head direction
# (mu = 0.9998), alpha = 1.5 with background-exempted inference; 20 epochs,
# lr 0.02, x0.1 at 16 / 19; top 300 boxes, score threshold 1e-5.
_base_ = './mask-rcnn_r50_fpn_ms-2x_lvis-v0.5.py'

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

max_epochs = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[16, 19],
        gamma=0.1)
]
