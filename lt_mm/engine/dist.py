"""Distributed training on machines without CUDA (gloo backend).

mmengine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device`` and
its default DDP wrapper passes ``device_ids=[LOCAL_RANK]``; both fail on a
CPU-only machine. :func:`setup_distributed` initialises the process group
with gloo *before* the Runner is built (the Runner then skips its own
``init_dist``) and points ``model_wrapper_cfg`` at
:class:`CPUDistributedDataParallel`, which wraps with ``device_ids=None``
and turns SyncBN (CUDA-only in torch) into plain BatchNorm. With CUDA the
stock behaviour is kept untouched.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for CPU processes (gloo).

    SyncBatchNorm layers are reverted to BatchNorm (torch implements SyncBN
    for CUDA only) and ``device_ids`` / ``output_device`` are forced to
    ``None`` as DDP requires for CPU modules.
    """

    def __init__(self, module: torch.nn.Module, **kwargs) -> None:
        kwargs['device_ids'] = None
        kwargs['output_device'] = None
        kwargs.setdefault('broadcast_buffers', False)
        super().__init__(module=revert_sync_batchnorm(module), **kwargs)


def cuda_usable() -> bool:
    """Whether this process can use CUDA."""
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def setup_distributed(cfg: Config,
                      launcher: str,
                      backend: Optional[str] = None) -> None:
    """Prepare ``cfg`` (and the process group) for ``launcher``.

    Only acts for ``launcher='pytorch'`` on a machine without CUDA: the
    gloo process group is created from torchrun's environment variables
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and the
    model wrapper is set to :class:`CPUDistributedDataParallel`.
    """
    cfg.launcher = launcher
    if launcher == 'none' or cuda_usable():
        return
    if launcher != 'pytorch':
        raise ValueError(
            f'--launcher {launcher} needs CUDA; on a CPU-only machine use '
            '--launcher pytorch (tools/dist_train.sh) or none.')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if key not in os.environ:
            raise RuntimeError(
                f'--launcher pytorch expects torchrun to set {key}; start '
                'the job with tools/dist_train.sh CONFIG N or torchrun.')
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend=backend or 'gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper['type'] = 'CPUDistributedDataParallel'
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    # no setdefault(...)[key] = ...: on a ConfigDict, setdefault stores a
    # converted copy of the default and the assignment would be lost
    env_cfg = dict(cfg.get('env_cfg', None) or {})
    dist_cfg = dict(env_cfg.get('dist_cfg', None) or {})
    dist_cfg['backend'] = backend or 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg


def _has_group() -> bool:
    """Whether this process is in a default process group."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def wait_for_all_ranks() -> None:
    """A barrier across the ranks of a distributed run (nothing in a
    single process)."""
    if _has_group() and torch_dist.get_world_size() > 1:
        torch_dist.barrier()


def finish_distributed() -> None:
    """End a distributed run that completed: wait for every rank, then
    destroy the default process group (nothing without one).

    tools/train.py and tools/test.py call it (through
    :func:`distributed_run`) once ``runner.train()`` / ``runner.test()`` has
    returned. mmengine never destroys the group; a
    process that exits with it alive leaves gloo's worker threads to the
    interpreter's finalisation, where a rank can abort ("terminate called
    without an active exception", SIGABRT) after a run that finished, and
    torchrun then reports the whole job as failed (pytorch/pytorch#190489;
    CI hit it once, in tests/test_tools.py's two-process stage-1 run). A
    rank that failed does not come here (:func:`abandon_distributed`): it
    must not wait in a barrier for ranks that may never arrive.
    """
    if not _has_group():
        return
    wait_for_all_ranks()
    torch_dist.destroy_process_group()


def abandon_distributed() -> None:
    """End the process group of a rank whose run failed, without waiting
    for the other ranks (nothing without a group).

    Only for gloo, whose destruction is local to the process: the failing
    rank then exits with its own status (torchrun reports exit code 1, not
    an abort at interpreter exit, see :func:`finish_distributed`), and a
    rank still waiting for it in a collective gets a connection error
    instead of waiting until torchrun stops it. Other backends are left as
    they are: destroying an NCCL group may wait for work in flight, which
    could not be checked on this project's CPU machines.
    """
    if not _has_group() or torch_dist.get_backend() != 'gloo':
        return
    torch_dist.destroy_process_group()


@contextmanager
def distributed_run() -> Iterator[None]:
    """Around ``runner.train()`` / ``runner.test()`` in the tools: on
    success :func:`finish_distributed` (every rank waits for the others,
    then the group is destroyed); on any exception, ``SystemExit``
    included, :func:`abandon_distributed` (no barrier: a rank that failed
    must not wait for ranks that may never arrive), then the exception
    goes on. Nothing happens in a run without a process group.
    """
    try:
        yield
    except BaseException:
        abandon_distributed()
        raise
    finish_distributed()
