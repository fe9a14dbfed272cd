"""Audit 2 regressions (classification adapter and the shared engine parts).

* The feature-cache key covers the data preprocessor: its ``mean`` / ``std``
  are non-persistent buffers (not in the state dict) and its channel
  conversion a plain attribute, so a changed normalisation reused a stale
  cache before.
* ``extract_pre_logits`` and ``check_frozen_part_eval_like`` restore the
  model's mode when something raises.
* ``eval_dataloader_cfg`` gives the test pipeline to a wrapped training set
  (``RepeatDataset`` ...) instead of silently keeping the augmenting one.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from lt_mm.cls.feature_cache import use_cached_features
from lt_mm.cls.hooks import extract_pre_logits
from lt_mm.engine.feature_cache import (check_frozen_part_eval_like,
                                        unwrap_model)
from lt_mm.engine.features import eval_dataloader_cfg
from lt_mm.engine.hooks import Stage2FreezeHook
from lt_mm.engine.runner_utils import build_runner, load_config
from ..conftest import QUICKSTART

STAGE1 = osp.join(QUICKSTART, 'digits_cls_resnet_stage1.py')


@pytest.fixture
def data_env(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    return data_root


def _cache_key(work_dir, **preprocessor):
    cfg = load_config(
        osp.join(QUICKSTART, 'digits_cls_lws.py'), {}, str(work_dir))
    cfg.log_level = 'WARNING'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.randomness = dict(seed=0)
    cfg.data_preprocessor.update(preprocessor)
    use_cached_features(cfg, views=1)
    runner = build_runner(cfg, 'none')
    loop = runner.train_loop
    model = unwrap_model(runner.model)
    torch.manual_seed(0)  # the same (random) weights in every runner
    for p in model.parameters():
        p.data.copy_(torch.randn_like(p))
    return loop._fingerprint(model, loop.dataloader.dataset,
                             ('img_path', 'gt_label'))


def test_cache_key_covers_the_data_preprocessor(data_env, tmp_path):
    base = _cache_key(tmp_path / 'a')
    assert _cache_key(tmp_path / 'b') == base  # deterministic
    # another normalisation (non-persistent mean / std buffers)
    assert _cache_key(
        tmp_path / 'c', mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]) != base
    # another channel order (a plain attribute)
    assert _cache_key(tmp_path / 'd', to_rgb=False) != base


def _model():
    cfg = Config.fromfile(STAGE1)
    model = copy.deepcopy(cfg.model)
    model['data_preprocessor'] = cfg.get('data_preprocessor',
                                         model.get('data_preprocessor'))
    return MODELS.build(model)


class _FailingLoader:
    """Yields one real batch, then fails as a corrupt image would."""

    dataset = [0, 1]

    def __iter__(self):
        yield dict(
            inputs=[torch.zeros(3, 32, 32, dtype=torch.uint8)],
            data_samples=[DataSample().set_gt_label(0)])
        raise RuntimeError('corrupt image')


def test_extract_pre_logits_restores_mode_on_error():
    model = _model()
    model.train()
    with pytest.raises(RuntimeError, match='corrupt image'):
        extract_pre_logits(model, _FailingLoader())
    assert model.training
    assert all(m.training for m in model.modules())


class _FailingFreezeHook(Stage2FreezeHook):

    def before_train_iter(self, runner, batch_idx=0, data_batch=None):
        raise RuntimeError('hook failed')


class _Runner:
    hooks = [_FailingFreezeHook()]


def test_frozen_part_check_restores_mode_on_error():
    model = _model()
    model.eval()
    with pytest.raises(RuntimeError, match='hook failed'):
        check_frozen_part_eval_like(model, _Runner(), lambda n: False, 'L')
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize(
    'wrapper', ['RepeatDataset', 'ClassBalancedDataset', 'ConcatDataset'])
def test_eval_loader_gives_test_pipeline_to_wrapped_sets(wrapper):
    train = [dict(type='LoadImageFromFile'), dict(type='RandomCrop')]
    test = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    inner = dict(type='CustomDataset', pipeline=train)
    if wrapper == 'ConcatDataset':
        ds = dict(type=wrapper, datasets=[inner, copy.deepcopy(inner)])
    else:
        ds = dict(type=wrapper, dataset=inner, times=2, oversample_thr=0.1)
    cfg = dict(
        train_dataloader=dict(
            batch_size=4,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=ds),
        test_dataloader=dict(batch_size=2, dataset=dict(pipeline=test)))
    out = eval_dataloader_cfg(cfg, 'train')
    leaves = out['dataset'].get('datasets') or [out['dataset']['dataset']]
    assert [d['pipeline'] for d in leaves] == [test] * len(leaves)
    assert 'pipeline' not in out['dataset']  # the wrapper keeps its indexing
    assert out['sampler'] == dict(
        type='DefaultSampler', shuffle=False, round_up=True)
    # a plain dataset as before
    plain = dict(
        cfg, train_dataloader=dict(cfg['train_dataloader'], dataset=inner))
    assert eval_dataloader_cfg(plain, 'train')['dataset']['pipeline'] == test
