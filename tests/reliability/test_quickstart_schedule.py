"""Resume with a longer schedule follows the longer schedule (issue #10).

A run trained for ``max_epochs = 3`` and resumed with ``max_epochs = 6``
must use, from the resume on, exactly the learning rates of a straight
``max_epochs = 6`` run: mmengine restores the schedulers' ``end`` /
``T_max`` of the first run from the checkpoint, and
``lt_mm.engine.schedule.ResumeScheduleHook`` (registered by the
quickstart configs) re-times them to the current ``train_cfg``.

The runs use mmengine's Runner with a two-parameter model (pure torch), so
the test checks the engine mechanics in about a second; a second test
checks that every shipped quickstart config takes its schedule length from
``train_cfg`` (no hard-coded ``end`` / ``T_max``) and registers the hook.
"""
import glob
import math
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS, MODELS
from mmengine.runner import Runner

import lt_mm.engine  # noqa: F401  (safe loading; registers the hook)
from tests.conftest import QUICKSTART

LR0 = 0.1
ITERS_PER_EPOCH = 2

STORES = {}


@MODELS.register_module(name='LtMmScheduleToyModel', force=True)
class _Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(1, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.as_tensor(inputs).float().reshape(-1, 1)
        out = self.w(x)
        if mode == 'loss':
            return dict(loss=(out**2).mean())
        return out


@HOOKS.register_module(name='LtMmRecordLRHook', force=True)
class _RecordLR(Hook):
    """lr used by every training iteration: STORES[key] = {iter: lr}."""

    def __init__(self, key):
        self.store = STORES.setdefault(key, {})

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.store[runner.iter] = runner.optim_wrapper.get_lr()['lr'][0]


def _run(work_dir, schedule, loop, hook=True, resume=False):
    key = f'{work_dir}:{resume}'
    STORES.pop(key, None)
    default_hooks = dict(
        logger=dict(type='LoggerHook', interval=100),
        checkpoint=dict(
            type='CheckpointHook',
            interval=1,
            by_epoch=loop.get('type',
                              'EpochBasedTrainLoop') == 'EpochBasedTrainLoop'))
    if hook:
        default_hooks['resume_schedule'] = dict(type='ResumeScheduleHook')
    cfg = Config(
        dict(
            model=dict(type='LtMmScheduleToyModel'),
            work_dir=work_dir,
            train_dataloader=dict(
                dataset=[dict(inputs=1.0)] * (2 * ITERS_PER_EPOCH),
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='default_collate'),
                batch_size=2,
                num_workers=0),
            optim_wrapper=dict(
                optimizer=dict(type='SGD', lr=LR0, momentum=0.9)),
            param_scheduler=schedule,
            train_cfg=loop,
            default_hooks=default_hooks,
            custom_hooks=[dict(type='LtMmRecordLRHook', key=key)],
            resume=resume,
            randomness=dict(seed=0),
            log_level='WARNING',
            experiment_name=osp.basename(work_dir) + str(resume)))
    Runner.from_cfg(cfg).train()
    return STORES[key]


def _cosine(epoch, max_epochs):
    # CosineAnnealingLR, eta_min 0: lr0 (1 + cos(pi e / T)) / 2
    return LR0 * (1 + math.cos(math.pi * epoch / max_epochs)) / 2


def test_resume_longer_epochs_follows_straight_run(tmp_path):
    # cosine by epoch, `end` / `T_max` from train_cfg.max_epochs (as in the
    # quickstart configs) + an iteration warm-up with an explicit end
    sched = [
        dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=3),
        dict(type='CosineAnnealingLR', by_epoch=True)
    ]
    short = dict(by_epoch=True, max_epochs=3)
    long = dict(by_epoch=True, max_epochs=6)
    straight = _run(str(tmp_path / 'straight'), sched, long)
    # the straight run is the closed form (epoch 3, the 4th:
    # 0.1 (1 + cos(pi/2)) / 2 = 0.05) -- guards against a hook that
    # changes the straight run
    for it in range(3 * ITERS_PER_EPOCH, 6 * ITERS_PER_EPOCH):
        assert straight[it] == pytest.approx(
            _cosine(it // ITERS_PER_EPOCH, 6), rel=1e-9, abs=1e-12)

    for hook in (True, False):
        work = str(tmp_path / f'resumed_{hook}')
        first = _run(work, sched, short, hook=hook)
        assert sorted(first) == list(range(3 * ITERS_PER_EPOCH))
        assert len(glob.glob(osp.join(work, 'epoch_3.pth'))) == 1
        resumed = _run(work, sched, long, hook=hook, resume=True)
        assert sorted(resumed) == list(
            range(3 * ITERS_PER_EPOCH, 6 * ITERS_PER_EPOCH))
        same = all(resumed[it] == straight[it] for it in resumed)
        if hook:
            # bit-exact: the same scheduler arithmetic as the straight run
            for it in resumed:
                assert resumed[it] == straight[it], (it, resumed, straight)
        else:
            # mmengine alone keeps the first run's end = T_max = 3: the lr
            # stays at its epoch-2 value 0.1 (1 + cos(2pi/3)) / 2 = 0.025
            # for ever instead of 0.05, 0.025, 0.0067 (the straight run) --
            # the defect the hook fixes
            assert not same
            for it in resumed:
                assert resumed[it] == pytest.approx(_cosine(2, 3), rel=1e-9)


def test_resume_longer_iters_follows_straight_run(tmp_path):
    # poly by iteration (the segmentation quickstart), end from max_iters
    sched = [dict(type='PolyLR', power=0.9, eta_min=1e-4, by_epoch=False)]
    straight = _run(
        str(tmp_path / 'straight'), sched,
        dict(type='IterBasedTrainLoop', max_iters=12))
    work = str(tmp_path / 'resumed')
    _run(work, sched, dict(type='IterBasedTrainLoop', max_iters=6))
    resumed = _run(
        work,
        sched,
        dict(type='IterBasedTrainLoop', max_iters=12),
        resume=True)
    assert sorted(resumed) == list(range(6, 12))
    for it in resumed:
        assert resumed[it] == pytest.approx(straight[it], rel=1e-12), it
    # poly closed form at iteration 6 of 12 (PolyLR: total_iters = 11):
    # (0.1 - 1e-4) (1 - 6/11) ** 0.9 + 1e-4
    assert straight[6] == pytest.approx(
        (LR0 - 1e-4) * (1 - 6 / 11)**0.9 + 1e-4, rel=1e-9)


def test_plain_resume_is_untouched(tmp_path):
    # same train_cfg on resume: the hook leaves the restored schedulers alone
    sched = [dict(type='CosineAnnealingLR', by_epoch=True)]
    loop = dict(by_epoch=True, max_epochs=4)
    straight = _run(str(tmp_path / 'straight'), sched, loop)
    work = str(tmp_path / 'resumed')
    _run(work, sched, loop)
    # resume from epoch 2 of the same 4-epoch schedule
    os.remove(osp.join(work, 'epoch_4.pth'))
    os.remove(osp.join(work, 'epoch_3.pth'))
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work, 'epoch_2.pth'))
    resumed = _run(work, sched, loop, resume=True)
    assert sorted(resumed) == list(
        range(2 * ITERS_PER_EPOCH, 4 * ITERS_PER_EPOCH))
    for it in resumed:
        assert resumed[it] == straight[it]


QUICKSTART_CONFIGS = sorted(
    p for p in glob.glob(osp.join(QUICKSTART, 'digits_*.py')))


@pytest.mark.parametrize(
    'path',
    QUICKSTART_CONFIGS,
    ids=[osp.basename(p) for p in QUICKSTART_CONFIGS])
def test_quickstart_configs_take_schedule_length_from_train_cfg(path):
    cfg = Config.fromfile(path, import_custom_modules=False)
    train_cfg = cfg.train_cfg
    by_epoch = 'max_epochs' in train_cfg
    length = train_cfg.max_epochs if by_epoch else train_cfg.max_iters
    scheds = cfg.get('param_scheduler') or []
    if isinstance(scheds, dict):
        scheds = [scheds]
    for s in scheds:
        assert 'T_max' not in s and 'total_iters' not in s, (path, s)
        # an explicit end is only allowed for a warm-up shorter than the
        # schedule; the decay's end comes from train_cfg (mmengine default)
        if s.get('end') is not None:
            assert s['type'] == 'LinearLR' and s['end'] < length * (
                1000 if by_epoch else 1), (path, s)
    assert cfg.default_hooks.resume_schedule.type == 'ResumeScheduleHook'
