"""Detection stage 2 on cached RoI features (lt_mm.det.feature_cache)
through the real Runner on the tiny LVIS-format data, from the session
stage-1 checkpoint (tiny Mask R-CNN).

* Equivalence: one view, no random flip and a RoI sampler that keeps every
  proposal (num=1024 > 100 proposals + ground truths, so both paths sample
  the same RoIs): every optimisation step of cached DisAlign stage 2
  (float32) gives the same parameters as the standard train_step.
* The default (random) sampler: 64 RoI slots per image, labels / weights as
  mmdet's get_targets, views re-drawn, the cache reused by fingerprint.
* tools/train.py + configs/quickstart/digits_det_disalign_cached.py write a
  normal checkpoint (frozen tensors bit-equal to stage 1, the DisAlign
  parameters moved) that tools/test.py tests.
* Refusals, one test each.
"""
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn

from lt_mm.det.feature_cache import (CachedRoIFeatureEpochBasedTrainLoop,
                                     RoIFeatureCache, check_cacheable_detector,
                                     check_det_cache_options,
                                     use_cached_features)
from lt_mm.engine.checkpoint import safe_torch_load
from lt_mm.engine.runner_utils import build_runner, load_config
from lt_mm.quickstart.runs import _options_to_dict
from ..conftest import QUICKSTART, last_checkpoint

CLS = 'roi_head.bbox_head.fc_cls.'
CALIB = CLS + 'calibration.'
# float32 cache vs. the standard train_step: the same fc_cls input rows in
# the same order, so only float32 summation-order differences can survive
# (measured: <= 2e-11 on this machine)
FP32_TOL = dict(rtol=0.0, atol=1e-6)
# float16 cache: each feature is rounded with relative error <= 2**-11; the
# parameters are a smooth function of the features and move by > 1e-3 here,
# so a difference of the order of the rounding is the first-order bound
FP16_TOL = dict(rtol=0.0, atol=2.0**-11)


def _unwrap(model):
    return getattr(model, 'module', model)


@pytest.fixture
def data_env(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    return data_root


def _cfg(stage1,
         work_dir,
         config='digits_det_disalign.py',
         exact=True,
         **cache):
    # lr 0.2 without warm-up: the DisAlign parameters move by > 1e-3 in one
    # epoch (4 steps of 4 images), far above FP32_TOL
    opts = list(stage1['options']) + [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=10',
        'default_hooks.checkpoint.interval=1', 'randomness.seed=0',
        'optim_wrapper.optimizer.lr=0.2', 'param_scheduler.0.start_factor=1.0'
    ]
    cfg = load_config(
        osp.join(QUICKSTART, config), _options_to_dict(opts), str(work_dir))
    cfg.load_from = stage1['checkpoint']
    cfg.log_level = 'WARNING'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if exact:  # no random flip; the RoI sampler keeps every proposal
        for t in cfg.train_dataloader.dataset.pipeline:
            if t['type'] == 'RandomFlip':
                t['prob'] = 0.0
        cfg.model.train_cfg.rcnn.sampler.num = 1024
    if cache:
        use_cached_features(cfg, **cache)
    return cfg


def _train(cfg):
    runner = build_runner(cfg, 'none')
    runner.train()
    return runner


def _cls_state(runner):
    return {
        k: v.detach().clone()
        for k, v in _unwrap(runner.model).state_dict().items()
        if k.startswith(CLS) and torch.is_floating_point(v)
    }


def _moved(state):
    # DisAlign starts at alpha = 1, beta = 0
    return max(
        float((state[CALIB + 'logit_scale'] - 1).abs().max()),
        float(state[CALIB + 'logit_bias'].abs().max()))


def test_cached_step_equals_standard_train_step(det_stage1, data_env,
                                                tmp_path):
    std = _train(_cfg(det_stage1, tmp_path / 'std'))
    ref = _cls_state(std)
    assert _moved(ref) > 1e-3
    c32 = _train(_cfg(det_stage1, tmp_path / 'c32', dtype='float32'))
    loop = c32.train_loop
    assert isinstance(loop, CachedRoIFeatureEpochBasedTrainLoop)
    assert loop.iter == std.train_loop.iter == 4  # 16 images / 4
    got = _cls_state(c32)
    assert set(got) == set(ref)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], **FP32_TOL, msg=k)
    # every proposal was kept (fewer RoIs than the 1024 slots), so both
    # paths trained on the same RoIs; D = 64 (fc_out_channels)
    cache = loop.cache
    assert isinstance(cache, RoIFeatureCache)
    assert cache.feats.shape == (1, 16, 1024, 64)
    num = np.asarray(cache.num_rois)
    assert num.min() > 100 and num.max() < 1024
    # the frozen part is stage 1, bit for bit (BN statistics included)
    s1 = safe_torch_load(det_stage1['checkpoint'])['state_dict']
    state = _unwrap(c32.model).state_dict()
    for k, v in s1.items():
        if not k.startswith(CLS):
            assert torch.equal(v, state[k]), k
    # float16 cache (the default): within the rounding bound
    c16 = _train(_cfg(det_stage1, tmp_path / 'c16', dtype='float16'))
    assert c16.train_loop.cache.feats.dtype == np.float16
    got = _cls_state(c16)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], **FP16_TOL, msg=k)


def test_random_sampler_cache_views_and_reuse(det_stage1, data_env, tmp_path):
    shared = str(tmp_path / 'shared')
    run = _train(
        _cfg(det_stage1, tmp_path / 'a', exact=False, views=2, dir=shared))
    loop = run.train_loop
    cache = loop.cache
    assert not loop.cache_reused
    # 2 views x 16 images x 64 RoI slots (rcnn sampler num) x 64 features
    assert cache.feats.shape == (2, 16, 64, 64)
    assert cache.feats.dtype == np.float16
    num = np.asarray(cache.num_rois)
    assert num.max() <= 64 and num.min() > 0
    valid = np.arange(64)[None, None] < num[..., None]
    lab = np.asarray(cache.labels)[valid]
    # labels 0..7 foreground, 8 background; weights 1 (pos_weight=-1);
    # padding slots are zero
    assert set(np.unique(lab)) <= set(range(9)) and (lab == 8).any()
    assert (lab < 8).any()
    np.testing.assert_array_equal(np.asarray(cache.weights)[valid], 1.0)
    assert np.all(np.asarray(cache.feats)[~valid] == 0)
    # the second view re-draws the sampled RoIs (their features differ)
    assert not np.array_equal(cache.feats[0], cache.feats[1])
    assert _moved(_cls_state(run)) > 1e-4
    again = _train(
        _cfg(det_stage1, tmp_path / 'b', exact=False, views=2, dir=shared))
    assert again.train_loop.cache_reused
    assert again.train_loop.cache.root == cache.root
    a, b = _cls_state(run), _cls_state(again)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0.0, atol=1e-7, msg=k)


def test_cached_config_trains_and_tests_with_tools(det_stage1, run_tool,
                                                   tmp_path):
    cfg = osp.join(QUICKSTART, 'digits_det_disalign_cached.py')
    work = tmp_path / 'train'
    proc = run_tool('train.py', cfg, '--work-dir', str(work), '--cfg-options',
                    *det_stage1['options'], 'train_cfg.max_epochs=1',
                    'train_cfg.val_interval=1',
                    f'load_from={det_stage1["checkpoint"]}')
    assert 'Stage2FreezeHook: training' in proc.stdout
    assert 'built the feature cache' in proc.stdout
    assert re.search(r'Epoch\(val\).*lvis/bbox_AP', proc.stdout), \
        proc.stdout[-3000:]
    ckpt = last_checkpoint(str(work))
    s1 = safe_torch_load(det_stage1['checkpoint'])['state_dict']
    s2 = safe_torch_load(ckpt)['state_dict']
    for k, v in s1.items():  # BN statistics included
        assert torch.equal(v, s2[k]), k
    assert set(s2) - set(s1) >= {
        CALIB + 'logit_scale', CALIB + 'logit_bias',
        CALIB + 'confidence_layer.weight'
    }
    assert not torch.equal(s2[CALIB + 'logit_bias'], torch.zeros(8))
    assert len(list((work / 'feature_cache').glob('*/feats.npy'))) == 1
    out = run_tool('test.py', cfg, ckpt, '--work-dir',
                   str(tmp_path / 'test')).stdout
    assert re.search(r'Epoch\(test\).*lvis/bbox_AP: -?\d+\.\d+', out), \
        out[-2000:]


def test_refuses_trainable_outside_fc_cls(det_stage1, data_env, tmp_path):
    cfg = _cfg(det_stage1, tmp_path / 'a', dtype='float32')
    cfg.custom_hooks = []
    with pytest.raises(
            ValueError,
            match=r"outside roi_head.bbox_head.fc_cls \(e.g. "
            r"'backbone\."):
        _train(cfg)


def test_refuses_batchnorm_in_train_mode(det_stage1, data_env, tmp_path):
    cfg = _cfg(det_stage1, tmp_path / 'b', dtype='float32')
    cfg.custom_hooks = [dict(type='Stage2FreezeHook', freeze_bn_stats=False)]
    with pytest.raises(ValueError, match='BatchNorm layers'):
        _train(cfg)


def test_refuses_cascade_roi_head(det_stage1, data_env, tmp_path):
    cfg = _cfg(
        det_stage1,
        tmp_path / 'c',
        config='digits_det_cascade_tde.py',
        exact=False,
        dtype='float32')
    with pytest.raises(ValueError, match='cascade RoI heads .* not supported'):
        _train(cfg)


def test_refuses_head_with_own_loss(det_stage1, data_env, tmp_path):
    # TDE's box head updates its head direction in loss_and_target
    cfg = _cfg(
        det_stage1,
        tmp_path / 'd',
        config='digits_det_tde.py',
        exact=False,
        dtype='float32')
    with pytest.raises(ValueError, match='loss_and_target differs'):
        _train(cfg)


def test_refuses_ohem_sampler(det_stage1, data_env, tmp_path):
    cfg = _cfg(det_stage1, tmp_path / 'e', exact=False, dtype='float32')
    cfg.model.train_cfg.rcnn.sampler = dict(
        type='OHEMSampler',
        num=64,
        pos_fraction=0.25,
        neg_pos_ub=-1,
        add_gt_as_proposals=True)
    with pytest.raises(ValueError, match='reads the box head'):
        _train(cfg)


def test_refuses_batch_augmentation(det_stage1, data_env, tmp_path):
    cfg = _cfg(det_stage1, tmp_path / 'f', dtype='float32')
    cfg.model.data_preprocessor.batch_augments = [
        dict(type='BatchFixedSizePad', size=(64, 64))
    ]
    with pytest.raises(ValueError, match='batch augmentation'):
        _train(cfg)


def test_refuses_non_two_stage_model():
    with pytest.raises(ValueError, match='two-stage detectors'):
        check_cacheable_detector(nn.Linear(2, 2))


def test_refuses_bad_options():
    for bad, msg in ((dict(views=0), 'views'), (dict(dtype='int8'), 'dtype'),
                     (dict(pipeline='test'), "pipeline='train' only"),
                     (dict(size=3), 'unknown keys')):
        with pytest.raises(ValueError, match=msg):
            check_det_cache_options(bad)
    with pytest.raises(ValueError, match='epoch-based'):
        use_cached_features(
            Config(dict(train_cfg=dict(by_epoch=False, max_iters=4))))
    cfg = Config(dict(train_cfg=dict(max_epochs=3, val_interval=3)))
    use_cached_features(cfg, views=2)
    assert cfg.train_cfg == dict(
        type='CachedRoIFeatureEpochBasedTrainLoop',
        max_epochs=3,
        val_interval=3,
        cache=dict(views=2))
