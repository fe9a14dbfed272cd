"""Pinned by mutation testing of lt_mm.det.feature_cache, on a real Runner of
the quickstart DisAlign config (its own random initial weights, no
training) and on hand-made RoI caches:

* the cache key follows what decides the sampled RoIs and their targets --
  the RPN proposal and RCNN settings, the number of classes, the shared
  box-head trunk -- but not ``fc_cls``, ``fc_reg`` or the mask head;
* ``RoIFeatureCache``: the refusal of inconsistent slot arrays and
  ``gather_rois`` / ``cached_batch`` (the first ``num_rois`` slots of each
  (view, image) row, image after image) by hand;
* ``check_det_cache_options`` returns the complete options;
  ``_padding_mismatches`` by hand.
"""
import numpy as np
import pytest
import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.structures import DetDataSample
from mmengine.model import BaseDataPreprocessor

from lt_mm.det.feature_cache import (CACHE_FORMAT, RoIFeatureCache,
                                     _padding_mismatches,
                                     check_det_cache_options)
from lt_mm.engine.feature_cache import CacheWriter, unwrap_model
from lt_mm.engine.runner_utils import build_runner
from .test_feature_cache import _cfg, data_env  # noqa: F401

pytestmark = pytest.mark.usefixtures('data_env')


def _runner(work_dir, **cache):
    """A cached DisAlign runner on the config's random weights."""
    cfg = _cfg(
        dict(options=[], checkpoint=None), work_dir, exact=False, **cache)
    cfg.custom_hooks = [dict(type='Stage2FreezeHook', require_load_from=False)]
    return build_runner(cfg, 'none')


def _key(runner):
    loop = runner.train_loop
    return loop._fingerprint(
        unwrap_model(runner.model), loop.dataloader.dataset,
        ('img_path', 'instances'))


def test_cache_key_follows_what_samples_the_rois(tmp_path):
    runner = _runner(tmp_path / 'a', views=1)
    model = unwrap_model(runner.model)
    head = model.roi_head.bbox_head
    base = _key(runner)
    # run after the cache (or not at all): the key stays
    with torch.no_grad():
        for mod in (head.fc_cls, head.fc_reg, model.roi_head.mask_head):
            for p in mod.parameters():
                p.add_(1.0)
    assert _key(runner) == base
    keys = {base}
    for cfg, key, value in ((model.train_cfg.rpn_proposal, 'max_per_img', 50),
                            (model.train_cfg.rcnn.sampler, 'num', 32)):
        saved = cfg[key]
        cfg[key] = value
        keys.add(_key(runner))
        cfg[key] = saved
    head.num_classes += 1  # background label = num_classes
    keys.add(_key(runner))
    head.num_classes -= 1
    assert _key(runner) == base
    with torch.no_grad():
        next(head.shared_fcs.parameters()).add_(1.0)
    keys.add(_key(runner))
    assert len(keys) == 5


def _roi_cache(root, num_rois, weights_shape=None):
    """K = 2 views, N = 2 images, R = 3 slots, D = 2: feature (k, i, r) =
    (100 k + 10 i + r, -1), label 10 k + i + r, weight r / 2."""
    k, n, r = 2, 2, 3
    grid = (100 * np.arange(k)[:, None, None] +
            10 * np.arange(n)[None, :, None] + np.arange(r)[None, None])
    with CacheWriter(str(root), CACHE_FORMAT, 'fp', 'float32') as w:
        w.array('feats',
                (k, n, r, 2))[:] = np.stack([grid, -np.ones_like(grid)], -1)
        w.array('labels', (k, n, r), np.int64)[:] = grid % 100
        ws = w.array('weights', weights_shape or (k, n, r), np.float32)
        ws[:] = np.arange(ws.shape[-1]) / 2
        w.array('num_rois', np.shape(num_rois), np.int32)[:] = num_rois
        w.finish(labels_per_view=True)
    return RoIFeatureCache(str(root))


def test_gather_rois_by_hand(tmp_path):
    cache = _roi_cache(tmp_path / 'c', [[2, 1], [3, 0]])
    # B = 4 rows of R = 3 slots: (view 1, image 0) 3 valid slots, (0, 1)
    # 1, (1, 1) none, (0, 0) 2 -- image after image, the first num_rois
    views, idx = np.array([1, 0, 1, 0]), np.array([0, 1, 1, 0])
    x, lab, w = cache.gather_rois(views, idx)
    assert x.dtype == torch.float32 and lab.dtype == torch.int64
    assert x[:, 0].tolist() == [100., 101., 102., 10., 0., 1.]
    assert (x[:, 1] == -1).all()
    assert lab.tolist() == [0, 1, 2, 10, 0, 1]  # grid % 100
    assert w.dtype == torch.float32
    assert w.tolist() == [0., .5, 1., 0., 0., .5]
    # the loop's batch is the same, on the classifier's device
    runner = _runner(tmp_path / 'a', views=2)
    runner.train_loop.cache = cache
    batch = runner.train_loop.cached_batch(views, idx)
    torch.testing.assert_close(batch['inputs'], x)
    assert batch['labels'].tolist() == lab.tolist()
    assert batch['label_weights'].tolist() == w.tolist()
    assert batch['indices'].tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(
    'num_rois, weights_shape',
    [
        ([[2, 1]], None),  # (1, 2) slots for K x N = (2, 2)
        ([[2, 1], [3, 0]], (2, 2, 2)),  # weights (2, 2, 2) vs labels (2, 2, 3)
    ])
def test_inconsistent_roi_cache_is_refused(tmp_path, num_rois, weights_shape):
    with pytest.raises(ValueError, match='RoI feature cache .* inconsistent'):
        _roi_cache(tmp_path / 'c', num_rois, weights_shape)


def _sample(img_shape, batch_shape=None):
    meta = dict(img_shape=img_shape)
    if batch_shape is not None:
        meta['batch_input_shape'] = batch_shape
    return DetDataSample(metainfo=meta)


def test_det_cache_options_are_complete():
    assert check_det_cache_options(dict(views=2)) == dict(
        views=2,
        dtype='float16',
        pipeline='train',
        dir=None,
        batch_size=None,
        reuse=True,
        keep=True)


def test_padding_mismatches_by_hand():
    pre = DetDataPreprocessor(pad_size_divisor=32)
    # own padded size: ceil(30 / 32) * 32 = 32, ceil(40 / 32) * 32 = 64
    samples = [
        _sample((30, 40), (32, 64)),  # padded as alone
        _sample((30, 40), (64, 64)),  # padded to a taller neighbour
        _sample((30, 40), (32, 96)),  # to a wider one
        _sample((30, 40)),  # no batch shape: not counted
        _sample((30, 40, 3), (64, 64)),  # (h, w, c) shapes: h, w count
    ]
    assert _padding_mismatches(pre, samples) == 3
    # divisor 1, or a preprocessor without one: the own size is the image
    # size
    for pre in (DetDataPreprocessor(), BaseDataPreprocessor()):
        assert _padding_mismatches(
            pre, [_sample((31, 41), (31, 41)),
                  _sample((31, 41), (32, 41))]) == 1
