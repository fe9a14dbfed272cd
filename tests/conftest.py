"""Shared fixtures: tiny long-tailed data in the real on-disk formats, a
runner for ``tools/*.py`` (each run its own process running the script as
``__main__``, as a user runs it; forked from one pre-imported interpreter,
``tests/tool_server.py``) and one stage-1 checkpoint per toolbox that the
method tests start from.

Data are written once per test session; the stage-1 models are trained once
per session (a few iterations of tiny models) and shared by every test that
needs a checkpoint.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import shutil
import socket
import subprocess
from typing import Dict, List

import pytest

from tests.tool_server import close_tool_server, run_fresh, run_python

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(REPO, 'configs', 'quickstart')


def _env(data_root: str) -> Dict[str, str]:
    env = dict(os.environ)
    env['LT_MM_DATA_ROOT'] = data_root
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    # one intra-op thread: robust under load (2 threads can be 5x slower
    # when other processes compete for the 2 cores)
    env.setdefault('OMP_NUM_THREADS', '1')
    env['MPLBACKEND'] = 'Agg'
    return env


class ToolRunner:
    """Run ``tools/<name>`` in its own process with the tiny data root."""

    def __init__(self, data_root: str) -> None:
        self.data_root = data_root

    def __call__(self,
                 tool: str,
                 *args: str,
                 check: bool = True,
                 timeout: int = 900) -> subprocess.CompletedProcess:
        if tool.endswith('.sh'):
            proc = run_fresh(
                ['bash', osp.join(REPO, 'tools', tool), *args],
                _env(self.data_root), timeout)
        else:
            cmd = [osp.join(REPO, 'tools', tool), *args]
            proc = run_python(cmd, _env(self.data_root), timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f'{" ".join(proc.args)} exited with {proc.returncode}:\n' +
                proc.stdout[-6000:])
        return proc


def free_port() -> int:
    """A TCP port the OS reports free now (for gloo / torchrun)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_dist(script: str,
             args: List[str],
             data_root: str,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """``tools/<script>`` (``dist_train.sh`` / ``dist_test.sh``) as a fresh
    process: gloo on a free port, the tiny data, one thread per process
    (stdout and stderr together; the caller checks the return code)."""
    env = dict(
        os.environ,
        PORT=str(free_port()),
        LT_MM_DATA_ROOT=data_root,
        PYTHONPATH=REPO)
    env.setdefault('OMP_NUM_THREADS', '1')
    return run_fresh(['bash', osp.join(REPO, 'tools', script), *args], env,
                     timeout)


def copy_work_dir(folder: str, dst) -> str:
    """A copy of a work dir whose last_checkpoint names the copy."""
    shutil.copytree(folder, str(dst))
    marker = osp.join(str(dst), 'last_checkpoint')
    with open(marker) as f:
        name = osp.basename(f.read().strip())
    with open(marker, 'w') as f:
        f.write(osp.join(str(dst), name))
    return str(dst)


def load_script(*parts: str):
    """The script ``REPO/<parts>`` (a tool or a benchmark) as a module; its
    ``if __name__ == '__main__'`` block does not run."""
    import importlib.util
    name = 'lt_mm_script_' + '_'.join(parts).replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, *parts))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def last_checkpoint(work_dir: str) -> str:
    """Path of the checkpoint mmengine's ``last_checkpoint`` file names."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            return f.read().strip()
    ckpts = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
    assert ckpts, f'no checkpoint in {work_dir}'
    return ckpts[-1]


# ----------------------------------------------------------------- data
@pytest.fixture(scope='session')
def data_root(tmp_path_factory) -> str:
    """Tiny cls / seg / det data sets under one root (LT_MM_DATA_ROOT)."""
    from lt_mm.quickstart.data import build_task_data
    root = str(tmp_path_factory.mktemp('lt_mm_data'))
    # the same tiny data as `tools/quickstart.py --fast` (seed 0)
    for task in ('cls', 'seg', 'det'):
        build_task_data(task, osp.join(root, task), size='fast', seed=0)
    return root


@pytest.fixture(scope='session')
def run_tool(data_root) -> ToolRunner:
    return ToolRunner(data_root)


def pytest_sessionfinish(session, exitstatus) -> None:
    close_tool_server()


# ------------------------------------------------------ stage-1 models
# Tiny schedules: enough iterations to exercise the loops, not to converge.
TINY_OPTIONS: Dict[str, List[str]] = {
    'cls': [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=3',
        'default_hooks.logger.interval=1'
    ],
    'seg': [
        'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.max_keep_ckpts=3',
        'default_hooks.logger.interval=1', 'param_scheduler.0.end=4'
    ],
    'det': [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=3',
        'default_hooks.logger.interval=1', 'param_scheduler.0.end=4'
    ],
}
STAGE1_CONFIGS = {
    'cls': osp.join(QUICKSTART, 'digits_cls_resnet_stage1.py'),
    'seg': osp.join(QUICKSTART, 'digits_seg_fcn_stage1.py'),
    'det': osp.join(QUICKSTART, 'digits_det_mask_rcnn_stage1.py'),
}


def _train_stage1(task: str, run_tool: ToolRunner, tmp_path_factory) -> dict:
    work_dir = str(tmp_path_factory.mktemp(f'{task}_stage1'))
    proc = run_tool('train.py', STAGE1_CONFIGS[task], '--work-dir', work_dir,
                    '--cfg-options', *TINY_OPTIONS[task])
    return dict(
        config=STAGE1_CONFIGS[task],
        work_dir=work_dir,
        checkpoint=last_checkpoint(work_dir),
        options=TINY_OPTIONS[task],
        log=proc.stdout)


@pytest.fixture(scope='session')
def cls_stage1(run_tool, tmp_path_factory) -> dict:
    """A stage-1 mmpretrain checkpoint (tiny ResNet, 2 epochs)."""
    return _train_stage1('cls', run_tool, tmp_path_factory)


@pytest.fixture(scope='session')
def seg_stage1(run_tool, tmp_path_factory) -> dict:
    """A stage-1 mmseg checkpoint (tiny FCN, 4 iterations)."""
    return _train_stage1('seg', run_tool, tmp_path_factory)


@pytest.fixture(scope='session')
def det_stage1(run_tool, tmp_path_factory) -> dict:
    """A stage-1 mmdet checkpoint (tiny Mask R-CNN, 2 epochs)."""
    return _train_stage1('det', run_tool, tmp_path_factory)
