"""``finish_distributed``: the end of a distributed run that completed.

tools/train.py and tools/test.py call it after ``runner.train()`` /
``runner.test()``; without it a gloo rank could abort at interpreter exit
after a finished run (SIGABRT, "terminate called without an active
exception") and torchrun failed the job.
"""
import os
import os.path as osp
import time

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from lt_mm.engine.dist import finish_distributed
from tests.conftest import REPO, free_port


def test_without_a_process_group_nothing_happens():
    assert not dist.is_initialized()
    finish_distributed()
    assert not dist.is_initialized()


def _worker(rank, port, out_dir):
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    arrived = osp.join(out_dir, 'rank1_arrived')
    if rank == 1:
        # rank 1 reaches the end of its run late
        time.sleep(1.0)
        open(arrived, 'w').close()
    finish_distributed()
    # the barrier: rank 0 leaves only once rank 1 has arrived
    seen = osp.exists(arrived)
    finish_distributed()  # a second call: no group, nothing to do
    with open(osp.join(out_dir, f'rank{rank}'), 'w') as f:
        f.write(f'{seen} {dist.is_initialized()}')


def test_two_gloo_processes_wait_for_each_other_then_destroy(tmp_path):
    if not dist.is_available():
        pytest.skip('torch.distributed is not available')
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        with open(tmp_path / f'rank{rank}') as f:
            assert f.read() == 'True False', f'rank {rank}'


@pytest.mark.parametrize('tool, call', [('train.py', 'runner.train()'),
                                        ('test.py', 'runner.test()')])
def test_the_tools_finish_after_the_run(tool, call):
    """Both tools call it once the run has returned (and only then: a
    rank that failed must not wait in a barrier for the others)."""
    with open(os.path.join(REPO, 'tools', tool)) as f:
        src = f.read()
    assert src.count('finish_distributed()') == 1
    run_at = src.index(call)
    finish_at = src.index('finish_distributed()')
    assert finish_at > run_at
    between = src[run_at:finish_at]
    assert 'finally' not in between
