"""``--resume`` is exact and survives a truncated last checkpoint.

Defect 8 (issue #10): a truncated last checkpoint (a run killed while
writing it) stopped ``--resume``; it now falls back to the newest complete
checkpoint with a warning, or refuses naming the files.

Defect 10: a segmentation stage 2 resumed at iteration 4 drifted from the
straight run (2e-6 at iteration 8, other per-iteration accuracy right after
the resume). Cause: mmengine 0.10.7 re-seeds a resumed run and replays the
consumed batches (so the data order is the same) but does not restore the
torch generator that the decode heads' dropout draws from.
``ResumeRNGHook`` (registered by ``build_runner``) saves the random states
in the checkpoint and restores them after the replay.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.registry import DefaultScope

from lt_mm.engine.checkpoint import CheckpointReadError, safe_torch_load
from lt_mm.engine.hooks import RNG_META_KEY, RNG_RANKS_META_KEY
from lt_mm.engine.runner_utils import apply_resume, build_runner, load_config
from tests.conftest import (QUICKSTART, STAGE1_CONFIGS, copy_work_dir,
                            free_port, run_dist)
from tests.reliability.conftest import folder_hash


def _truncate(path):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])


def _log(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


def test_resume_falls_back_to_last_complete_checkpoint(cls_stage1, data_root,
                                                       tmp_path, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    before = folder_hash(cls_stage1['work_dir'])
    work = copy_work_dir(cls_stage1['work_dir'], tmp_path / 'w')
    ep1, ep2 = osp.join(work, 'epoch_1.pth'), osp.join(work, 'epoch_2.pth')
    _truncate(ep2)  # last_checkpoint names it
    opts = {
        k: int(v)
        for k, v in (o.split('=') for o in cls_stage1['options'])
    }
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        # --resume PATH of the truncated file: refused, naming the other
        cfg = load_config(STAGE1_CONFIGS['cls'], opts, work)
        with pytest.raises(CheckpointReadError) as err:
            apply_resume(cfg, ep2)
        assert ep2 in str(err.value) and ep1 in str(err.value)
        # --resume (auto): resumes from epoch_1 with a warning, trains on
        cfg = load_config(STAGE1_CONFIGS['cls'], opts, work)
        cfg.experiment_name = 'lt_mm_resume_fallback'
        apply_resume(cfg, 'auto')
        assert cfg.resume is True and cfg.load_from == ep1
        runner = build_runner(cfg)
        runner.train()
        log = _log(runner)
        assert 'resumed epoch: 1' in log
        assert runner.epoch == 2
        assert safe_torch_load(ep2)['meta']['epoch'] == 2  # rewritten
    # nothing complete left: a clear refusal naming the file
    _truncate(ep1)
    _truncate(ep2)
    cfg = load_config(STAGE1_CONFIGS['cls'], opts, work)
    with pytest.raises(CheckpointReadError) as err:
        apply_resume(cfg, 'auto')
    assert ep2 in str(err.value) and 'no other complete checkpoint' in str(
        err.value)
    assert folder_hash(cls_stage1['work_dir']) == before


SEG_ITERS = {
    'train_cfg.max_iters': 8,
    'train_cfg.val_interval': 8,
    'default_hooks.checkpoint.interval': 4,
    'default_hooks.checkpoint.max_keep_ckpts': 3,
    'default_hooks.logger.interval': 1,
    'param_scheduler.0.end': 8,
}


def _scalars(runner):
    path = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {r['step']: r for r in rows if 'loss' in r}


def test_seg_stage2_resume_equals_straight_run(seg_stage1, data_root, tmp_path,
                                               monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    config = osp.join(QUICKSTART, 'digits_seg_disalign.py')
    before = folder_hash(seg_stage1['work_dir'])
    with DefaultScope.overwrite_default_scope('mmseg'):
        straight = str(tmp_path / 'straight')
        cfg = load_config(config, dict(SEG_ITERS), straight)
        cfg.load_from = seg_stage1['checkpoint']
        cfg.experiment_name = 'lt_mm_seg_straight'
        cfg.visualizer.name = 'lt_mm_seg_straight'  # own scalars.json
        apply_resume(cfg, None)
        r1 = build_runner(cfg)
        r1.train()
        # the interrupted run: its work dir holds only iter_4.pth
        resumed = tmp_path / 'resumed'
        resumed.mkdir()
        shutil.copy(osp.join(straight, 'iter_4.pth'), resumed)
        (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_4.pth'))
        cfg = load_config(config, dict(SEG_ITERS), str(resumed))
        cfg.load_from = seg_stage1['checkpoint']
        cfg.experiment_name = 'lt_mm_seg_resumed'
        cfg.visualizer.name = 'lt_mm_seg_resumed'
        apply_resume(cfg, 'auto')
        assert cfg.resume and cfg.load_from.endswith('iter_4.pth')
        r2 = build_runner(cfg)
        r2.train()
    a, b = _scalars(r1), _scalars(r2)
    assert sorted(b) == [5, 6, 7, 8]
    for step in (5, 6, 7, 8):  # loss and accuracy of every iteration
        for key in ('loss', 'decode.acc_seg'):
            assert a[step][key] == b[step][key], (step, key, a[step], b[step])
    s1 = safe_torch_load(osp.join(straight, 'iter_8.pth'))['state_dict']
    s2 = safe_torch_load(str(resumed / 'iter_8.pth'))['state_dict']
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert folder_hash(seg_stage1['work_dir']) == before


def _dist_train(config, work_dir, data_root, *args):
    proc = run_dist('dist_train.sh',
                    [config, '2', '--work-dir', work_dir, *args], data_root)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def test_seg_stage2_distributed_resume_equals_straight_run(
        seg_stage1, data_root, tmp_path):
    """``tools/dist_train.sh`` with 2 gloo processes: a stage 2 resumed at
    iteration 4 (``--resume``) ends with the straight run's weights."""
    config = osp.join(QUICKSTART, 'digits_seg_disalign.py')
    opts = ['--cfg-options', f'load_from={seg_stage1["checkpoint"]}'
            ] + [f'{k}={v}' for k, v in SEG_ITERS.items()]
    straight = str(tmp_path / 'straight')
    _dist_train(config, straight, data_root, *opts)
    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    shutil.copy(osp.join(straight, 'iter_4.pth'), resumed)
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_4.pth'))
    proc = _dist_train(config, str(resumed), data_root, '--resume', *opts)
    assert 'resumed' in proc.stdout.lower()
    s1 = safe_torch_load(osp.join(straight, 'iter_8.pth'))['state_dict']
    s2 = safe_torch_load(str(resumed / 'iter_8.pth'))['state_dict']
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k


# ------------------------------------------- the mechanism, on a toy model
class _ToyData(torch.utils.data.Dataset):
    """12 samples; a numpy-random sign flip (like RandomFlip)."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        import numpy as np
        x = torch.arange(4.) + i
        return dict(
            inputs=-x if np.random.rand() < 0.5 else x,
            labels=torch.tensor(i % 3))


def _toy_model():
    from mmengine.model import BaseModel

    class ToyModel(BaseModel):
        """Linear -> dropout -> linear (dropout draws from torch's RNG)."""

        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(4, 8)
            self.drop = torch.nn.Dropout(0.5)
            self.fc2 = torch.nn.Linear(8, 3)

        def forward(self, inputs, labels, mode='tensor'):
            z = self.fc2(self.drop(self.fc1(inputs)))
            if mode == 'loss':
                return dict(loss=torch.nn.functional.cross_entropy(z, labels))
            return z

    return ToyModel()


def _toy_runner(work_dir,
                name,
                resume_from=None,
                launcher='none',
                by_epoch=False):
    """6 iterations, a checkpoint at 3 (``iter_3.pth``; ``by_epoch``: 2
    epochs of 3 / world size iterations, ``epoch_1.pth``).
    ``launcher='pytorch'``: inside an initialised gloo process group, each
    rank seeded apart (``diff_rank_seed``) so their states differ."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config(
        dict(
            work_dir=str(work_dir),
            experiment_name=name,
            randomness=dict(seed=0, diff_rank_seed=launcher != 'none'),
            model_wrapper_cfg=dict(type='CPUDistributedDataParallel'),
            default_scope='mmengine',
            train_cfg=dict(by_epoch=True, max_epochs=2) if by_epoch else dict(
                by_epoch=False, max_iters=6),
            log_processor=dict(by_epoch=by_epoch),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook',
                    by_epoch=by_epoch,
                    interval=1 if by_epoch else 3))))
    runner = Runner(
        model=_toy_model(),
        work_dir=cfg.work_dir,
        train_dataloader=dict(
            dataset=_ToyData(),
            sampler=dict(
                type='DefaultSampler' if by_epoch else 'InfiniteSampler',
                shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        train_cfg=cfg.train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        default_hooks=cfg.default_hooks,
        log_processor=cfg.log_processor,
        randomness=cfg.randomness,
        resume=resume_from is not None,
        load_from=resume_from,
        launcher=launcher,
        experiment_name=name,
        cfg=cfg)
    runner.register_hook(dict(type='ResumeRNGHook'))
    return runner


def test_resume_rng_hook_makes_iteration_resume_exact(tmp_path):
    """Dropout + numpy augmentation, iteration-based loop: resumed at 3
    equals the straight run at 6 (without the restored random states the
    dropout masks after the resume differ)."""
    straight = _toy_runner(tmp_path / 'a', 'lt_mm_toy_straight')
    straight.train()
    work = tmp_path / 'b'
    work.mkdir()
    shutil.copy(tmp_path / 'a' / 'iter_3.pth', work)
    resumed = _toy_runner(work, 'lt_mm_toy_resumed', str(work / 'iter_3.pth'))
    resumed.train()
    a = safe_torch_load(str(tmp_path / 'a' / 'iter_6.pth'))['state_dict']
    b = safe_torch_load(str(work / 'iter_6.pth'))['state_dict']
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _ddp_worker(rank, port, root, by_epoch):
    os.environ['LOCAL_RANK'] = str(rank)  # read by mmengine's wrap_model
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        _toy_runner(
            osp.join(root, 'a'),
            'lt_mm_ddp_straight',
            launcher='pytorch',
            by_epoch=by_epoch).train()
        _toy_runner(
            osp.join(root, 'b'),
            'lt_mm_ddp_resumed',
            osp.join(root, 'a', _FIRST[by_epoch]),
            launcher='pytorch',
            by_epoch=by_epoch).train()
    finally:
        dist.destroy_process_group()


_FIRST = {False: 'iter_3.pth', True: 'epoch_1.pth'}
_LAST = {False: 'iter_6.pth', True: 'epoch_2.pth'}


@pytest.mark.parametrize('by_epoch', [False, True])
def test_resume_rng_hook_restores_each_rank_in_a_distributed_run(
        tmp_path, by_epoch):
    """Two gloo processes, each seeded apart: every rank's random states
    travel in the checkpoint and each rank gets its own back, so the
    resumed run's last checkpoint equals the straight one's (with rank 0's
    states on both ranks, or none restored, the dropout masks differ).
    Resumed with another number of processes, nothing is restored and a
    warning says so."""
    mp.spawn(
        _ddp_worker, args=(free_port(), str(tmp_path), by_epoch), nprocs=2)
    ckpt = safe_torch_load(str(tmp_path / 'a' / _FIRST[by_epoch]))
    ranks = ckpt['meta'][RNG_RANKS_META_KEY]
    assert len(ranks) == 2
    assert not torch.equal(ranks[0]['torch'], ranks[1]['torch'])
    assert torch.equal(ckpt['meta'][RNG_META_KEY]['torch'], ranks[0]['torch'])
    a = safe_torch_load(str(tmp_path / 'a' / _LAST[by_epoch]))['state_dict']
    b = safe_torch_load(str(tmp_path / 'b' / _LAST[by_epoch]))['state_dict']
    for k in a:
        assert torch.equal(a[k], b[k]), k
    one = _toy_runner(
        tmp_path / 'c',
        'lt_mm_one_process',
        str(tmp_path / 'a' / _FIRST[by_epoch]),
        by_epoch=by_epoch)
    one.train()
    assert ('holds the random states of 2 process(es) and this run has 1'
            in _log(one))


def test_rank_states_are_written_only_while_current():
    """Rank 0 writes the gathered per-rank states only while its own state
    is still the gathered one (a validation between the gather and a
    save-best checkpoint draws a DataLoader seed: restoring the gathered
    states would not be where the run was)."""
    from lt_mm.engine.hooks import ResumeRNGHook, get_rng_state
    hook = ResumeRNGHook()
    hook.before_save_checkpoint(None, ckpt := {})
    assert RNG_RANKS_META_KEY not in ckpt['meta']  # one process: none
    hook._ranks = [get_rng_state(), get_rng_state()]
    hook.before_save_checkpoint(None, ckpt := {})
    assert ckpt['meta'][RNG_RANKS_META_KEY] is hook._ranks
    torch.rand(1)  # rank 0 moves on
    hook.before_save_checkpoint(None, ckpt := {})
    assert RNG_RANKS_META_KEY not in ckpt['meta']
    assert RNG_META_KEY in ckpt['meta']
