# NCM box classifier (Decoupling Sec. 4; its Table 2 "NCM" is
# classification, no LVIS table): test only, README.md.
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='NCMLinear', feat_type='cl2n', dist='l2', scale=1.0))))

custom_hooks = [dict(type='NCMCentroidHook')]
