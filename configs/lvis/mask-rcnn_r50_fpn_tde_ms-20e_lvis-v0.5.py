# De-confound-TDE, one stage, Mask R-CNN R50-FPN, LVIS v0.5 (TDE, NeurIPS
# 2020, Table 4, V0.5 rows use Cascade R101; README.md).
_base_ = [
    './_base_/mask-rcnn_r50_fpn_lvis-v0.5.py', '../_base_/schedules/tde_20e.py'
]

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
