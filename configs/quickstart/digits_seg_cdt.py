# Quickstart class-dependent temperatures for segmentation (CDT, Ye et al.,
# Eq. 3, per pixel), one stage: the stage-1 recipe with cross-entropy on
# z_c / a_c, a_c = (N_max / N_c) ** gamma from the training pixel counts.
#
#   python tools/train.py configs/quickstart/digits_seg_cdt.py
_base_ = './digits_seg_fcn_stage1.py'

model = dict(
    decode_head=dict(
        loss_decode=dict(
            _delete_=True,
            type='CDTCrossEntropyLoss',
            gamma=0.2,  # CDT reference for CIFAR-LT; toy imbalance ~ 40
            avg_non_ignore=True,  # as the stage-1 loss
            stats_file='{{$LT_MM_DATA_ROOT:data/quickstart}}/seg/'
            'class_stats.json')))
