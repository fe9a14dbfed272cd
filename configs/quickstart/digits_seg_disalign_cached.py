# DisAlign stage 2 for segmentation (Zhang et al., CVPR 2021, Table 6
# protocol at toy scale) on CACHED feature maps: the same model, GRW loss,
# sampler, schedule (200 iterations) and Stage2FreezeHook as
# digits_seg_disalign.py; the frozen backbone + FCN convs run once over the
# training set (lt_mm.seg.feature_cache), alpha, beta and sigma(x) then
# train on the stored pre-classifier maps (with the padded label maps) and
# the checkpoint is a normal full-model checkpoint (tools/test.py
# unchanged). The auxiliary head (loss weight 0 here) is skipped.
# Equals the standard stage 2 up to the float16 storage of the maps when
# the training pipeline is deterministic; here RandomFlip is random, so the
# cache holds `views` flips per image, and the head's dropout is re-drawn
# at every step (after the cache) with other random numbers.
#   python tools/train.py configs/quickstart/digits_seg_disalign_cached.py \
#       --cfg-options load_from=work_dirs/digits_seg_fcn_stage1/iter_1500.pth
_base_ = './digits_seg_disalign.py'

train_cfg = dict(
    _delete_=True,
    type='CachedFeatureIterBasedTrainLoop',
    max_iters=200,
    val_interval=200,
    # views: augmented passes over the training set; dtype: storage of the
    # maps; dir=None: <work_dir>/feature_cache; pixels_per_image=N: keep N
    # sampled pixels per image at feature resolution (an approximation for
    # large data; class_balanced=True balances them per image)
    cache=dict(
        views=1,
        dtype='float16',
        pipeline='train',
        dir=None,
        pixels_per_image=None,
        class_balanced=False))
