"""Stage 2 on cached features (lt_mm.cls.feature_cache) through the real
Runner on the tiny ImageNet-LT-format data, from the session stage-1
checkpoint.

* With a deterministic training pipeline and the same seed, cached
  DisAlign / LWS stage 2 equals the standard stage 2: float32 cache up to
  float summation order, float16 cache within the rounding bound below.
* tools/train.py with configs/quickstart/digits_cls_disalign_cached.py
  writes a normal checkpoint: every stage-1 tensor bit-identical, the
  DisAlign parameters trained, tools/test.py tests it unchanged.
* Refusals: something outside the head trains, a head that needs more than
  the pooled feature, batch augmentation, BatchNorm with batch statistics,
  bad cache options.
"""
import logging
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper

from lt_mm.cls.feature_cache import (CachedFeatureEpochBasedTrainLoop,
                                     FeatureCache, check_cache_options,
                                     use_cached_features)
from lt_mm.engine.checkpoint import safe_torch_load
from lt_mm.engine.runner_utils import build_runner, load_config
from lt_mm.quickstart.runs import _options_to_dict
from ..conftest import QUICKSTART, last_checkpoint

# float32 cache vs. the standard loop: the same per-sample convolutions in
# other batch compositions / orders, so at most float32 summation-order
# differences survive two epochs of SGD (measured: 0).
FP32_TOL = dict(rtol=1e-5, atol=1e-5)
# float16 cache: every feature is rounded with relative error <= 2**-11
# (4.9e-4). The head parameters are a smooth function of the features and
# move by > 5e-2 in these 2 epochs (checked below), so a difference of the
# order of the feature rounding is the first-order bound (measured ~1e-6):
# atol = 2**-11. A wrong sampler order or loss changes them by > 1e-2.
FP16_TOL = dict(rtol=0.0, atol=2.0**-11)


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _cfg(stage1, method, work_dir, seed=0, deterministic=True, **cache):
    opts = list(stage1['options']) + [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=10',
        'default_hooks.checkpoint.interval=2', f'randomness.seed={seed}'
    ]
    cfg = load_config(
        osp.join(QUICKSTART, f'digits_cls_{method}.py'),
        _options_to_dict(opts), str(work_dir))
    cfg.load_from = stage1['checkpoint']
    cfg.log_level = 'WARNING'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if deterministic:  # the test pipeline: no RandomCrop
        cfg.train_dataloader.dataset.pipeline = \
            cfg.test_dataloader.dataset.pipeline
    if cache:
        use_cached_features(cfg, **cache)
    return cfg


def _train(cfg):
    runner = build_runner(cfg, 'none')
    runner.train()
    return runner


def _head_state(runner):
    return {
        k: v.detach().clone()
        for k, v in _unwrap(runner.model).state_dict().items()
        if k.startswith('head.') and torch.is_floating_point(v)
    }


def _assert_heads_close(a, b, tol, trained):
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol, msg=k)
    # the comparison is meaningful: the stage-2 parameters really moved
    moved = max(float((a[k] - b0).abs().max()) for k, b0 in trained.items())
    assert moved > 10 * tol['atol'], moved


@pytest.fixture
def data_env(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    return data_root


def test_cached_equals_standard_stage2(cls_stage1, data_env, tmp_path):
    s1 = safe_torch_load(cls_stage1['checkpoint'])['state_dict']
    # DisAlign (DefaultSampler, shuffled) and LWS (ClassBalancedSampler):
    # the cached loop visits the configured sampler's index order
    for method, init in (('disalign', {
            'head.calibration.logit_bias': torch.zeros(10),
            'head.calibration.logit_scale': torch.ones(10)
    }), ('lws', {
            'head.lws.scales': torch.ones(10)
    })):
        std = _train(_cfg(cls_stage1, method, tmp_path / f'{method}_std'))
        ref = _head_state(std)
        c32 = _train(
            _cfg(
                cls_stage1, method, tmp_path / f'{method}_32',
                dtype='float32'))
        loop = c32.train_loop
        assert isinstance(loop, CachedFeatureEpochBasedTrainLoop)
        assert loop._iter == std.train_loop._iter > 0
        _assert_heads_close(_head_state(c32), ref, FP32_TOL, init)
        # the frozen part of the trained model is stage 1, bit for bit
        state = _unwrap(c32.model).state_dict()
        for k, v in s1.items():
            if not k.startswith('head.'):
                assert torch.equal(v, state[k]), k
        if method != 'disalign':
            continue
        cache_dir = tmp_path / 'shared_cache'
        # the extraction feeds channels_last batches and folds BatchNorm
        # into the convolutions by default; contiguous input / the unfolded
        # backbone give the same features up to summation order / rounding
        assert loop.cache.meta['fused'] is True
        for name, option in (('nchw', dict(channels_last=False)),
                             ('unfused', dict(fuse_conv_bn=False))):
            other = _train(
                _cfg(
                    cls_stage1,
                    method,
                    tmp_path / f'{method}_{name}',
                    dtype='float32',
                    **option))
            assert other.train_loop.cache.meta['fused'] is (name == 'nchw')
            _assert_heads_close(_head_state(other), ref, FP32_TOL, init)
            np.testing.assert_allclose(
                np.asarray(other.train_loop.cache.feats),
                np.asarray(loop.cache.feats),
                rtol=1e-5,
                atol=1e-5)
        c16 = _train(
            _cfg(
                cls_stage1,
                method,
                tmp_path / 'd16',
                dtype='float16',
                dir=str(cache_dir)))
        assert not c16.train_loop.cache_reused
        _assert_heads_close(_head_state(c16), ref, FP16_TOL, init)
        # the cache holds the float16 rounding of the float32 features
        f16 = FeatureCache(c16.train_loop.cache.root)
        f32 = FeatureCache(loop.cache.root)
        assert f16.feats.dtype == np.float16
        np.testing.assert_array_equal(f16.labels, f32.labels)
        x32 = np.asarray(f32.feats, dtype=np.float32)
        rel = np.abs(np.asarray(f16.feats, np.float32) - x32) / np.maximum(
            np.abs(x32), 6.1e-5)  # float16's smallest normal
        assert rel.max() <= 2.0**-11 + 1e-6
        # logits of the two trained heads on the same features agree
        x = torch.from_numpy(x32[0])
        heads = [_unwrap(r.model).head.eval() for r in (std, c16)]
        with torch.no_grad():
            za, zb = heads[0]((x, )), heads[1]((x, ))
        # z' = z + s(x)(a z + b), s = sigmoid(w.x + c): |dz'| <= |da||z| +
        # |db| + |ds||a z + b| with |ds| <= (|dw|_inf |x|_1 + |dc|) / 4; the
        # parameter differences measured here (~1e-6) keep it below 1e-4
        torch.testing.assert_close(za, zb, rtol=0.0, atol=1e-3)
        # a second run with the same fingerprint reuses the cache
        again = _train(
            _cfg(
                cls_stage1,
                method,
                tmp_path / 'd16b',
                dtype='float16',
                dir=str(cache_dir)))
        assert again.train_loop.cache_reused
        _assert_heads_close(
            _head_state(again), _head_state(c16), dict(rtol=0.0, atol=1e-6),
            init)


def _record_visits(runner):
    """Wrap the loop's ``cached_batch`` to record (views, indices) per
    batch and epoch."""
    loop = runner.train_loop
    seen = []
    inner = loop.cached_batch

    def cached_batch(views, indices):
        assert views.shape == indices.shape
        seen.append((loop._epoch, views.copy(), indices.copy()))
        return inner(views, indices)

    loop.cached_batch = cached_batch
    return seen


def _train_recording_warnings(runner):
    """``runner.train()``; the warnings of its logger. (MMLogger instances
    are shared by name -- config name + timestamp to the second --, so a
    runner's log file may be an earlier runner's.)"""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        runner.train()
    finally:
        logger.removeHandler(handler)
    return records


def _recorded_lws_runs(cls_stage1, tmp_path, **cache):
    """Two LWS runs with random crops on one cache folder (the second
    reuses it), each with the recorded (epoch, views, indices) batches."""
    runs = []
    for name in ('a', 'b'):
        runner = build_runner(
            _cfg(
                cls_stage1,
                'lws',
                tmp_path / name,
                deterministic=False,
                dir=str(tmp_path / 'cache'),
                **cache), 'none')
        seen = _record_visits(runner)
        runner.train()
        runs.append(seen)
        assert runner.train_loop.cache_reused == (name == 'b')
    return runs


def _assert_same_visits(runs):
    """The draws follow the seed: the second run (on the reused cache)
    visits the same (view, index) sequence."""
    assert len(runs[0]) == len(runs[1])
    for (ea, va, ia), (eb, vb, ib) in zip(*runs):
        assert ea == eb
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(va, vb)


def test_views_are_drawn_per_visit(cls_stage1, data_env, tmp_path):
    # LWS samples class-balanced: tail images are visited several times per
    # epoch; the standard loop crops them anew at every visit, the cache
    # picks one of its views at every visit (not once per image and epoch)
    runs = _recorded_lws_runs(cls_stage1, tmp_path, views=3)
    assert len({e for e, _, _ in runs[0]}) == 2  # two epochs recorded
    views = np.concatenate([v for _, v, _ in runs[0]])
    assert set(views.tolist()) == {0, 1, 2}
    for epoch in (0, 1):
        per_index = {}
        for e, v, i in runs[0]:
            if e == epoch:
                for view, index in zip(v.tolist(), i.tolist()):
                    per_index.setdefault(index, []).append(view)
        repeated = [vs for vs in per_index.values() if len(vs) >= 3]
        assert len(repeated) >= 3, 'class-balanced sampling repeats tails'
        varied = sum(len(set(vs)) > 1 for vs in repeated)
        assert varied > len(repeated) // 2, (varied, len(repeated))
    _assert_same_visits(runs)


def test_class_balanced_view_allocation(cls_stage1, data_env, tmp_path):
    # view_allocation='class_balanced': image i of class c holds
    # v_i = ceil(K * N_min / N_c) views, the extraction runs one forward
    # pass per stored view, and every visit draws one of the image's own
    from lt_mm.engine.feature_cache import class_balanced_views
    from lt_mm.engine.sample_classes import get_sample_classes

    # deterministic pipeline: every stored view of an image is the same
    # image, so the rows show where the extraction wrote
    det = build_runner(
        _cfg(
            cls_stage1,
            'lws',
            tmp_path / 'det',
            dtype='float32',
            views=4,
            view_allocation='class_balanced'), 'none')
    det.train()
    cache = det.train_loop.cache
    want = class_balanced_views(
        get_sample_classes(det.train_dataloader.dataset), 4)
    assert want.min() == 1 and want.max() == 4 and len(set(want)) >= 3
    np.testing.assert_array_equal(cache.sample_views, want)
    assert cache.num_rows == int(want.sum()) < 4 * len(want)
    feats = np.asarray(cache.feats)
    for i, v in enumerate(want):
        assert np.abs(feats[0, i]).max() > 0
        for k in range(1, 4):
            if k < v:  # the same image through the same frozen network
                np.testing.assert_allclose(
                    feats[k, i], feats[0, i], rtol=1e-5, atol=1e-6)
            else:  # never extracted, never read
                assert not feats[k, i].any(), (i, k)
    # uniform views give another cache (fingerprint)
    uni = _train(
        _cfg(cls_stage1, 'lws', tmp_path / 'uni', dtype='float32', views=4))
    assert uni.train_loop.cache.sample_views is None
    assert uni.train_loop.cache.root != cache.root

    # random crops: each visit draws one of the image's own views, the tail
    # images (visited most) see several, a re-run on the cache the same
    runs = _recorded_lws_runs(
        cls_stage1, tmp_path, views=4, view_allocation='class_balanced')
    per_index = {}
    for _, v, i in runs[0]:
        assert (v < want[i]).all() and (v >= 0).all()
        for view, index in zip(v.tolist(), i.tolist()):
            per_index.setdefault(index, set()).add(view)
    tails = [i for i in range(len(want)) if want[i] == 4]
    assert sum(len(per_index.get(i, ())) > 1 for i in tails) > len(tails) // 2
    _assert_same_visits(runs)


def test_crt_cached_config_stores_class_balanced_views(cls_stage1, data_env,
                                                       tmp_path):
    # configs/quickstart/digits_cls_crt_cached.py: cRT's class-balanced
    # sampler on a cache with 1-8 views per image by class count
    from lt_mm.engine.feature_cache import class_balanced_views
    from lt_mm.engine.sample_classes import get_sample_classes
    from lt_mm.engine.samplers import ClassBalancedSampler
    runner = _train(
        _cfg(cls_stage1, 'crt_cached', tmp_path / 'crt', deterministic=False))
    loop = runner.train_loop
    assert isinstance(loop, CachedFeatureEpochBasedTrainLoop)
    assert isinstance(runner.train_dataloader.sampler, ClassBalancedSampler)
    assert loop.cache_cfg['view_allocation'] == 'class_balanced'
    np.testing.assert_array_equal(
        loop.cache.sample_views,
        class_balanced_views(
            get_sample_classes(runner.train_dataloader.dataset), 8))
    assert loop._iter > 0


def test_folded_backbone_is_checked_before_use(cls_stage1, data_env, tmp_path,
                                               monkeypatch):
    # a folded copy that computes something else is caught on the first
    # batch: the extraction warns and runs the original backbone
    import copy

    import lt_mm.cls.feature_cache as fc

    def wrong_fold(backbone):
        bad = copy.deepcopy(backbone)
        conv = next(m for m in bad.modules() if isinstance(m, torch.nn.Conv2d))
        conv.weight.data.mul_(1.5)
        return bad

    ref = _train(
        _cfg(
            cls_stage1,
            'disalign',
            tmp_path / 'ref',
            dtype='float32',
            fuse_conv_bn=False))
    monkeypatch.setattr(fc, 'fuse_conv_bn', wrong_fold)
    runner = build_runner(
        _cfg(cls_stage1, 'disalign', tmp_path / 'bad', dtype='float32'),
        'none')
    records = _train_recording_warnings(runner)
    cache = runner.train_loop.cache
    assert cache.meta['fused'] is False
    np.testing.assert_array_equal(
        np.asarray(cache.feats), np.asarray(ref.train_loop.cache.feats))
    assert any(
        'folded copy of the backbone gives other features' in r.getMessage()
        for r in records)
    # a backbone torch.fx cannot trace: the original runs
    monkeypatch.setattr(fc, 'fuse_conv_bn', lambda backbone: None)
    untraced = _train(
        _cfg(cls_stage1, 'disalign', tmp_path / 'untraced', dtype='float32'))
    assert untraced.train_loop.cache.meta['fused'] is False
    np.testing.assert_array_equal(
        np.asarray(untraced.train_loop.cache.feats),
        np.asarray(ref.train_loop.cache.feats))


def test_cached_config_trains_and_tests_with_tools(cls_stage1, run_tool,
                                                   tmp_path):
    cfg = osp.join(QUICKSTART, 'digits_cls_disalign_cached.py')
    work = tmp_path / 'train'
    proc = run_tool('train.py', cfg, '--work-dir', str(work), '--cfg-options',
                    *cls_stage1['options'], 'train_cfg.max_epochs=1',
                    'train_cfg.val_interval=1',
                    f'load_from={cls_stage1["checkpoint"]}')
    assert 'Stage2FreezeHook: training' in proc.stdout
    assert 'built the feature cache' in proc.stdout
    assert re.search(r'Epoch\(val\).*accuracy/top1', proc.stdout)
    ckpt = last_checkpoint(str(work))
    s1 = safe_torch_load(cls_stage1['checkpoint'])['state_dict']
    s2 = safe_torch_load(ckpt)['state_dict']
    for k, v in s1.items():  # BN statistics included
        assert torch.equal(v, s2[k]), k
    assert not torch.equal(s2['head.calibration.logit_bias'], torch.zeros(10))
    assert set(s2) - set(s1) >= {
        'head.calibration.logit_scale', 'head.calibration.logit_bias',
        'head.calibration.confidence_layer.weight'
    }
    assert len(list((work / 'feature_cache').glob('*/feats.npy'))) == 1
    out = run_tool('test.py', cfg, ckpt, '--work-dir',
                   str(tmp_path / 'test')).stdout
    assert re.search(
        r'Epoch\(test\).*accuracy/top1: \d+\.\d+.*'
        r'accuracy/few: \d+\.\d+', out), out[-2000:]


def test_refusals(cls_stage1, data_env, tmp_path):
    # something outside the head would train (no Stage2FreezeHook)
    cfg = _cfg(cls_stage1, 'disalign', tmp_path / 'a', dtype='float32')
    cfg.custom_hooks = []
    with pytest.raises(
            ValueError, match=r"outside the head \(e.g. "
            r"'backbone\."):
        _train(cfg)
    # BatchNorm of the frozen part with batch statistics
    cfg = _cfg(cls_stage1, 'disalign', tmp_path / 'b', dtype='float32')
    cfg.custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=False)]
    with pytest.raises(ValueError, match='BatchNorm layers'):
        _train(cfg)
    # a head that needs more than the pooled feature
    cfg = _cfg(cls_stage1, 'disalign', tmp_path / 'c', dtype='float32')
    cfg.model.head = dict(
        type='StackedLinearClsHead',
        num_classes=10,
        in_channels=128,
        mid_channels=[16])
    cfg.custom_hooks = [dict(type='Stage2FreezeHook', trainable=['head'])]
    with pytest.raises(ValueError, match='pre_logits transforms'):
        _train(cfg)
    # batch augmentation mixes images before the frozen backbone
    cfg = _cfg(cls_stage1, 'disalign', tmp_path / 'd', dtype='float32')
    cfg.data_preprocessor.batch_augments = dict(
        augments=dict(type='Mixup', alpha=0.2))
    with pytest.raises(ValueError, match='batch augmentation'):
        _train(cfg)
    for bad, msg in ((dict(views=0), 'views'), (dict(dtype='int8'), 'dtype'),
                     (dict(pipeline='test', views=2),
                      'deterministic'), (dict(size=3), 'unknown keys'),
                     (dict(channels_last='yes'), 'channels_last=.yes.'),
                     (dict(view_allocation='by_class'), 'view_allocation'),
                     (dict(view_allocation='class_balanced'),
                      'every image would get one view')):
        with pytest.raises(ValueError, match=msg):
            check_cache_options(bad)
    with pytest.raises(ValueError, match='epoch-based'):
        use_cached_features(
            Config(dict(train_cfg=dict(by_epoch=False, max_iters=4))))


def _resume_cfg(cls_stage1, tmp_path, name, resume_from=None, **cache):
    """LWS on a cached loop with random crops; a checkpoint every epoch, all
    kept; a unique experiment name (MMLogger / MessageHub instances are
    shared by name, config name + timestamp to the second, and the
    checkpoint hook's list of checkpoints to delete travels in the
    MessageHub); with ``resume_from``: resume from that checkpoint."""
    cfg = _cfg(
        cls_stage1, 'lws', tmp_path / name, deterministic=False, **cache)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.experiment_name = f'lt_mm_cached_resume_{name}'
    if resume_from is not None:
        cfg.resume = True
        cfg.load_from = resume_from
    return cfg


def test_cached_stage2_resumes_exactly(cls_stage1, data_env, tmp_path):
    # a cached run stopped after epoch 1 and resumed (the cache reused from
    # its folder) ends where the straight run ends: the sampler and the
    # per-visit views are seeded by seed + epoch, the head's state and the
    # random states travel in the checkpoint
    cache = dict(
        views=4, view_allocation='class_balanced', dir=str(tmp_path / 'c'))
    straight = _train(_resume_cfg(cls_stage1, tmp_path, 'straight', **cache))
    epoch1 = osp.join(str(tmp_path / 'straight'), 'epoch_1.pth')
    assert osp.isfile(epoch1)
    resumed = _train(
        _resume_cfg(cls_stage1, tmp_path, 'resumed', epoch1, **cache))
    assert resumed.train_loop.cache_reused
    assert resumed.train_loop._epoch == 2
    a, b = _head_state(straight), _head_state(resumed)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k

    # without the interrupted run's cache (keep=False deletes it) the
    # resumed run draws new views: a warning says it is not exact
    cache = dict(views=2, keep=False, dir=str(tmp_path / 'c2'))
    _train(_resume_cfg(cls_stage1, tmp_path, 'nokeep', **cache))
    assert not list((tmp_path / 'c2').glob('*/feats.npy'))
    runner = build_runner(
        _resume_cfg(cls_stage1, tmp_path, 'nokeep_resumed',
                    osp.join(str(tmp_path / 'nokeep'), 'epoch_1.pth'),
                    **cache), 'none')
    records = _train_recording_warnings(runner)
    assert not runner.train_loop.cache_reused
    assert any('does not continue the straight run exactly' in r.getMessage()
               for r in records)
