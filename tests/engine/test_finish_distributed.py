"""The end of a distributed run: ``finish_distributed`` after a run that
completed, ``abandon_distributed`` after one that failed, and
``distributed_run``, the context manager the tools wrap around
``runner.train()`` / ``runner.test()``.

Without a destroyed group a gloo rank could abort at interpreter exit
after a finished run (SIGABRT, "terminate called without an active
exception") and torchrun failed the job.
"""
import os
import os.path as osp
import time

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from lt_mm.engine.dist import (abandon_distributed, distributed_run,
                               finish_distributed)
from tests.conftest import REPO, free_port


def test_without_a_process_group_nothing_happens():
    assert not dist.is_initialized()
    finish_distributed()
    abandon_distributed()
    with distributed_run():
        pass
    assert not dist.is_initialized()


def test_distributed_run_lets_the_exception_through():
    with pytest.raises(SystemExit, match='lt_mm: refused'):
        with distributed_run():
            raise SystemExit('lt_mm: refused')
    with pytest.raises(KeyError, match='boom'):
        with distributed_run():
            raise KeyError('boom')


def _join_late_rank1(rank, port, out_dir, late_by: float) -> str:
    """Join a 2-process gloo group; rank 1 then reaches the end of its run
    ``late_by`` seconds late and marks it in a file (its path returned)."""
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    arrived = osp.join(out_dir, 'rank1_arrived')
    if rank == 1:
        time.sleep(late_by)
        open(arrived, 'w').close()
    return arrived


def _worker(rank, port, out_dir):
    arrived = _join_late_rank1(rank, port, out_dir, 1.0)
    finish_distributed()
    # the barrier: rank 0 leaves only once rank 1 has arrived
    seen = osp.exists(arrived)
    finish_distributed()  # a second call: no group, nothing to do
    with open(osp.join(out_dir, f'rank{rank}'), 'w') as f:
        f.write(f'{seen} {dist.is_initialized()}')


def _spawn(worker, tmp_path, nprocs: int = 2) -> None:
    """``worker(rank, port, out_dir)`` in ``nprocs`` fresh processes."""
    if not dist.is_available():
        pytest.skip('torch.distributed is not available')
    mp.spawn(
        worker, args=(free_port(), str(tmp_path)), nprocs=nprocs, join=True)


def test_two_gloo_processes_wait_for_each_other_then_destroy(tmp_path):
    _spawn(_worker, tmp_path)
    for rank in range(2):
        with open(tmp_path / f'rank{rank}') as f:
            assert f.read() == 'True False', f'rank {rank}'


def _failing_worker(rank, port, out_dir):
    """Rank 0 fails at once inside ``distributed_run``; rank 1 reaches its
    end 2 s later."""
    arrived = _join_late_rank1(rank, port, out_dir, 2.0)
    if rank == 1:
        dist.destroy_process_group()
        return
    try:
        with distributed_run():
            raise SystemExit('lt_mm: refused')
    except SystemExit as exc:
        # no barrier: rank 0 left before rank 1 arrived
        with open(osp.join(out_dir, 'rank0'), 'w') as f:
            f.write(f'{exc} {osp.exists(arrived)} {dist.is_initialized()}')


def test_a_failed_rank_leaves_without_waiting_and_destroys_its_group(tmp_path):
    _spawn(_failing_worker, tmp_path)
    with open(tmp_path / 'rank0') as f:
        assert f.read() == 'lt_mm: refused False False'


def _other_backend_worker(rank, port, out_dir):
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)
    # as an NCCL group would answer: left alone (not checked on CPU)
    dist.get_backend = lambda *args, **kwargs: 'nccl'
    abandon_distributed()
    kept = dist.is_initialized()
    dist.destroy_process_group()
    with open(osp.join(out_dir, 'kept'), 'w') as f:
        f.write(str(kept))


def test_abandon_leaves_a_non_gloo_group_alone(tmp_path):
    _spawn(_other_backend_worker, tmp_path, nprocs=1)
    assert (tmp_path / 'kept').read_text() == 'True'


@pytest.mark.parametrize('tool, call', [('train.py', 'runner.train()'),
                                        ('test.py', 'runner.test()')])
def test_the_tools_run_inside_distributed_run(tool, call):
    """Both tools run the Runner inside ``with distributed_run():`` (the
    barrier only on success) and call neither end by hand."""
    with open(os.path.join(REPO, 'tools', tool)) as f:
        src = f.read()
    assert src.count('with distributed_run():') == 1
    assert 'finish_distributed' not in src
    assert 'abandon_distributed' not in src
    with_at = src.index('with distributed_run():')
    run_at = src.index(call)
    assert with_at < run_at
    # the run is in the block: indented deeper than the with statement
    indent = len(src[:with_at].rsplit('\n', 1)[1])
    line = src[:run_at].rsplit('\n', 1)[1]
    assert len(line) > indent and not line.strip()
    between = src[with_at:run_at].splitlines()[1:]
    assert all(
        ln.startswith(' ' * (indent + 4)) or not ln.strip() for ln in between)
