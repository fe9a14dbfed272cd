# DisAlign stage 2 (Zhang et al., CVPR 2021) on CACHED features: the same
# model, loss (GRW, rho = 1.2), sampler, schedule (10 epochs) and
# Stage2FreezeHook as digits_cls_disalign.py; the frozen backbone + neck run
# once over the training set (lt_mm.cls.feature_cache), the DisAlign
# parameters then train on the stored pooled features and the checkpoint is
# a normal full-model checkpoint (tools/test.py unchanged).
# Matches the standard stage 2 up to the float16 storage of the features
# when the training pipeline is deterministic; here RandomCrop(padding=2)
# is random, so the cache holds `views` crops per image (one of them per
# visit) instead of a new crop at every visit.
# Stage-1 checkpoint on the command line:
#   python tools/train.py configs/quickstart/digits_cls_disalign_cached.py \
#       --work-dir work_dirs/digits_cls_disalign_cached \
#       --cfg-options load_from=work_dirs/digits_cls_resnet_stage1/epoch_30.pth
_base_ = './digits_cls_disalign.py'

train_cfg = dict(
    _delete_=True,
    type='CachedFeatureEpochBasedTrainLoop',
    max_epochs=10,
    val_interval=5,
    # views: augmented passes over the training set; dtype: storage of the
    # features; dir=None: <work_dir>/feature_cache
    cache=dict(views=1, dtype='float16', pipeline='train', dir=None))
