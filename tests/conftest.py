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
import json
import os
import os.path as osp
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Dict, List, Optional

import pytest

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


class ToolServer:
    """Client of ``tests/tool_server.py``: runs ``python SCRIPT ARGS`` as a
    forked child of one pre-imported interpreter (a real process, the real
    script as ``__main__``; only the 4-8 s of imports are shared)."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable,
             osp.join(REPO, 'tests', 'tool_server.py')],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        self._buf = b''
        try:
            reply = self._reply(600)
        except RuntimeError:
            reply = None
        if reply != {'ready': True}:
            self.proc.kill()
            raise RuntimeError('tool server did not start (status '
                               f'{self.proc.wait()}, reply {reply})')

    def _reply(self, timeout: float) -> Optional[dict]:
        """The next JSON line of the server, None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError('the tool server exited '
                                   f'(status {self.proc.wait()})')
            self._buf += chunk
        line, self._buf = self._buf.split(b'\n', 1)
        return json.loads(line)

    def run(self, argv: List[str], cwd: str, env: Dict[str, str],
            timeout: float) -> subprocess.CompletedProcess:
        with tempfile.NamedTemporaryFile(
                prefix='lt_mm_tool_', suffix='.log', delete=False) as f:
            out = f.name
        try:
            self.proc.stdin.write(
                json.dumps(dict(argv=argv, cwd=cwd, env=env,
                                out=out)).encode() + b'\n')
            self.proc.stdin.flush()
            pid = self._reply(60)['pid']
            reply = self._reply(timeout)
            if reply is None:  # as subprocess.run: kill, then raise
                os.killpg(pid, signal.SIGKILL)
                self._reply(60)
                raise subprocess.TimeoutExpired(argv, timeout)
            with open(out, errors='replace') as f:
                stdout = f.read()
        finally:
            os.unlink(out)
        return subprocess.CompletedProcess([sys.executable, *argv],
                                           reply['exit'], stdout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# idle servers; a run takes one (or starts one: tests run tools from
# several threads at once) and puts it back when the run has ended
_IDLE: List[ToolServer] = []
_ALL: List[ToolServer] = []
_LOCK = threading.Lock()
# set when a server could not start: fresh interpreters from then on
_NO_SERVER: List[str] = []


def run_python(argv: List[str],
               env: Dict[str, str],
               timeout: float = 900) -> subprocess.CompletedProcess:
    """``python *argv`` in REPO with ``env``: stdout and stderr together in
    ``.stdout``. Through a tool server unless LT_MM_TEST_TOOL_SERVER=0 or
    the platform has no fork (or a server could not start: then with a
    warning)."""
    if os.environ.get('LT_MM_TEST_TOOL_SERVER',
                      '1') == '0' or not hasattr(os, 'fork') or _NO_SERVER:
        return subprocess.run([sys.executable, *argv],
                              cwd=REPO,
                              env=env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              text=True,
                              timeout=timeout)
    with _LOCK:
        server = _IDLE.pop() if _IDLE else None
    if server is None:
        try:
            server = ToolServer(env)
        except (OSError, RuntimeError) as exc:
            _NO_SERVER.append(str(exc))
            warnings.warn(f'tool server unavailable ({exc}); running each '
                          'tool in a fresh interpreter')
            return run_python(argv, env, timeout)
        with _LOCK:
            _ALL.append(server)
    try:
        proc = server.run(list(argv), REPO, env, timeout)
    except subprocess.TimeoutExpired:  # killed and reaped: still in step
        with _LOCK:
            _IDLE.append(server)
        raise
    except BaseException:
        server.close()  # out of step with its client: not reused
        raise
    with _LOCK:
        _IDLE.append(server)
    return proc


def close_tool_server() -> None:
    with _LOCK:
        servers = list(_ALL)
        _ALL.clear()
        _IDLE.clear()
    for server in servers:
        server.close()


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
            cmd = ['bash', osp.join(REPO, 'tools', tool), *args]
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                env=_env(self.data_root),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout)
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
