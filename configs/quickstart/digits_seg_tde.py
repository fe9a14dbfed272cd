# Quickstart de-confounded training + TDE inference for segmentation (TDE,
# NeurIPS 2020, Eq. 7-8, per pixel), one stage: the stage-1 recipe with a
# causal-norm `conv_seg` (K=2, tau=16, gamma=1/32), a per-pixel moving-average
# head direction and TDE logits at test (alpha=1.5, the paper's value). On
# the quickstart data the subtraction overshoots at 1.5 and alpha = 0 (the
# de-confounded training alone) is best, also when chosen on the training
# mosaics: sweep alpha on features extracted once with
#   python tools/analysis/sweep_posthoc.py configs/quickstart/digits_seg_tde.py
#       CKPT --sweeps tde_alpha --select-on train --report val
# (docs/quickstart_evidence.md, segmentation).
#
#   python tools/train.py configs/quickstart/digits_seg_tde.py
_base_ = './digits_seg_fcn_stage1.py'

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='CausalNormConvSeg', alpha=1.5)))
