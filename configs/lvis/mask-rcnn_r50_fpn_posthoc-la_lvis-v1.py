# Post-hoc logit adjustment, tau = 1 (DisAlign Table 1 "Logit Adjust
# (post)" is classification, no LVIS table) on box logits; test only.
_base_ = './mask-rcnn_r50_fpn_posthoc-nctau_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                posthoc=dict(type='logit_adjust', tau=1.0)))))
