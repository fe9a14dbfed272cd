"""Stage-2 checkpoint-folder guard and exact ``--resume`` (lt_mm.engine).

* stage 2 with ``default_hooks.checkpoint.out_dir``: mmengine saves the
  checkpoints to ``<out_dir>/<basename of work_dir>``; the stage-2 guard
  checks that folder (and the work dir's ``last_checkpoint``), so stage-1
  checkpoints there are never overwritten;
* ``--resume`` with ``randomness.seed=None`` builds the sampler with the
  checkpoint's seed (same data order as the straight run);
* an epoch-based resume with persistent DataLoader workers (not exact)
  logs a warning naming the fix.

Real Runners on the tiny session data and the session stage-1 checkpoint
(``cls_stage1``); only the resumed runs that must show the data order train
(one tiny epoch).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import os.path as osp
import shutil
from typing import Dict, Iterator, List

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import lt_mm.cls  # noqa: F401
from lt_mm.engine.checkpoint import read_checkpoint_meta
from lt_mm.engine.hooks import Stage2GuardError, checkpoint_save_dir
from lt_mm.engine.runner_utils import apply_resume, build_runner, load_config
from tests.conftest import QUICKSTART, STAGE1_CONFIGS, copy_work_dir

ONE_EPOCH = {
    'train_cfg.max_epochs': 1,
    'train_cfg.val_interval': 1,
    'default_hooks.logger.interval': 1,
    'default_hooks.checkpoint.interval': 1,
}


@pytest.fixture
def cls_env(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _hashes(folder) -> Dict[str, str]:
    out = {}
    for root, _, files in os.walk(str(folder)):
        for f in files:
            path = osp.join(root, f)
            with open(path, 'rb') as fh:
                out[osp.relpath(path, str(folder))] = hashlib.sha256(
                    fh.read()).hexdigest()
    return out


def _log(runner) -> str:
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


@contextlib.contextmanager
def _warnings() -> Iterator[List[str]]:
    """WARNING records of the current MMLogger (``print_log('current')``)
    while the block runs."""
    records: List[str] = []

    class _Collect(logging.Handler):

        def emit(self, record):
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = _Collect()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# ------------------------------------------------ checkpoint folder rule
class _TinyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, inputs=None, data_samples=None, mode='loss'):
        return dict(loss=self.fc(torch.ones(1, 1)).sum())


@pytest.mark.parametrize('work_dir', ['runs/exp', 'runs/exp/'])
def test_checkpoint_save_dir_matches_checkpoint_hook(tmp_path, monkeypatch,
                                                     work_dir):
    """``checkpoint_save_dir`` is where mmengine's CheckpointHook saves."""
    monkeypatch.chdir(tmp_path)
    runner = Runner(
        model=_TinyModel(),
        work_dir=work_dir,
        default_hooks=dict(logger=None),
        experiment_name=f'lt_mm_ckpt_dir_{len(work_dir)}',
        default_scope='mmengine')
    for out_dir in (None, str(tmp_path / 'ckpts'), 'ckpts', work_dir,
                    runner.work_dir, tmp_path / 'as_path'):
        hook = CheckpointHook(interval=1, out_dir=out_dir)
        hook.before_train(runner)
        assert checkpoint_save_dir(work_dir, out_dir) == str(hook.out_dir), \
            out_dir


def _stage2_cfg(method, work_dir, name, **options):
    opts = dict(ONE_EPOCH)
    opts.update(options)
    cfg = load_config(
        osp.join(QUICKSTART, f'digits_cls_{method}.py'), opts, str(work_dir))
    cfg.experiment_name = f'lt_mm_outdir_{name}'
    return cfg


def _refused(cfg, match: str) -> str:
    """Refused by tools/train.py's check and by the hook (Runner API)."""
    with pytest.raises(Stage2GuardError, match=match) as err:
        apply_resume(cfg, None)
    runner = build_runner(cfg)
    with pytest.raises(Stage2GuardError, match=match):
        runner.train()
    assert runner.iter == 0 and runner.epoch == 0
    return str(err.value)


def test_stage2_refuses_stage1_checkpoints_in_out_dir(cls_env, cls_stage1,
                                                      tmp_path):
    """Stage 1 and stage 2 with the same checkpoint ``out_dir`` and work-dir
    name: stage 2 would overwrite stage 1's checkpoints although its work
    dir is new."""
    out_dir = str(tmp_path / 'ckpts')
    s1_dir = osp.join(out_dir, 'exp')  # where stage 1 (out_dir) saved
    os.makedirs(s1_dir)
    s1_ckpt = osp.join(s1_dir, 'epoch_2.pth')
    shutil.copy(cls_stage1['checkpoint'], s1_ckpt)
    before = _hashes(s1_dir)
    opts = {'default_hooks.checkpoint.out_dir': out_dir}

    # load_from is in the checkpoint folder of stage 2
    cfg = _stage2_cfg(
        'disalign', tmp_path / 'B' / 'exp', 'same', **opts, load_from=s1_ckpt)
    msg = _refused(cfg, 'is the folder of the stage-1 checkpoint')
    assert s1_dir in msg and 'out_dir' in msg
    # load_from elsewhere, but the folder holds stage-1 checkpoints
    cfg = _stage2_cfg(
        'crt',
        tmp_path / 'C' / 'exp',
        'holds',
        **opts,
        load_from=cls_stage1['checkpoint'])
    msg = _refused(cfg, 'not a stage-2 checkpoint')
    assert s1_ckpt in msg and 'out_dir' in msg
    assert _hashes(s1_dir) == before

    # the stage-1 work dir (its last_checkpoint names the stage-1
    # checkpoint in out_dir) with checkpoints going elsewhere
    s1_work = tmp_path / 'A' / 'exp'
    os.makedirs(s1_work)
    (s1_work / 'last_checkpoint').write_text(s1_ckpt)
    cfg = _stage2_cfg(
        'disalign',
        s1_work,
        'marker',
        load_from=cls_stage1['checkpoint'],
        **{'default_hooks.checkpoint.out_dir': str(tmp_path / 'other')})
    msg = _refused(cfg, "overwrite stage 1's last_checkpoint")
    assert str(s1_work / 'last_checkpoint') in msg
    assert (s1_work / 'last_checkpoint').read_text() == s1_ckpt

    # another work-dir name: stage 2 trains and saves next to stage 1
    cfg = _stage2_cfg(
        'disalign', tmp_path / 'B' / 'exp_s2', 'ok', **opts, load_from=s1_ckpt)
    apply_resume(cfg, None)
    build_runner(cfg).train()
    assert _hashes(s1_dir) == before
    s2_dir = checkpoint_save_dir(cfg.work_dir, out_dir)
    assert s2_dir == osp.join(out_dir, 'exp_s2')
    assert sorted(os.listdir(s2_dir)) == ['epoch_1.pth']
    meta = read_checkpoint_meta(osp.join(s2_dir, 'epoch_1.pth'))
    assert meta['lt_mm_stage2']


# ------------------------------------------------------- exact --resume
def _resume_cfg(cls_stage1, work_dir, name, **options):
    opts = {
        k: int(v)
        for k, v in (o.split('=') for o in cls_stage1['options'])
    }
    opts.update(options)
    cfg = load_config(STAGE1_CONFIGS['cls'], opts, str(work_dir))
    cfg.experiment_name = f'lt_mm_resume_{name}'
    return cfg


def test_resume_uses_checkpoint_seed(cls_env, cls_stage1, tmp_path):
    """``randomness.seed=None`` (the ImageNet-LT / LVIS configs): the
    resumed sampler has the checkpoint's seed, so epoch 3 has the data
    order of the straight run."""
    work = copy_work_dir(cls_stage1['work_dir'], tmp_path / 'w')
    seed = read_checkpoint_meta(osp.join(work, 'epoch_2.pth'))['seed']
    cfg = _resume_cfg(
        cls_stage1, work, 'seed_none', **{
            'randomness.seed': None,
            'train_cfg.max_epochs': 3,
            'train_cfg.val_interval': 10
        })
    apply_resume(cfg, 'auto')
    assert cfg.randomness.seed == seed
    seen: List[int] = []

    class _Record(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen.extend(d.sample_idx for d in data_batch['data_samples'])

    runner = build_runner(cfg)
    runner.register_hook(_Record())
    runner.train()
    assert runner.epoch == 3 and runner.seed == seed
    # DefaultSampler(shuffle=True) of the straight run at epoch index 2
    n = len(runner.train_dataloader.dataset)
    order = torch.randperm(
        n, generator=torch.Generator().manual_seed(seed + 2)).tolist()
    assert seen == order

    # an explicit other seed: the checkpoint's wins, with a warning
    cfg = _resume_cfg(cls_stage1, work, 'seed_5', **{'randomness.seed': 5})
    with _warnings() as warned:
        apply_resume(cfg, osp.join(work, 'epoch_1.pth'))
    assert cfg.randomness.seed == seed
    assert any('randomness.seed=5' in w and f'seed {seed}' in w
               for w in warned), warned
    runner = build_runner(cfg)
    assert runner.seed == seed
    assert runner.train_dataloader.sampler.seed == seed


@pytest.mark.parametrize('workers', [1, 0])
def test_resume_with_persistent_workers_warns(cls_env, cls_stage1, tmp_path,
                                              workers):
    """Epoch-based resume with persistent workers is not exact (the workers'
    random state restarts): a warning names the cause and the fix."""
    work = copy_work_dir(cls_stage1['work_dir'], tmp_path / 'w')
    cfg = _resume_cfg(
        cls_stage1, work, f'workers{workers}', **{
            'train_dataloader.num_workers': workers,
            'train_dataloader.persistent_workers': workers > 0
        })
    apply_resume(cfg, 'auto')
    runner = build_runner(cfg)
    runner.train()  # resumes at the last epoch: no epoch (no worker) runs
    log = _log(runner)
    assert 'resumed epoch: 2' in log
    found = 'persistent_workers=True: the resume is not exact' in log
    assert found == (workers > 0)
    if found:
        assert 'WARNING' in log and \
            'train_dataloader.persistent_workers=False' in log
