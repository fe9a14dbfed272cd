# Quickstart class-dependent temperatures for segmentation (CDT, Ye et al.,
# Eq. 3, per pixel), one stage: the stage-1 recipe with cross-entropy on
# z_c / a_c, a_c = (N_max / N_c) ** gamma from the training pixel counts.
#
# Schedule: 3000 iterations, not the 1500 of the stage 1, by the stage 1's
# own rule applied to this model on the *training* mosaics (the shortest of
# 1500 / 2000 / 3000 after which it labels at least half of the tail
# training pixels right on average over 3 seeds and some in every seed;
# tools/analysis/seg_stage1_length.py --config <this file>): dividing the
# tail logits and gradients by a_c slows the fitting of the tail (tail
# training mAcc, OMP_NUM_THREADS=1, seeds 0 / 1 / 2: 1500: 0 / 0 / 0, 2000:
# 49.1 / 0 / 0, 3000: 99.9 / 50.0 / 98.4), as in classification
# (digits_cls_cdt.py). The stage 1 trained as long (the gamma = 0 control,
# seg_stage1_length.py --iters 3000) is the fair comparison:
# docs/quickstart_evidence.md, segmentation.
#
#   python tools/train.py configs/quickstart/digits_seg_cdt.py
_base_ = './digits_seg_fcn_stage1.py'

max_iters = 3000

model = dict(
    decode_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='CDTCrossEntropyLoss',
            gamma=0.2,  # CDT reference for CIFAR-LT; toy imbalance ~ 40
            avg_non_ignore=True,  # as the stage-1 loss
            stats_file='{{$LT_MM_DATA_ROOT:data/quickstart}}/seg/'
            'class_stats.json')))
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
