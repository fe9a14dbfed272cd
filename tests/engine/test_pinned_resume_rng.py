"""Pins the exact-resume machinery of :mod:`lt_mm.engine.hooks` (found by
mutation testing): :func:`get_rng_state` / :func:`set_rng_state` restore
the python, numpy and torch streams (cached gaussians included) after a
``weights_only`` round trip through a checkpoint; the replay wrapper of
the iteration-based loop restores them once, right before the first new
batch; :class:`ResumeRNGHook` makes an epoch-based ``--resume`` equal the
straight run, leaves a fresh run that merely loads a checkpoint alone,
and the persistent-workers warning fires for an epoch-based resume only.

The toy model (dropout) and data (a numpy-random flip) of
``tests/reliability/test_resume.py`` on real mmengine Runners; real torch
DataLoaders for the warning.
"""
from __future__ import annotations

import io
import random
import shutil

import numpy as np
import pytest
import torch
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from lt_mm.engine.checkpoint import safe_torch_load
from lt_mm.engine.hooks import (RNG_META_KEY, _RestoreRNGAfterSkip,
                                get_rng_state, set_rng_state,
                                warn_persistent_workers_resume)
from tests.reliability.test_resume import _log, _toy_model, _ToyData


def _draws() -> list:
    return [
        random.gauss(0, 1),
        random.random(),
        float(np.random.randn()),
        float(np.random.rand()), *torch.rand(2).tolist()
    ]


def test_the_saved_state_restores_every_stream():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    random.gauss(0, 1)  # an odd number of gaussians: one is cached
    np.random.randn()
    buf = io.BytesIO()
    torch.save(get_rng_state(), buf)  # as in a checkpoint's meta
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    expected = _draws()
    _draws()
    set_rng_state(state)
    assert _draws() == expected


def test_the_replay_is_not_disturbed_and_the_state_restored_once():
    torch.manual_seed(0)
    saved = get_rng_state()  # where the straight run fetched batch 2
    straight = [torch.rand(3), torch.rand(3)]
    torch.manual_seed(7)  # the resumed run's fresh seed
    fresh = torch.Generator().manual_seed(7)
    batches = _RestoreRNGAfterSkip(iter(range(5)), 2, saved)
    assert [next(batches), next(batches)] == [0, 1]  # the replay
    assert torch.equal(torch.rand(3), torch.rand(3, generator=fresh))
    assert next(batches) == 2
    assert torch.equal(torch.rand(3), straight[0])
    assert next(batches) == 3
    assert torch.equal(torch.rand(3), straight[1])


@pytest.mark.parametrize('workers, persistent', [(2, True), (2, False),
                                                 (0, False)])
def test_persistent_workers_warning(workers, persistent):
    """Real DataLoaders (building one starts no worker)."""
    loader = DataLoader(
        list(range(4)), num_workers=workers, persistent_workers=persistent)
    assert warn_persistent_workers_resume(loader) == (
        workers > 0 and persistent)


def _toy_runner(work_dir,
                by_epoch=True,
                num_workers=0,
                epochs=2,
                **kw) -> Runner:
    """``epochs`` epochs (or 6 iterations) of 3 batches, a checkpoint
    after each epoch (every 3 iterations), :class:`ResumeRNGHook`
    registered."""
    train_cfg = dict(by_epoch=True, max_epochs=epochs) if by_epoch else \
        dict(by_epoch=False, max_iters=6)
    runner = Runner(
        model=_toy_model(),
        work_dir=str(work_dir),
        experiment_name=f'lt_mm_rng_{work_dir.name}_{work_dir.parent.name}',
        train_dataloader=dict(
            dataset=_ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=num_workers,
            persistent_workers=num_workers > 0),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                by_epoch=by_epoch,
                interval=1 if by_epoch else 3)),
        log_processor=dict(by_epoch=by_epoch),
        randomness=dict(seed=0),
        default_scope='mmengine',
        **kw)
    runner.register_hook(dict(type='ResumeRNGHook'))
    return runner


def _weights(path) -> dict:
    return safe_torch_load(str(path))['state_dict']


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_epoch_based_resume_equals_the_straight_run(tmp_path):
    """Dropout and the numpy flip of epoch 2 draw from the states the
    straight run had after epoch 1 (restored at ``before_train``)."""
    _toy_runner(tmp_path / 'a').train()
    (tmp_path / 'b').mkdir()  # the interrupted run: only epoch 1 saved
    shutil.copy(tmp_path / 'a' / 'epoch_1.pth', tmp_path / 'b')
    _toy_runner(
        tmp_path / 'b',
        resume=True,
        load_from=str(tmp_path / 'b' / 'epoch_1.pth')).train()
    assert _same(
        _weights(tmp_path / 'a' / 'epoch_2.pth'),
        _weights(tmp_path / 'b' / 'epoch_2.pth'))


def test_a_fresh_run_from_a_checkpoint_keeps_its_own_seed(tmp_path):
    """``load_from`` without resume: the random states saved in the
    checkpoint are not restored (the run starts from its seed), so it
    equals the run loading the same weights without saved states."""
    _toy_runner(tmp_path / 'a').train()
    ckpt = safe_torch_load(str(tmp_path / 'a' / 'epoch_1.pth'))
    assert RNG_META_KEY in ckpt['meta']
    del ckpt['meta'][RNG_META_KEY]
    torch.save(ckpt, str(tmp_path / 'plain.pth'))
    for name, src in (('b', tmp_path / 'a' / 'epoch_1.pth'),
                      ('c', tmp_path / 'plain.pth')):
        _toy_runner(tmp_path / name, load_from=str(src)).train()
    assert _same(
        _weights(tmp_path / 'b' / 'epoch_2.pth'),
        _weights(tmp_path / 'c' / 'epoch_2.pth'))


@pytest.mark.parametrize('by_epoch, resume, workers, warned',
                         [(True, True, 2, True), (True, False, 1, False),
                          (False, True, 1, False)])
def test_persistent_workers_warning_on_resume_only(tmp_path, by_epoch, resume,
                                                   workers, warned):
    """An epoch-based resume with persistent workers warns, naming the
    setting and the fix; a run that only loads a checkpoint, and an
    iteration-based resume (its replay goes through the same workers), do
    not. The resumed runs start at the end: no worker starts there."""
    _toy_runner(tmp_path / 'a', by_epoch=by_epoch).train()
    last = 'epoch_2.pth' if by_epoch else 'iter_6.pth'
    runner = _toy_runner(
        tmp_path / 'b',
        by_epoch=by_epoch,
        num_workers=workers,
        resume=resume,
        load_from=str(tmp_path / 'a' / last))
    runner.train()
    log = _log(runner)
    found = 'persistent_workers=True: the resume is not exact' in log
    assert found == warned
    if warned:
        assert 'WARNING' in log and 'num_workers=2 and persistent' in log
        assert 'train_dataloader.persistent_workers=False' in log
