# De-confounded training + TDE inference on ADE20K: FCN-R50-D8, one stage.
# (TDE, Tang et al., NeurIPS 2020, Eq. 7-8; the paper has no segmentation
# table -- its ImageNet-LT / LVIS results are Tables 2, 4 and 5 -- so this is
# the per-pixel transfer, evaluated with DisAlign's Table 16 split.)
#
# The stock 160k recipe with the decode head's `conv_seg` replaced by a
# causal-norm classifier (K=2 heads, tau=16, gamma=1/32, no bias), a per-
# pixel moving-average head direction (mean pre-dropout feature of the
# non-ignored pixels, d <- 0.9 d + m, saved in the checkpoint) and TDE logits
# in eval mode. alpha=1.5 (no published value for segmentation: ImageNet-LT
# 3.0, LVIS 1.5; tune on val with
# --cfg-options model.decode_head.classifier.alpha=...; alpha=0 gives the
# plain de-confounded model).
#
#   python tools/train.py configs/ade20k/fcn_r50_tde.py
#   python tools/test.py configs/ade20k/fcn_r50_tde.py \
#       work_dirs/fcn_r50_tde/iter_160000.pth
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['lt_mm.seg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(
            type='CausalNormConvSeg',
            num_heads=2,
            tau=16.0,
            gamma=1 / 32,
            alpha=1.5,
            momentum=0.9)))

val_evaluator = dict(type='HeadBodyTailIoUMetric')
test_evaluator = val_evaluator
