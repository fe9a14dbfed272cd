"""Pinned by mutation testing of the cached stage-2 training loops (the
mutants the first audit, tests/engine/test_pinned_cached_loops.py, left
alive or did not run; ``CachedFeatureLoopMixin`` in
lt_mm.engine.feature_cache), through real Runners of the quickstart LWS
config on the tiny data, from the config's random initial weights:

* the class-balanced per-visit views come from one generator per epoch
  that moves on between batches (not one restarted at every batch);
* a cache folder whose arrays no longer fit the run is refused with its
  own message: ``meta.json`` lost the views-per-sample record of a
  class-balanced cache (before, a check that accepted either side being
  None let the run read never-extracted zero rows), or a sample is
  missing (before, an IndexError in the middle of training);
* the log line says whether the cache was built or reused and adds the
  note on random transforms only for ``pipeline='train'``;
  ``prepare_cache`` returns the cache it opened;
* a resumed run that rebuilds a ``pipeline='test'`` cache (deterministic
  features) does not warn that it is not the straight run;
* the cls loop keys its cache by the image paths too: a training list
  with two images of one class swapped (same labels in order) does not
  reuse the first run's cache;
* the seg loop's views of iteration i come from a generator seeded
  seed + i;
* the per-visit views of a run with seed 0 are drawn by generators seeded
  0 + offset (not 1 + offset).
"""
import json
import logging
import os.path as osp
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from lt_mm.cls.feature_cache import LOOP as CLS_LOOP
from lt_mm.det.feature_cache import LOOP as DET_LOOP
from lt_mm.engine.feature_cache import InfiniteIndexIterator, unwrap_model
from lt_mm.engine.runner_utils import build_runner
from ..cls.test_feature_cache import data_env  # noqa: F401 (fixture)
from ..cls.test_feature_cache import _cfg, _resume_cfg, _train
from ..cls.test_pinned_feature_cache import _trained, class_balanced_opts
from ..det.test_feature_cache import _cfg as _det_cfg
from .test_pinned_cached_loops import (FREEZE, RANDOM_WEIGHTS, _Recorder,
                                       _seg_cfg, _seg_recorded)

pytestmark = pytest.mark.usefixtures('data_env')

NOT_EXACT = 'does not continue the straight run exactly'
RANDOM_NOTE = 'Random transforms of the training pipeline are drawn once'


def _replace_arrays(root, **arrays):
    for name, value in arrays.items():
        np.save(osp.join(root, f'{name}.npy'), value)


def test_cache_that_does_not_fit_the_run_is_refused(tmp_path):
    # a class-balanced cache (3 views at most) reused by an identical run
    opts = class_balanced_opts(tmp_path / 'cache')
    runner = _trained(tmp_path / 'a', **opts)
    cache = runner.train_loop.cache
    root, n = cache.root, len(cache)
    feats, labels = np.array(cache.feats), np.array(cache.labels)
    per = np.array(cache.sample_views)
    assert per.min() == 1 and per.max() == 3
    # the views per visit: floor(u * v_i), u uniform float64 from ONE
    # generator seeded 3 + 5 that moves on from batch to batch
    loop = runner.train_loop
    draw, g = loop.view_sampler(5), torch.Generator().manual_seed(8)
    batches = [np.arange(n), np.arange(n)[::-1]]
    for idx in batches:
        u = torch.rand(n, generator=g, dtype=torch.float64).numpy()
        np.testing.assert_array_equal(draw(idx), (u * per[idx]).astype(int))
    meta_path = osp.join(root, 'meta.json')
    with open(meta_path, encoding='utf-8') as f:
        meta = json.load(f)
    # meta.json without the views-per-sample record: the cache opens with
    # every sample holding 3 views (the unextracted rows are zeros) while
    # this run allocates 1..3
    with open(meta_path, 'w', encoding='utf-8') as f:
        json.dump(dict(meta, sample_views=False), f)
    with pytest.raises(ValueError, match='other views per sample'):
        _trained(tmp_path / 'b', **opts)
    # the record back, the last sample gone from every array: a consistent
    # cache of n - 1 samples for a training set of n
    with open(meta_path, 'w', encoding='utf-8') as f:
        json.dump(meta, f)
    _replace_arrays(
        root, feats=feats[:, :-1], labels=labels[:-1], views=per[:-1])
    with pytest.raises(
            ValueError,
            match=f'the cache has {n - 1} samples but the training set {n}'):
        _trained(tmp_path / 'c', **opts)


def _train_logging(runner, caplog):
    """``runner.train()`` with its logger at INFO; its records."""
    caplog.clear()
    runner.logger.setLevel(logging.INFO)
    runner.logger.addHandler(caplog.handler)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(caplog.handler)
    return [r.getMessage() for r in caplog.records]


def _runner(tmp_path, name, resume_from=None, **cache):
    """A cached LWS runner (random crops, 2 epochs, a checkpoint each) from
    the config's random weights, seed 0."""
    cfg = _resume_cfg(RANDOM_WEIGHTS, tmp_path, name, resume_from, **cache)
    cfg.custom_hooks = FREEZE
    return build_runner(cfg, 'none')


def _cache_lines(messages):
    return [m for m in messages if 'the feature cache' in m]


def test_log_lines_and_a_resume_on_a_test_pipeline_cache(tmp_path, caplog):
    # pipeline='test': built, no note on random transforms
    test_cache = dict(pipeline='test', dtype='float32')
    runner = _runner(tmp_path, 'test', dir=str(tmp_path / 'c1'), **test_cache)
    (line, ) = _cache_lines(_train_logging(runner, caplog))
    assert 'built the feature cache' in line and RANDOM_NOTE not in line
    # resumed from epoch 1 without that cache: the rebuilt deterministic
    # features are those of the straight run, no warning
    resumed = _runner(
        tmp_path,
        'test_resumed',
        osp.join(str(tmp_path / 'test'), 'epoch_1.pth'),
        dir=str(tmp_path / 'c2'),
        **test_cache)
    messages = _train_logging(resumed, caplog)
    assert resumed.train_loop._epoch == 2
    assert not resumed.train_loop.cache_reused
    assert not any(NOT_EXACT in m for m in messages)
    # pipeline='train' (2 views): built with the note, then reused
    train_cache = dict(views=2, dtype='float32', dir=str(tmp_path / 'c3'))
    lines = []
    for name in ('train', 'train_again'):
        runner = _runner(tmp_path, name, **train_cache)
        lines += _cache_lines(_train_logging(runner, caplog))
    assert len(lines) == 2 and all(RANDOM_NOTE in m for m in lines)
    assert 'built the feature cache' in lines[0]
    assert 'reused the feature cache' in lines[1]
    # 2 views x 131 training images x 128 channels (ResNet-18 with 16 base
    # channels: 16 * 2**3 after the last stage), float32
    assert '(2 view(s) x 131 samples x 128, float32, ' in lines[0]
    loop = runner.train_loop
    assert loop.prepare_cache() is loop.cache is not None
    # seed 0: the views of offset e from a generator seeded 0 + e
    idx = np.arange(6)
    for e in (0, 1):
        want = torch.randint(
            2, (6, ), generator=torch.Generator().manual_seed(e)).numpy()
        np.testing.assert_array_equal(loop.view_sampler(e)(idx), want)
        np.testing.assert_array_equal(loop.random_views(6, e), want)


def test_seg_loop_refuses_a_fractional_max_iters(tmp_path):
    cfg = _seg_cfg(RANDOM_WEIGHTS, tmp_path, dtype='float32')
    cfg.train_cfg.max_iters = 2.5
    runner = build_runner(cfg, 'none')
    with pytest.raises(ValueError, match=r'max_iters=2\.5 must be an integer'):
        runner.train_loop


def test_active_drop_path_of_the_frozen_backbone_is_warned(tmp_path):
    # drop_path_rate=0.1: mmpretrain's ResNet-18 gives its 8 blocks the
    # rates linspace(0, 0.1, 8); the first (rate 0) gets no DropPath, so 7
    # drop-path modules of the frozen backbone train (the cache holds
    # eval-mode features)
    cfg = _cfg(RANDOM_WEIGHTS, 'lws', tmp_path, dtype='float32')
    cfg.custom_hooks = FREEZE
    cfg.model.backbone.drop_path_rate = 0.1
    with pytest.warns(
            UserWarning,
            match=f'{CLS_LOOP}: 7 dropout / drop-path modules of the frozen '
            'part'):
        _train(cfg)


@OPTIM_WRAPPERS.register_module(force=True)
class _RecordingOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` recording the models its ``optim_context`` (the
    context of AmpOptimWrapper's autocast and of gradient accumulation's
    ``no_sync``) was entered with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.entered = []

    @contextmanager
    def optim_context(self, model):
        self.entered.append(model)
        with super().optim_context(model):
            yield


def test_each_cached_step_runs_in_the_optim_context(tmp_path):
    cfg = _cfg(RANDOM_WEIGHTS, 'lws', tmp_path, dtype='float32')
    cfg.custom_hooks = FREEZE
    cfg.optim_wrapper.type = '_RecordingOptimWrapper'
    runner = _train(cfg)
    entered = runner.optim_wrapper.entered
    # 2 epochs of the training loader's batches, one context per step
    assert len(entered) == runner.iter == 2 * len(runner.train_dataloader)
    assert all(m is unwrap_model(runner.model) for m in entered)


def test_swapped_images_of_one_class_are_another_cache(data_root, tmp_path):
    # the quickstart training list and the same list with the first two
    # images of class 0 swapped: the labels in dataset order are the same,
    # the images (the rows of the cache) are not
    with open(osp.join(data_root, 'cls', 'ImageNet_LT_train.txt')) as f:
        lines = f.read().splitlines()
    i, j = [k for k, line in enumerate(lines) if line.endswith(' 0')][:2]
    assert lines[i] != lines[j]
    lines[i], lines[j] = lines[j], lines[i]
    swapped = tmp_path / 'train.txt'
    swapped.write_text('\n'.join(lines) + '\n')
    loops = []
    for name, ann_file in (('a', None), ('b', str(swapped))):
        cfg = _cfg(
            RANDOM_WEIGHTS,
            'lws',
            tmp_path / name,
            dtype='float32',
            dir=str(tmp_path / 'cache'))
        cfg.custom_hooks = FREEZE
        if ann_file:
            cfg.train_dataloader.dataset.ann_file = ann_file
        loops.append(_train(cfg).train_loop)
    assert not loops[1].cache_reused
    assert loops[1].cache.root != loops[0].cache.root
    a, b = (np.asarray(loop.cache.feats) for loop in loops)
    # (the same image through the same frozen network, float32)
    np.testing.assert_allclose(
        b[0, [i, j]], a[0, [j, i]], rtol=1e-5, atol=1e-6)


def test_seg_views_are_drawn_by_iteration(tmp_path):
    # 4 iterations on a 2-view cache (random flips): iteration i reads the
    # rows feats[v, idx] of its index batch, v from a generator seeded
    # seed + i = 0 + i (before, a generator seeded 0 at every iteration
    # passed the check of one batch)
    rec = _Recorder()
    runner = _seg_recorded(
        tmp_path / 'a',
        rec,
        exact=False,
        schedule=dict(max_iters=4),
        views=2,
        dtype='float32')
    runner.train()
    feats = np.asarray(runner.train_loop.cache.feats)
    # the index batches of the iterations: a new loader of the training
    # config with the run's seed (the run's own sampler has moved on)
    batches = InfiniteIndexIterator(
        runner.build_dataloader(runner.cfg.train_dataloader, seed=0))
    assert len(rec.inputs) == 4
    for i, got in enumerate(rec.inputs):
        idx = next(batches)
        views = torch.randint(
            2, (len(idx), ), generator=torch.Generator().manual_seed(i))
        np.testing.assert_array_equal(got.numpy(), feats[views.numpy(), idx])


def test_active_dropout_before_the_det_classifier_is_warned(tmp_path):
    # a dropout after the second shared fc of the box head: frozen, before
    # fc_cls, in training mode in the standard stage 2 (1 module)
    cfg = _det_cfg(RANDOM_WEIGHTS, tmp_path, dtype='float32')
    cfg.custom_hooks = FREEZE
    runner = build_runner(cfg, 'none')
    head = unwrap_model(runner.model).roi_head.bbox_head
    head.shared_fcs[1] = nn.Sequential(head.shared_fcs[1], nn.Dropout(0.5))
    with pytest.warns(
            UserWarning,
            match=f'{DET_LOOP}: 1 dropout / drop-path modules of the frozen '
            r"part \(e.g. 'roi_head.bbox_head.shared_fcs.1.1'\)"):
        runner.train()
