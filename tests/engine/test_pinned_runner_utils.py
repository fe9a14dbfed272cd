"""Pins the build-time guards of :mod:`lt_mm.engine.runner_utils` (what
``tools/train.py`` / ``tools/test.py`` check before a Runner exists) that
no other test fixed (found by mutation testing). Real config files and
torch checkpoints in a temporary folder; no Runner is built."""
from __future__ import annotations

import os.path as osp

import pytest
import torch
from mmengine.config import Config

from lt_mm.engine.checkpoint import CheckpointReadError
from lt_mm.engine.hooks import Stage2GuardError
from lt_mm.engine.runner_utils import (apply_resume, enable_visualization,
                                       find_resume_checkpoint, load_config,
                                       sync_resume_seed)

CFG = """
default_scope = 'mmpretrain'
model = dict(type='ImageClassifier')
default_hooks = dict(visualization=dict(type='VisualizationHook'))
"""


def _config(tmp_path, text=CFG, name='cfg.py') -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _ckpt(path, seed=None) -> str:
    meta = dict(epoch=1, iter=2)
    if seed is not None:
        meta['seed'] = seed
    torch.save(dict(meta=meta, state_dict={'w': torch.zeros(2)}), str(path))
    return str(path)


def test_load_config_missing_file_and_scope(tmp_path):
    missing = str(tmp_path / 'nope.py')
    with pytest.raises(FileNotFoundError) as err:
        load_config(missing)
    assert repr(missing) in str(err.value)
    no_scope = _config(tmp_path, "model = dict(type='X')\n", 'noscope.py')
    with pytest.raises(ValueError) as err:
        load_config(no_scope)
    assert no_scope in str(err.value) and 'default_scope' in str(err.value)
    cfg = load_config(_config(tmp_path))
    assert cfg.work_dir == osp.join('./work_dirs', 'cfg')


def test_find_resume_checkpoint_without_a_complete_one(tmp_path):
    assert find_resume_checkpoint(str(tmp_path / 'none')) is None
    work = tmp_path / 'w'
    work.mkdir()
    assert find_resume_checkpoint(str(work)) is None
    cut = work / 'epoch_1.pth'
    cut.write_bytes(b'PK\x03\x04 cut short')
    with pytest.raises(CheckpointReadError) as err:
        find_resume_checkpoint(str(work))
    assert repr(str(work)) in str(err.value)
    assert 'without --resume' in str(err.value)
    good = _ckpt(work / 'epoch_0.pth')
    with open(work / 'last_checkpoint', 'w') as f:
        f.write(str(cut))
    assert find_resume_checkpoint(str(work)) == good


def test_resume_path_missing_or_truncated_is_refused_naming_it(tmp_path):
    cfg = load_config(_config(tmp_path), work_dir=str(tmp_path / 'w'))
    missing = str(tmp_path / 'gone.pth')
    with pytest.raises(FileNotFoundError) as err:
        apply_resume(cfg, missing)
    assert repr(missing) in str(err.value)
    good = _ckpt(tmp_path / 'epoch_1.pth')
    cut = tmp_path / 'epoch_2.pth'
    cut.write_bytes(b'PK\x03\x04 cut short')
    with pytest.raises(CheckpointReadError) as err:
        apply_resume(cfg, str(cut))
    msg = str(err.value)
    assert repr(str(cut)) in msg and f'--resume {good}' in msg
    apply_resume(cfg, good)
    assert cfg.resume is True and cfg.load_from == good


def test_load_from_folder_is_refused_before_building(tmp_path):
    cfg = load_config(_config(tmp_path), work_dir=str(tmp_path / 'w'))
    cfg.load_from = str(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        apply_resume(cfg, None)
    assert repr(str(tmp_path)) in str(err.value)
    assert 'a folder, not a checkpoint file' in str(err.value)


def test_stage2_resume_without_any_checkpoint_is_refused(tmp_path):
    text = CFG + "custom_hooks = [dict(type='Stage2FreezeHook')]\n"
    cfg = load_config(_config(tmp_path, text), work_dir=str(tmp_path / 'w'))
    with pytest.raises(Stage2GuardError) as err:
        apply_resume(cfg, 'auto')
    assert 'load_from' in str(err.value)
    # a fresh stage 2 without load_from as well
    cfg = load_config(_config(tmp_path, text), work_dir=str(tmp_path / 'w'))
    with pytest.raises(Stage2GuardError, match='load_from is not set'):
        apply_resume(cfg, None)
    # unless the hook says so
    text2 = CFG + ("custom_hooks = [dict(type='Stage2FreezeHook', "
                   'require_load_from=False)]\n')
    cfg = load_config(_config(tmp_path, text2, 'c2.py'),
                      work_dir=str(tmp_path / 'w'))
    apply_resume(cfg, None)


def test_resume_takes_the_checkpoint_seed(tmp_path):
    cfg = Config(dict(work_dir=str(tmp_path), resume=True,
                      load_from=_ckpt(tmp_path / 'epoch_1.pth', seed=123),
                      randomness=dict(seed=7)))
    assert sync_resume_seed(cfg) == 123
    assert cfg.randomness['seed'] == 123
    cfg = Config(dict(work_dir=str(tmp_path), resume=False,
                      load_from=str(tmp_path / 'epoch_1.pth')))
    assert sync_resume_seed(cfg) is None and 'randomness' not in cfg


@pytest.mark.parametrize('interval', [0, -1, 2.5, True, '3'])
def test_visualization_interval_is_checked(tmp_path, interval):
    cfg = load_config(_config(tmp_path))
    with pytest.raises(ValueError) as err:
        enable_visualization(cfg, str(tmp_path / 'show'), interval)
    assert f'--interval {interval!r}' in str(err.value)


def test_visualization_needs_the_hook(tmp_path):
    cfg = load_config(
        _config(tmp_path, "default_scope = 'mmseg'\ndefault_hooks = {}\n",
                'novis.py'))
    with pytest.raises(ValueError, match='visualization hook'):
        enable_visualization(cfg, str(tmp_path / 'show'))
    cfg = load_config(_config(tmp_path))
    enable_visualization(cfg, str(tmp_path / 'show'), 3)
    vis = cfg.default_hooks.visualization
    assert vis['enable'] is True and vis['interval'] == 3
    assert vis['out_dir'] == str(tmp_path / 'show')
