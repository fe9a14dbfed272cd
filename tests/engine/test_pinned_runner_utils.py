"""Pins the build-time guards of :mod:`lt_mm.engine.runner_utils` (what
``tools/train.py`` / ``tools/test.py`` check before a Runner exists) that
no other test fixed (found by mutation testing), and what they do with
valid input: config loading priorities, the checkpoint ``--resume``
picks, the resumed seed and the visualization settings per toolbox. Real
config files and torch checkpoints in a temporary folder; no Runner is
built."""
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
    cfg = load_config(
        _config(tmp_path, text2, 'c2.py'), work_dir=str(tmp_path / 'w'))
    apply_resume(cfg, None)


def test_config_resume_true_without_load_from_is_checked_like_resume(tmp_path):
    """``resume=True`` in the config and no ``load_from`` means what
    ``--resume`` means: a stage 2 with nothing to resume is refused before
    anything is built, and a checkpoint of the work dir is picked (its
    seed taken) as with the flag."""
    text = CFG + "custom_hooks = [dict(type='Stage2FreezeHook')]\n" \
        'resume = True\n'
    work = tmp_path / 'w'
    cfg = load_config(_config(tmp_path, text), work_dir=str(work))
    with pytest.raises(Stage2GuardError) as err:
        apply_resume(cfg, None)
    msg = str(err.value)
    assert msg.startswith('resume=True: no checkpoint in')
    assert repr(str(work)) in msg and 'load_from=' in msg
    plain = load_config(
        _config(tmp_path, CFG + 'resume = True\n', 'p.py'), work_dir=str(work))
    apply_resume(plain, None)  # not stage 2: mmengine starts from scratch
    assert plain.resume is True and plain.load_from is None
    work.mkdir()
    ck = _ckpt(work / 'epoch_1.pth', seed=4)
    cut = work / 'epoch_2.pth'
    cut.write_bytes(b'PK\x03\x04 cut short')
    (work / 'last_checkpoint').write_text(str(cut))
    plain = load_config(
        _config(tmp_path, CFG + 'resume = True\n', 'p.py'), work_dir=str(work))
    apply_resume(plain, None)  # the complete one, not the truncated last
    assert plain.resume is True and plain.load_from == ck
    assert plain.randomness['seed'] == 4


def test_resume_takes_the_checkpoint_seed(tmp_path):
    cfg = Config(
        dict(
            work_dir=str(tmp_path),
            resume=True,
            load_from=_ckpt(tmp_path / 'epoch_1.pth', seed=123),
            randomness=dict(seed=7)))
    assert sync_resume_seed(cfg) == 123
    assert cfg.randomness['seed'] == 123
    cfg = Config(
        dict(
            work_dir=str(tmp_path),
            resume=False,
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


def test_load_config_work_dir_priority_and_options(tmp_path):
    text = "default_scope = 'mmseg'\nwork_dir = 'from_cfg'\nx = dict(a=1)\n"
    path = _config(tmp_path, text, 'seg_cfg.py')
    cfg = load_config(path, dict(**{'x.a': 2, 'y': 3}), None)
    assert cfg.work_dir == 'from_cfg' and cfg.x.a == 2 and cfg.y == 3
    cfg = load_config(path, None, 'from_cli')
    assert cfg.work_dir == 'from_cli' and cfg.x.a == 1
    plain = _config(tmp_path, "default_scope = 'mmdet'\n", 'det_cfg.py')
    assert load_config(plain).work_dir == osp.join('./work_dirs', 'det_cfg')


def test_resume_follows_a_complete_last_checkpoint(tmp_path):
    """mmengine's ``last_checkpoint`` wins when complete, also over a
    newer complete file; a missing one is named as missing."""
    work = tmp_path / 'w'
    work.mkdir()
    first = _ckpt(work / 'epoch_1.pth')
    newer = _ckpt(work / 'epoch_2.pth')
    (work / 'last_checkpoint').write_text(first)
    assert find_resume_checkpoint(str(work)) == first
    gone = str(work / 'epoch_3.pth')
    (work / 'last_checkpoint').write_text(gone)
    assert find_resume_checkpoint(str(work)) == newer
    (work / 'last_checkpoint').unlink()
    assert find_resume_checkpoint(str(work)) == newer


def test_resume_auto_and_load_from(tmp_path):
    stage1 = _ckpt(tmp_path / 'stage1.pth', seed=5)
    text = f"default_scope = 'mmpretrain'\nload_from = {stage1!r}\n"
    work = tmp_path / 'w'
    cfg = load_config(_config(tmp_path, text), work_dir=str(work))
    apply_resume(cfg, 'auto')  # nothing to resume: a fresh run
    assert cfg.resume is False and cfg.load_from == stage1
    assert 'randomness' not in cfg
    work.mkdir()
    ck = _ckpt(work / 'epoch_1.pth', seed=11)
    cfg = load_config(_config(tmp_path, text), work_dir=str(work))
    apply_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from == ck
    assert cfg.randomness['seed'] == 11
    cfg = load_config(_config(tmp_path, text), work_dir=str(work))
    apply_resume(cfg, None)
    assert cfg.resume is False and cfg.load_from == stage1
    assert 'randomness' not in cfg
    url = 'https://example.invalid/epoch_9.pth'  # not fetched here
    apply_resume(cfg, url)
    assert cfg.resume is True and cfg.load_from == url


def test_resume_seed_from_the_work_dir_and_not_from_urls(tmp_path):
    work = tmp_path / 'w'
    work.mkdir()
    ck = _ckpt(work / 'epoch_3.pth', seed=42)
    (work / 'last_checkpoint').write_text(ck)
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    assert sync_resume_seed(cfg) == 42 and cfg.randomness == dict(seed=42)
    cfg = Config(
        dict(
            work_dir=str(work),
            resume=True,
            load_from='https://example.invalid/epoch_3.pth'))
    assert sync_resume_seed(cfg) is None and 'randomness' not in cfg
    cfg = Config(
        dict(
            work_dir=str(work),
            resume=True,
            load_from=_ckpt(tmp_path / 'noseed.pth'),
            randomness=dict(seed=9, deterministic=True)))
    assert sync_resume_seed(cfg) is None
    assert cfg.randomness == dict(seed=9, deterministic=True)
    cfg = Config(
        dict(
            work_dir=str(work),
            resume=True,
            load_from=ck,
            randomness=dict(seed=42, deterministic=True)))
    assert sync_resume_seed(cfg) == 42
    assert cfg.randomness == dict(seed=42, deterministic=True)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_visualization_settings_per_toolbox(tmp_path, scope):
    text = (f"default_scope = '{scope}'\n"
            "default_hooks = dict(visualization=dict("
            "type='VisualizationHook', interval=50))\n"
            "visualizer = dict(type='Visualizer')\n")
    show = str(tmp_path / 'show')
    cfg = load_config(_config(tmp_path, text))
    enable_visualization(cfg, show)
    vis = cfg.default_hooks.visualization
    cfg2 = load_config(_config(tmp_path, text))
    enable_visualization(cfg2, show, 7)
    vis2 = cfg2.default_hooks.visualization
    if scope == 'mmpretrain':
        assert vis == dict(
            type='VisualizationHook', interval=1, enable=True, out_dir=show)
        assert vis2['interval'] == 7
        enable_visualization(cfg2, show, 1)
        assert cfg2.default_hooks.visualization['interval'] == 1
        assert 'save_dir' not in cfg.visualizer
    elif scope == 'mmdet':
        assert vis == dict(
            type='VisualizationHook',
            interval=50,
            draw=True,
            test_out_dir=show)
        assert vis2['interval'] == 7
        assert 'save_dir' not in cfg.visualizer
    else:
        assert vis == dict(type='VisualizationHook', interval=50, draw=True)
        assert vis2['interval'] == 7 and 'test_out_dir' not in vis2
        assert cfg.visualizer['save_dir'] == show
