# CDT's post-hoc z_c / N_c ** tau (Ye et al. Eq. 5; CDT Table 3 is
# classification, no LVIS table) on box logits; test only. README.md.
_base_ = './mask-rcnn_r50_fpn_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='PosthocLinear',
                posthoc=dict(
                    type='nc_tau',
                    tau=0.5,
                    stats_file=_base_.data_root +
                    'annotations/lvis_v1_train_class_stats_images.json')))))
