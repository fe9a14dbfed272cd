"""Config loading and Runner building shared by ``tools/train.py`` and
``tools/test.py`` for all three toolboxes."""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

from .checkpoint import (CheckpointReadError, checkpoint_is_complete,
                         install_safe_checkpoint_loading,
                         last_complete_checkpoint, list_checkpoints,
                         read_checkpoint_meta)
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


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) continues from.

    mmengine's choice (the ``last_checkpoint`` file) when that file is
    complete; otherwise the newest complete checkpoint of the work dir,
    with a warning. None when the work dir holds no checkpoint at all.

    Raises:
        CheckpointReadError: checkpoints exist but none is complete.
    """
    from mmengine.logging import print_log
    from mmengine.runner.checkpoint import find_latest_checkpoint
    if not osp.isdir(work_dir):
        return None
    latest = find_latest_checkpoint(work_dir)
    if latest is not None and checkpoint_is_complete(latest):
        return latest
    if latest is None and not list_checkpoints(work_dir):
        return None
    fallback = last_complete_checkpoint(
        work_dir, exclude=(latest, ) if latest else ())
    what = (f'the last checkpoint {latest!r} (named by '
            f'{osp.join(work_dir, "last_checkpoint")!r}) is '
            + ('missing' if not osp.isfile(latest) else
               'truncated or unreadable')) if latest else \
        f'{work_dir!r} has no last_checkpoint file'
    if fallback is None:
        raise CheckpointReadError(
            f'Cannot resume: {what}, and no other complete checkpoint is in '
            f'{work_dir!r}. Start again without --resume (or with '
            'load_from=...).')
    print_log(
        f'--resume: {what}; resuming from the newest complete '
        f'checkpoint {fallback!r} instead.', 'current', 30)
    return fallback


def _checkpoint_hook_settings(cfg: Config) -> List[Dict[str, Any]]:
    """``out_dir`` / backend settings of the config's CheckpointHooks
    (``default_hooks.checkpoint`` and any in ``custom_hooks``)."""
    hooks = []
    default = (cfg.get('default_hooks', None) or {}).get('checkpoint', None)
    if isinstance(default, dict):
        hooks.append(default)
    for h in cfg.get('custom_hooks', None) or []:
        if isinstance(h, dict) and str(h.get(
                'type', '')).split('.')[-1] == 'CheckpointHook':
            hooks.append(h)
    return [
        dict(
            out_dir=h.get('out_dir', None),
            backend_args=h.get('backend_args', None),
            file_client_args=h.get('file_client_args', None)) for h in hooks
    ] or [dict()]


def sync_resume_seed(cfg: Config) -> Optional[int]:
    """Resume with the random seed of the checkpoint (exact resume).

    mmengine restores the checkpoint's seed in ``Runner.resume``, after the
    Runner has built the training sampler with ``cfg.randomness.seed``; with
    ``seed=None`` that is a fresh random seed, so the resumed data order
    differs from the straight run's. This sets ``cfg.randomness.seed`` to
    the checkpoint's ``meta['seed']`` before the Runner is built. A
    different explicit seed in the config is overridden with a warning
    (exact resume wins). Nothing changes when the run does not resume or
    the checkpoint (local files only) has no seed.

    Returns:
        int | None: the seed taken from the checkpoint.
    """
    from mmengine.logging import print_log
    if not cfg.get('resume', False):
        return None
    path = cfg.get('load_from', None)
    if path is None and osp.isdir(cfg.work_dir):
        from mmengine.runner.checkpoint import find_latest_checkpoint
        path = find_latest_checkpoint(cfg.work_dir)
    if not path or '://' in str(path) or not osp.isfile(path):
        return None
    seed = read_checkpoint_meta(path).get('seed', None)
    if seed is None:
        return None
    seed = int(seed)
    randomness = dict(cfg.get('randomness', None) or {})
    current = randomness.get('seed', None)
    if current is not None and int(current) != seed:
        print_log(
            f'--resume: the config sets randomness.seed={current} but the '
            f'checkpoint {path!r} was trained with seed {seed}; resuming '
            f'with seed {seed} so that the run continues exactly (data '
            'order, augmentations). Start a new run (no --resume) to use '
            'another seed.', 'current', 30)
    randomness['seed'] = seed
    cfg.randomness = randomness
    return seed


def apply_resume(cfg: Config, resume: Optional[str]) -> None:
    """Apply ``tools/train.py --resume [PATH]`` to ``cfg`` and run the
    stage-2 work-dir checks before anything is written.

    * ``--resume`` (auto): resume from :func:`find_resume_checkpoint`; when
      the work dir holds no checkpoint, start from the config's
      ``load_from`` (a fresh run: for stage 2 the stage-1 checkpoint) or
      from scratch when there is none (stage 2 then refuses);
    * ``--resume PATH``: resume from PATH (a truncated PATH is refused
      naming the last complete checkpoint of its folder);
    * no flag: the config's ``resume=True`` without ``load_from`` is
      treated as ``--resume`` (auto), so a stage-2 config with nothing to
      resume is refused here, before anything is built;
    * stage-2 configs (``Stage2FreezeHook``): see
      :func:`lt_mm.engine.hooks.check_stage2_work_dir` (the work dir and
      the checkpoint folder of ``default_hooks.checkpoint.out_dir``);
    * a resumed run takes the checkpoint's random seed
      (:func:`sync_resume_seed`).
    """
    from mmengine.logging import print_log

    from .hooks import (Stage2GuardError, check_stage2_work_dir,
                        is_stage2_config)
    stage2 = is_stage2_config(cfg)
    work_dir = cfg.work_dir
    flag = '--resume'
    if resume is None and cfg.get('resume', False) is True and \
            cfg.get('load_from', None) is None:
        # the config's resume=True without load_from: mmengine resumes from
        # the work dir's last checkpoint, which is what --resume does
        resume, flag = 'auto', 'resume=True'
    if resume == 'auto':
        found = find_resume_checkpoint(work_dir)
        if found is not None:
            cfg.resume, cfg.load_from = True, found
        elif cfg.get('load_from', None):
            print_log(
                f'--resume: no checkpoint in {work_dir!r}; starting a new '
                f'run from load_from={cfg.load_from!r}.', 'current')
            cfg.resume = False
        else:
            if stage2:
                raise Stage2GuardError(
                    f'{flag}: no checkpoint in {work_dir!r} to resume '
                    'and load_from is not set: stage 2 would train from '
                    'randomly initialised weights. Give the stage-1 '
                    'checkpoint: --cfg-options load_from=...')
            cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        if '://' not in resume:
            if not osp.isfile(resume):
                raise FileNotFoundError(
                    f'--resume {resume!r}: no such checkpoint.')
            if not checkpoint_is_complete(resume):
                other = last_complete_checkpoint(
                    osp.dirname(osp.abspath(resume)), exclude=(resume, ))
                hint = (f' The last complete checkpoint in its folder is '
                        f'{other!r}: --resume {other}.') if other else ''
                raise CheckpointReadError(
                    f'Cannot resume from {resume!r}: the file is truncated '
                    f'or corrupt.{hint}')
        cfg.resume, cfg.load_from = True, resume
    else:
        cfg.resume = bool(cfg.get('resume', False))
    _check_load_from(cfg, stage2)
    if stage2:
        resume_from = cfg.load_from if cfg.resume else None
        for settings in _checkpoint_hook_settings(cfg):
            check_stage2_work_dir(work_dir, cfg.get('load_from', None),
                                  bool(cfg.resume), resume_from, **settings)
    sync_resume_seed(cfg)


def _check_load_from(cfg: Config, stage2: bool) -> None:
    """A fresh run's ``load_from`` before anything is built: a local path
    must be a file (mmengine finds out after building the model and the
    data), and a stage-2 config needs one (unless its hook says
    ``require_load_from=False``)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from .hooks import Stage2GuardError, stage2_hook_cfgs
    load_from = cfg.get('load_from', None)
    if cfg.get('resume', False) and load_from is None:
        return  # mmengine resumes from the work dir's last checkpoint
    if load_from is None:
        hooks = stage2_hook_cfgs(cfg)
        if stage2 and all(h.get('require_load_from', True) for h in hooks):
            raise Stage2GuardError(
                'Stage2FreezeHook: this is a stage-2 config but load_from '
                'is not set. Point load_from at the stage-1 checkpoint, '
                'e.g. --cfg-options load_from=work_dirs/stage1/epoch_90.pth.')
        return
    path = str(load_from)
    local = CheckpointLoader._get_checkpoint_loader(path) is \
        CheckpointLoader._schemes.get('')
    if local and not osp.isfile(osp.expanduser(path)):
        what = 'a folder, not a checkpoint file' if osp.isdir(path) else \
            'no such file'
        raise FileNotFoundError(
            f'load_from={path!r}: {what}. Give the path of a checkpoint '
            '(e.g. work_dirs/stage1/epoch_90.pth).')


def build_runner(cfg: Config, launcher: str = 'none') -> Runner:
    """Build the Runner for ``cfg`` with lt_mm's compatibility layer.

    - checkpoints load with ``weights_only=True`` and mmengine's allowlist;
    - training runs get :class:`~lt_mm.engine.hooks.ResumeRNGHook` (a
      resumed run continues with the random state of the straight run) and
      :class:`~lt_mm.engine.schedule.ResumeScheduleHook` (a run resumed
      with a longer ``train_cfg`` follows the longer schedule);
    - a resumed run (``cfg.resume``) gets the checkpoint's random seed
      before the sampler is built (:func:`sync_resume_seed`);
    - ``--launcher pytorch`` works on CPU-only machines (gloo);
    - count-based components without a count source get the counts of
      ``train_dataloader.dataset`` (:func:`lt_mm.engine.counts.
      fill_class_counts`).
    """
    install_safe_checkpoint_loading()
    setup_distributed(cfg, launcher)
    # a resumed run builds its sampler with the checkpoint's seed
    sync_resume_seed(cfg)
    # class counts without a source follow the training dataset
    from .counts import fill_class_counts
    fill_class_counts(cfg)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    # exact resume: random states travel in the checkpoints; a longer
    # train_cfg re-times the resumed schedulers
    if cfg.get('train_cfg', None):
        present = {type(h).__name__ for h in runner.hooks}
        for hook in ('ResumeRNGHook', 'ResumeScheduleHook'):
            if hook not in present:
                runner.register_hook(dict(type=hook))
    return runner


def enable_visualization(cfg: Config,
                         show_dir: str,
                         interval: Optional[int] = None) -> None:
    """Turn on the toolbox's visualization hook to paint test results.

    As each toolbox's own ``tools/test.py``: mmpretrain paints every
    ``interval``-th image (default 1), mmdet / mmseg every image the hook's
    ``interval`` names (50 in their stock configs) unless ``interval`` is
    given.
    """
    if interval is not None and (isinstance(
            interval, bool) or not isinstance(interval, int) or interval < 1):
        raise ValueError(f'--interval {interval!r}: give an integer >= 1.')
    hooks = cfg.get('default_hooks', {})
    vis = hooks.get('visualization', None)
    if vis is None:
        raise ValueError('--show-dir needs a visualization hook in '
                         'default_hooks (all stock configs have one).')
    scope = cfg.get('default_scope')
    if scope == 'mmpretrain':
        vis['enable'] = True
        vis['out_dir'] = show_dir
        vis['interval'] = interval or 1
    else:  # mmdet / mmseg
        vis['draw'] = True
        if interval is not None:
            vis['interval'] = interval
        if scope == 'mmdet':
            vis['test_out_dir'] = show_dir
        else:
            cfg.visualizer['save_dir'] = show_dir
    cfg.default_hooks.visualization = vis
