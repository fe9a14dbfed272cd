"""Segmentation stage 2 on cached feature maps (lt_mm.seg.feature_cache)
through the real Runner on the tiny ADE20K-layout data, from the session
stage-1 checkpoint.

* Deterministic pipeline, dropout off, same seed: cached DisAlign stage 2
  (whole maps, float32) equals the standard stage 2 -- alpha, beta, the
  sigma(x) layer and the test mIoU; float16 within the rounding bound; a
  second run reuses the cache by fingerprint.
* tools/train.py + configs/quickstart/digits_seg_disalign_cached.py write a
  normal checkpoint (frozen tensors bit-equal to stage 1) that
  tools/test.py tests.
* Pixel subset: shapes, labels of the sampled pixels, training runs;
  sample_pixels by hand.
* Refusals, one test each.
"""
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config

from lt_mm.engine.checkpoint import safe_torch_load
from lt_mm.engine.feature_cache import FeatureCache
from lt_mm.engine.runner_utils import build_runner, load_config
from lt_mm.quickstart.runs import _options_to_dict
from lt_mm.seg.feature_cache import (CachedFeatureIterBasedTrainLoop,
                                     check_seg_cache_options, sample_pixels,
                                     use_cached_features)
from ..conftest import QUICKSTART, last_checkpoint

ITERS = 6
# float32 cache vs. the standard loop: the same per-image convolutions in
# other batch compositions, so at most float32 summation-order differences
# survive (measured: see the assertion; 0 on this machine).
FP32_TOL = dict(rtol=1e-5, atol=1e-6)
# float16 cache: each feature is rounded with relative error <= 2**-11; the
# parameters are a smooth function of the features and move by > 1e-2 in
# these steps (checked), so a difference of the order of the rounding is the
# first-order bound: atol = 2**-11. A wrong sampler order moves them more.
FP16_TOL = dict(rtol=0.0, atol=2.0**-11)
CALIB = 'decode_head.conv_seg.calibration.'


def _unwrap(model):
    return getattr(model, 'module', model)


@pytest.fixture
def data_env(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    return data_root


def _cfg(stage1, work_dir, exact=True, seed=0, **cache):
    opts = list(stage1['options']) + [
        f'train_cfg.max_iters={ITERS}', 'train_cfg.val_interval=1000',
        f'default_hooks.checkpoint.interval={ITERS}', f'randomness.seed={seed}'
    ]
    cfg = load_config(
        osp.join(QUICKSTART, 'digits_seg_disalign.py'), _options_to_dict(opts),
        str(work_dir))
    cfg.load_from = stage1['checkpoint']
    cfg.log_level = 'WARNING'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if exact:  # no RandomFlip, no dropout: both paths draw nothing
        cfg.train_dataloader.dataset.pipeline = \
            cfg.test_dataloader.dataset.pipeline
        cfg.model.decode_head.dropout_ratio = 0.0
    if cache:
        use_cached_features(cfg, **cache)
    return cfg


def _train(cfg):
    runner = build_runner(cfg, 'none')
    runner.train()
    return runner


def _calib(runner):
    return {
        k: v.detach().clone()
        for k, v in _unwrap(runner.model).state_dict().items()
        if k.startswith(CALIB)
    }


def _assert_close(a, b, tol):
    assert set(a) == set(b) and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol, msg=k)


def _moved(state):
    # DisAlign starts at alpha = 1, beta = 0
    return max(
        float((state[CALIB + 'logit_scale'] - 1).abs().max()),
        float(state[CALIB + 'logit_bias'].abs().max()))


def test_cached_equals_standard_stage2(seg_stage1, data_env, tmp_path):
    std = _train(_cfg(seg_stage1, tmp_path / 'std'))
    ref = _calib(std)
    assert _moved(ref) > 1e-2
    c32 = _train(_cfg(seg_stage1, tmp_path / 'c32', dtype='float32'))
    loop = c32.train_loop
    assert isinstance(loop, CachedFeatureIterBasedTrainLoop)
    assert loop.iter == std.train_loop.iter == ITERS
    _assert_close(_calib(c32), ref, FP32_TOL)
    # the whole (D, h, w) maps and (H, W) label maps, one view: D = 32
    # channels of the FCN head, 64 / 8 = 8 (output stride 8), 64 x 64 labels
    n = len(c32.train_dataloader.dataset)
    assert loop.cache.feats.shape == (1, n, 32, 8, 8)
    assert loop.cache.labels.shape == (1, n, 64, 64)
    assert loop.cache.labels.dtype == np.uint8
    # the frozen part is stage 1, bit for bit (BN statistics included)
    s1 = safe_torch_load(seg_stage1['checkpoint'])['state_dict']
    state = _unwrap(c32.model).state_dict()
    for k, v in s1.items():
        assert torch.equal(v, state[k]), k
    # the same test mIoU (the same parameters up to FP32_TOL)
    m_std, m_32 = std.test(), c32.test()
    assert m_std['mIoU'] == pytest.approx(m_32['mIoU'], abs=1e-6)
    # float16 cache, shared folder; then reused by a second run
    cache_dir = str(tmp_path / 'shared')
    c16 = _train(
        _cfg(seg_stage1, tmp_path / 'c16', dtype='float16', dir=cache_dir))
    assert not c16.train_loop.cache_reused
    _assert_close(_calib(c16), ref, FP16_TOL)
    f16 = FeatureCache(c16.train_loop.cache.root)
    x32 = np.asarray(loop.cache.feats, np.float32)
    rel = np.abs(np.asarray(f16.feats, np.float32) - x32) / np.maximum(
        np.abs(x32), 6.1e-5)  # float16's smallest normal
    assert rel.max() <= 2.0**-11 + 1e-6
    np.testing.assert_array_equal(f16.labels, loop.cache.labels)
    again = _train(
        _cfg(seg_stage1, tmp_path / 'c16b', dtype='float16', dir=cache_dir))
    assert again.train_loop.cache_reused
    assert again.train_loop.cache.root == c16.train_loop.cache.root
    _assert_close(_calib(again), _calib(c16), dict(rtol=0.0, atol=1e-7))


def test_cached_config_trains_and_tests_with_tools(seg_stage1, run_tool,
                                                   tmp_path):
    cfg = osp.join(QUICKSTART, 'digits_seg_disalign_cached.py')
    work = tmp_path / 'train'
    proc = run_tool('train.py', cfg, '--work-dir', str(work), '--cfg-options',
                    *seg_stage1['options'],
                    f'load_from={seg_stage1["checkpoint"]}')
    assert 'Stage2FreezeHook: training' in proc.stdout
    assert 'built the feature cache' in proc.stdout
    assert re.search(r'Iter\(val\).*mIoU', proc.stdout), proc.stdout[-3000:]
    ckpt = last_checkpoint(str(work))
    s1 = safe_torch_load(seg_stage1['checkpoint'])['state_dict']
    s2 = safe_torch_load(ckpt)['state_dict']
    for k, v in s1.items():  # BN statistics included
        assert torch.equal(v, s2[k]), k
    assert not torch.equal(s2[CALIB + 'logit_bias'], torch.zeros(10))
    assert set(s2) - set(s1) >= {
        CALIB + 'logit_scale', CALIB + 'logit_bias',
        CALIB + 'confidence_layer.weight'
    }
    assert len(list((work / 'feature_cache').glob('*/feats.npy'))) == 1
    out = run_tool('test.py', cfg, ckpt, '--work-dir',
                   str(tmp_path / 'test')).stdout
    assert re.search(r'Iter\(test\).*mIoU: \d+\.\d+', out), out[-2000:]


def test_sample_pixels_by_hand():
    # 2 x 3 map, ignore 255: labels [[0, 0, 0], [0, 1, 255]] -> 5 labelled
    lab = torch.tensor([[0, 0, 0], [0, 1, 255]])
    # at most as many labelled pixels as slots: all of them, then -1
    idx = sample_pixels(lab, 6, 255)
    assert idx.tolist() == [0, 1, 2, 3, 4, -1]
    # class-balanced weights 1 / n_c: class 0 (4 px) 1/4 each, class 1 (1
    # px) 1; the ignored pixel 0 -> P(first draw = pixel 4) = 1 / 2
    g = torch.Generator().manual_seed(0)
    first = [int(sample_pixels(lab, 2, 255, True, g)[0]) for _ in range(2000)]
    assert abs(first.count(4) / 2000 - 0.5) < 0.05
    # uniform: 1 / 5 per labelled pixel; never the ignored one
    first = [int(sample_pixels(lab, 2, 255, False, g)[0]) for _ in range(2000)]
    assert abs(first.count(4) / 2000 - 0.2) < 0.04 and 5 not in first
    assert sample_pixels(torch.full((2, 2), 255), 3, 255).tolist() == [-1] * 3


def test_pixel_subset_cache(seg_stage1, data_env, tmp_path):
    runner = _train(
        _cfg(
            seg_stage1,
            tmp_path / 'px',
            exact=False,
            dtype='float32',
            pixels_per_image=16,
            class_balanced=True))
    cache = runner.train_loop.cache
    n = len(runner.train_dataloader.dataset)
    assert cache.feats.shape == (1, n, 32, 16)
    assert cache.labels.shape == (1, n, 16)
    assert cache.meta['pixels_per_image'] == 16
    lab = np.asarray(cache.labels[0]).astype(np.int64)
    feats = np.asarray(cache.feats[0])
    # empty slots (ignore 255) have zero features; labels are classes
    assert set(np.unique(lab)) <= set(range(10)) | {255}
    assert np.all(feats.transpose(0, 2, 1)[lab == 255] == 0)
    assert np.any(lab != 255)
    assert _moved(_calib(runner)) > 1e-3


def test_refuses_trainable_outside_conv_seg(seg_stage1, data_env, tmp_path):
    cfg = _cfg(seg_stage1, tmp_path / 'a', dtype='float32')
    cfg.custom_hooks = []
    with pytest.raises(
            ValueError,
            match=r"outside decode_head.conv_seg \(e.g. "
            r"'backbone\."):
        _train(cfg)


def test_refuses_batchnorm_in_train_mode(seg_stage1, data_env, tmp_path):
    cfg = _cfg(seg_stage1, tmp_path / 'b', dtype='float32')
    cfg.custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=False)]
    with pytest.raises(ValueError, match='BatchNorm layers'):
        _train(cfg)


def test_refuses_stock_decode_head(seg_stage1, data_env, tmp_path):
    cfg = _cfg(seg_stage1, tmp_path / 'c', dtype='float32')
    head = cfg.model.decode_head
    head.type = head.pop('head_type')
    head.pop('classifier')
    cfg.custom_hooks = [
        dict(type='Stage2FreezeHook', trainable=['decode_head.conv_seg'])
    ]
    with pytest.raises(ValueError, match='is not an LTDecodeHead'):
        _train(cfg)


def test_refuses_images_of_several_sizes(seg_stage1, data_env, tmp_path):
    cfg = _cfg(seg_stage1, tmp_path / 'd', dtype='float32')
    cfg.model.data_preprocessor.size = None
    cfg.model.data_preprocessor.size_divisor = 8
    cfg.train_dataloader.dataset.pipeline.insert(
        2, dict(type='RandomResize', scale=(64, 64), ratio_range=(0.5, 1.0)))
    with pytest.raises(ValueError, match='images of different sizes'):
        _train(cfg)


def test_refuses_bad_options():
    for bad, msg in ((dict(views=0), 'views'), (dict(dtype='int8'), 'dtype'),
                     (dict(pipeline='test', views=2), 'deterministic'),
                     (dict(size=3), 'unknown keys'), (dict(pixels_per_image=0),
                                                      'pixels_per_image'),
                     (dict(class_balanced=True), 'needs pixels_per_image')):
        with pytest.raises(ValueError, match=msg):
            check_seg_cache_options(bad)
    with pytest.raises(ValueError, match='iteration-based'):
        use_cached_features(
            Config(dict(train_cfg=dict(by_epoch=True, max_epochs=4))))
