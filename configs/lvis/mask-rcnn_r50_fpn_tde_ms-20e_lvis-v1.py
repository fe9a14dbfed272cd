# De-confound-TDE (Tang et al., NeurIPS 2020, Table 4 "(Ours) De-confound-
# TDE", LVIS v1.0 row; the paper uses Cascade Mask R-CNN R101-FPN, see
# cascade-mask-rcnn_r101_fpn_tde_ms-20e_lvis-v1.py), here with Mask R-CNN
# R50-FPN. One-stage de-confounded training: causal-norm box classifier with
# K = 2 heads, tau = 16, gamma = 1/32, head direction = moving average
# (mu = 0.9998, reference detection code) of the *foreground* RoI features;
# TDE inference with alpha = 1.5 and background-exempted inference (Eq. 9),
# whose log-probabilities pass through mmdet's softmax unchanged.
# Schedule of the paper: 20 epochs, lr 0.02 (batch 16), x0.1 at epochs 16
# and 19, uniform image sampling; test: top 300 boxes per image, score
# threshold 1e-5 (reference code).
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
