# DisAlign stage 2 for detection (Zhang et al., CVPR 2021, Sec. 3.2 and the
# Table 8 / 17 recipe at toy scale) on CACHED RoI features: the same model,
# GRW loss, sampler, schedule (6 epochs) and Stage2FreezeHook as
# digits_det_disalign.py; the frozen Mask R-CNN (backbone, neck, RPN
# proposals, the RoI assigner + sampler, the box head's shared fcs) runs
# once over the training set (lt_mm.det.feature_cache), alpha, beta and
# sigma(x) of roi_head.bbox_head.fc_cls then train on the stored inputs of
# fc_cls of the sampled RoIs (with their labels) and the checkpoint is a
# normal full-model checkpoint (tools/test.py unchanged). Box regression,
# mask and RPN losses are skipped (no gradient w.r.t. fc_cls).
# Equals the standard stage 2 up to the float16 storage when the pipeline
# and the RoI sampler are deterministic; here RandomFlip and the RoI
# sampler (64 of the proposals) are random, so the cache holds `views`
# draws per image instead of a new draw at every visit.
#   python tools/train.py configs/quickstart/digits_det_disalign_cached.py \
#       --cfg-options load_from=work_dirs/digits_det_mask_rcnn_stage1/epoch_36.pth
_base_ = './digits_det_disalign.py'

train_cfg = dict(
    _delete_=True,
    type='CachedRoIFeatureEpochBasedTrainLoop',
    max_epochs=6,
    val_interval=6,
    # views: passes over the training set, each re-drawing RandomFlip and
    # the RoI sampler; dtype: storage of the RoI features; dir=None:
    # <work_dir>/feature_cache
    cache=dict(views=1, dtype='float16', pipeline='train', dir=None))
