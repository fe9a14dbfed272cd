"""Config loading and Runner building shared by ``tools/train.py`` and
``tools/test.py`` for all three toolboxes."""
from __future__ import annotations

import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.runner import Runner

from .checkpoint import install_safe_checkpoint_loading
from .dist import setup_distributed


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Load a config, merge ``--cfg-options`` and resolve the work dir.

    The work dir follows OpenMMLab's priority: CLI > config >
    ``./work_dirs/<config name>``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist.')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    if 'default_scope' not in cfg:
        raise ValueError(
            f'{path} has no default_scope: inherit a stock config '
            "('mmpretrain::', 'mmseg::' or 'mmdet::') or set "
            "default_scope='mmpretrain'|'mmseg'|'mmdet'.")
    return cfg


def build_runner(cfg: Config, launcher: str = 'none') -> Runner:
    """Build the Runner for ``cfg`` with lt_mm's compatibility layer.

    - checkpoints load with ``weights_only=True`` and mmengine's allowlist;
    - ``--launcher pytorch`` works on CPU-only machines (gloo).
    """
    install_safe_checkpoint_loading()
    setup_distributed(cfg, launcher)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Turn on the toolbox's visualization hook to paint test results."""
    hooks = cfg.get('default_hooks', {})
    vis = hooks.get('visualization', None)
    if vis is None:
        raise ValueError('--show-dir needs a visualization hook in '
                         'default_hooks (all stock configs have one).')
    scope = cfg.get('default_scope')
    if scope == 'mmpretrain':
        vis['enable'] = True
        vis['out_dir'] = show_dir
    else:  # mmdet / mmseg
        vis['draw'] = True
        if scope == 'mmdet':
            vis['test_out_dir'] = show_dir
        else:
            cfg.visualizer['save_dir'] = show_dir
    cfg.default_hooks.visualization = vis
