"""Pinned behaviour of lt_mm.engine.runner_utils (mutation audit): config
loading priorities, the checkpoint ``--resume`` picks, the resumed seed and
the visualization settings per toolbox, on real configs and checkpoints."""
from __future__ import annotations

import os.path as osp

import pytest
import torch
from mmengine.config import Config

from lt_mm.engine.runner_utils import (apply_resume, enable_visualization,
                                       find_resume_checkpoint, load_config,
                                       sync_resume_seed)


def _config(tmp_path, text, name='cfg.py') -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _ckpt(path, seed=None) -> str:
    meta = dict(epoch=1, iter=2)
    if seed is not None:
        meta['seed'] = seed
    torch.save(dict(meta=meta, state_dict={'w': torch.zeros(2)}), str(path))
    return str(path)


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
        dict(work_dir=str(work), resume=True,
             load_from='https://example.invalid/epoch_3.pth'))
    assert sync_resume_seed(cfg) is None and 'randomness' not in cfg
    cfg = Config(dict(work_dir=str(work), resume=True,
                      load_from=_ckpt(tmp_path / 'noseed.pth'),
                      randomness=dict(seed=9, deterministic=True)))
    assert sync_resume_seed(cfg) is None
    assert cfg.randomness == dict(seed=9, deterministic=True)
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=ck,
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
        assert vis == dict(type='VisualizationHook', interval=1,
                           enable=True, out_dir=show)
        assert vis2['interval'] == 7
        enable_visualization(cfg2, show, 1)
        assert cfg2.default_hooks.visualization['interval'] == 1
        assert 'save_dir' not in cfg.visualizer
    elif scope == 'mmdet':
        assert vis == dict(type='VisualizationHook', interval=50,
                           draw=True, test_out_dir=show)
        assert vis2['interval'] == 7
        assert 'save_dir' not in cfg.visualizer
    else:
        assert vis == dict(type='VisualizationHook', interval=50, draw=True)
        assert vis2['interval'] == 7 and 'test_out_dir' not in vis2
        assert cfg.visualizer['save_dir'] == show
