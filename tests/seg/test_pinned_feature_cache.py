"""Pinned by mutation testing of lt_mm.seg.feature_cache, on a real Runner
of the quickstart DisAlign config (its own random initial weights: the
cache does not care how the frozen weights were obtained) and by hand:

* the cache key follows the frozen feature path (backbone, decode head
  before ``conv_seg``) but not the classifier or the auxiliary head; it
  follows the ignore index, the number of classes
  and, in pixel-subset mode, the seed (also with the test pipeline);
  ``seg_map_path`` files are stamped;
* the modules exempt from the frozen-part mode checks, the label
  storage type, the padding check, ``sample_pixels`` (one labelled pixel,
  as many as slots, uniform by default), ``_sample_batch``
  (nearest-resized labels, empty slots) by hand;
* ``cached_batch``: the rows of the views ``random_views(B, iteration)``,
  feature maps and label maps of the same row.
"""
import numpy as np
import pytest
import torch
from mmseg.models.data_preprocessor import SegDataPreProcessor

from lt_mm.engine.feature_cache import dataset_fingerprint, unwrap_model
from lt_mm.engine.runner_utils import build_runner
from lt_mm.seg.feature_cache import (SEG_FINGERPRINT_KEYS, _after_cache,
                                     _check_padding, _label_dtype,
                                     _sample_batch, sample_pixels)
from ..engine.test_feature_cache import _Tiny
from .test_feature_cache import _cfg, data_env  # noqa: F401

pytestmark = pytest.mark.usefixtures('data_env')


def _runner(work_dir, seed=0, **cache):
    """A cached DisAlign runner (2 iterations) on the config's random
    weights."""
    cfg = _cfg(
        dict(options=['train_cfg.max_iters=2'], checkpoint=None),
        work_dir,
        seed=seed,
        **cache)
    cfg.custom_hooks = [
        dict(
            type='Stage2FreezeHook',
            trainable=['decode_head.conv_seg'],
            require_load_from=False)
    ]
    return build_runner(cfg, 'none')


def _key(runner):
    loop = runner.train_loop
    return loop._fingerprint(
        unwrap_model(runner.model), loop.dataloader.dataset,
        SEG_FINGERPRINT_KEYS)


def test_cache_key_follows_the_feature_path_and_head_settings(tmp_path):
    runner = _runner(tmp_path / 'a', views=1)
    model = unwrap_model(runner.model)
    head = model.decode_head
    base = _key(runner)
    # the classifier and the auxiliary head do not change the cached map
    with torch.no_grad():
        for p in head.conv_seg.parameters():
            p.add_(1.0)
        for p in model.auxiliary_head.parameters():
            p.add_(1.0)
    assert _key(runner) == base
    for attr, value in (('ignore_index', 254), ('num_classes', 11)):
        saved = getattr(head, attr)
        setattr(head, attr, value)
        assert _key(runner) != base, attr
        setattr(head, attr, saved)
    assert _key(runner) == base
    with torch.no_grad():  # the layer before conv_seg
        next(head.convs.parameters()).add_(1.0)
    convs = _key(runner)
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1.0)
    assert len({base, convs, _key(runner)}) == 3


def test_pixel_seed_is_in_the_key_also_with_the_test_pipeline(tmp_path):
    keys = {}
    runners = [
        _runner(
            tmp_path / str(seed), seed, pipeline='test', pixels_per_image=16)
        for seed in (0, 1)
    ]
    # the seed also draws the initial weights: the same in both
    unwrap_model(runners[1].model).load_state_dict(
        unwrap_model(runners[0].model).state_dict())
    for seed, runner in enumerate(runners):
        keys[seed, 16] = _key(runner)
        runner.train_loop.cache_cfg['pixels_per_image'] = None
        keys[seed, None] = _key(runner)
    assert keys[0, None] == keys[1, None]  # nothing random
    assert keys[0, 16] != keys[1, 16]  # the pixel draw
    assert keys[0, 16] != keys[0, None]


def test_seg_map_file_is_stamped(tmp_path):
    seg = tmp_path / 'a.png'
    seg.write_bytes(b'first')

    def key():
        ds = _Tiny(['a.jpg'], [0])
        ds.data_list[0]['seg_map_path'] = str(seg)
        return dataset_fingerprint(ds, SEG_FINGERPRINT_KEYS)

    before = key()
    assert key() == before
    seg.write_bytes(b'a rewritten label map')
    assert key() != before


def test_modules_after_the_cache_by_hand():
    # exempt from the frozen-part mode checks: what runs after the cache
    # (the classifier, the head's dropout) or not at all (auxiliary head)
    for name in ('decode_head.conv_seg', 'decode_head.conv_seg.conv',
                 'decode_head.dropout', 'auxiliary_head',
                 'auxiliary_head.convs.0.bn'):
        assert _after_cache(name), name
    for name in ('decode_head', 'decode_head.convs.0.bn', 'backbone.bn1',
                 'decode_head.dropout2', 'auxiliary_headx'):
        assert not _after_cache(name), name


def test_label_dtype_by_hand():
    # uint8 while the classes and the ignore index fit in [0, 255]
    assert _label_dtype(255, 255) is np.uint8
    assert _label_dtype(10, 0) is np.uint8
    assert _label_dtype(256, 255) is np.int32
    assert _label_dtype(10, 256) is np.int32
    assert _label_dtype(10, -1) is np.int32


def test_padding_check_by_hand():
    fixed = SegDataPreProcessor(size=(8, 8))
    free = SegDataPreProcessor(size_divisor=8)
    a, b = torch.zeros(3, 4, 4), torch.zeros(3, 4, 6)
    _check_padding(fixed, [a, b], [None])  # a fixed size pads all alike
    first = [None]
    _check_padding(free, [a, a], first)
    assert first == [(4, 4)]
    _check_padding(free, [a], first)  # later batches too
    with pytest.raises(ValueError, match=r'\(4, 4\) and \(4, 6\)'):
        _check_padding(free, [b], first)


def test_sample_pixels_with_as_many_labelled_pixels_as_slots():
    # 3 labelled pixels, 3 slots: all of them in order (no draw)
    lab = torch.tensor([[0, 255], [1, 2]])
    assert sample_pixels(lab, 3, 255).tolist() == [0, 2, 3]
    assert sample_pixels(lab, 3, 255, True).tolist() == [0, 2, 3]
    # a single labelled pixel is kept
    one = torch.tensor([255, 3, 255])
    assert sample_pixels(one, 2, 255).tolist() == [1, -1]
    # more than the slots: distinct labelled pixels, uniform by default
    # (the same draws as class_balanced=False from the same generator)
    lab = torch.tensor([0] * 12 + [1, 255])
    for seed in range(10):
        idx = sample_pixels(lab, 2, 255, generator=_gen(seed))
        assert len(set(idx.tolist())) == 2 and 13 not in idx.tolist()
        assert idx.tolist() == sample_pixels(lab, 2, 255, False,
                                             _gen(seed)).tolist()


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_sample_batch_by_hand():
    # features (1, 2, 2, 2): channel c at pixel p = 10 c + p; labels 4 x 4,
    # nearest-resized to 2 x 2 take rows / columns 0 and 2:
    # [[3, 255], [5, 7]] -> pixels 0, 2, 3 labelled, 1 ignored
    feat = torch.tensor([[[0., 1.], [2., 3.]], [[10., 11.], [12., 13.]]])
    gt = torch.full((4, 4), 9)
    gt[0, 0], gt[0, 2], gt[2, 0], gt[2, 2] = 3, 255, 5, 7
    f, lab = _sample_batch(feat[None], gt[None, None], 4, 255, False,
                           torch.Generator())
    assert lab.tolist() == [[3, 5, 7, 255]]
    assert f.tolist() == [[[0., 2., 3., 0.], [10., 12., 13., 0.]]]


def test_cached_batch_gathers_one_view_per_row(tmp_path):
    runner = _runner(tmp_path / 'a', views=2, dtype='float32')
    runner.train()
    loop = runner.train_loop
    cache = loop.cache
    assert cache.labels.shape[:2] == cache.feats.shape[:2] == (2, 8)
    idx = np.array([5, 0, 5, 7])
    views = loop.random_views(4, loop._iter)  # seeded by the iteration
    assert set(views.tolist()) == {0, 1}
    batch = loop.cached_batch(idx)
    np.testing.assert_array_equal(batch['inputs'].numpy(), cache.feats[views,
                                                                       idx])
    for i, s in enumerate(batch['data_samples']):
        assert s.gt_sem_seg.data.dtype == torch.int64
        np.testing.assert_array_equal(s.gt_sem_seg.data.numpy(),
                                      cache.labels[views[i], idx[i]][None])
