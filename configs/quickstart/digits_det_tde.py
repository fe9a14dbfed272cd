# Quickstart TDE for detection (Tang et al., NeurIPS 2020, Sec. 4 and
# Table 4 recipe on a tiny Mask R-CNN): one-stage de-confounded training
# with the causal-norm box classifier (K = 2, tau = 16, gamma = 1/32; the
# head direction is a moving average of foreground RoI features only) and
# TDE inference with alpha = 1.5 and background-exempted scores (Eq. 9).
# Test settings as the TDE paper / code: top 300 boxes, score_thr 1e-5.
# On the quickstart data APr falls with every step of alpha: the box-to-box
# part of the subtracted term carries no class information and scrambles
# each class's order over boxes (tools/analysis/det_tde_experiment.py
# --gt-boxes; docs/quickstart_evidence.md, detection).
_base_ = './digits_det_mask_rcnn_stage1.py'

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
                background_exempt=True))),
    test_cfg=dict(rcnn=dict(score_thr=1e-5, max_per_img=300)))
