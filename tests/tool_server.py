"""Run ``tools/*.py`` in forked children of one pre-imported Python process.

A tool run in the test suite is a real process running the real script as
``__main__`` (its own ``sys.argv``, environment, working directory, exit
status and output), as ``python tools/<name>.py ...`` is. What a fresh
interpreter spends on importing torch, mmcv and the three toolboxes
(4-8 s a run on the 2-core CI machine, ~40 runs a session) is paid once:
this server imports them, then forks one child per run, and the child runs
the script with ``runpy``. Nothing is mocked; only the imports are shared
(as they are by ``fork``-started DataLoader workers).

Protocol (one run at a time, JSON lines): the client writes
``{"argv": [...], "cwd": ..., "env": {...}, "out": PATH}``; the server
answers ``{"pid": N}`` when the child starts and ``{"exit": CODE}`` when it
ends. The child's stdout and stderr go to ``out``.

The client side (:func:`run_python`, used by ``tests/conftest.py``) keeps
one server per concurrent caller. ``LT_MM_TEST_TOOL_SERVER=0`` makes it
start a fresh interpreter per run instead.
"""
import json
import os
import os.path as osp
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# the third-party imports of a tool run; importing them here is what is
# shared. lt_mm itself is not preloaded: each run imports it as a fresh
# interpreter does (a config that forgets `custom_imports` still fails)
PRELOAD = ('torch', 'mmengine.runner', 'mmcv.ops', 'mmpretrain.models',
           'mmpretrain.datasets', 'mmpretrain.evaluation', 'mmseg.models',
           'mmseg.datasets', 'mmseg.evaluation', 'mmdet.models',
           'mmdet.datasets', 'mmdet.evaluation', 'matplotlib')


def _exit_code(code) -> int:
    """``SystemExit.code`` as the interpreter turns it into a status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit('message'): printed, status 1
    return 1


def _run_child(req: dict) -> None:
    """In the forked child: become ``python argv[0] argv[1:]``; never
    returns."""
    import atexit
    import runpy
    import traceback
    code = 1
    try:
        os.setsid()  # its own process group: a timeout kills it whole
        fd = os.open(req['out'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        os.chdir(req['cwd'])
        os.environ.clear()
        os.environ.update(req['env'])
        threads = req['env'].get('OMP_NUM_THREADS')
        if threads:
            import torch
            torch.set_num_threads(int(threads))
        script = req['argv'][0]
        if not os.path.isfile(script):  # as the interpreter: status 2
            print(
                f"{sys.executable}: can't open file {script!r}: "
                '[Errno 2] No such file or directory',
                file=sys.stderr)
            code = 2
            return
        sys.argv = list(req['argv'])
        # as the interpreter does for `python script.py`: the script's
        # folder first, then PYTHONPATH
        extra = [
            p for p in req['env'].get('PYTHONPATH', '').split(os.pathsep) if p
        ]
        sys.path[:] = [os.path.dirname(os.path.abspath(script))
                       ] + extra + [p for p in sys.path[1:] if p not in extra]
        try:
            runpy.run_path(script, run_name='__main__')
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    except BaseException:
        try:
            import traceback
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    requests = sys.stdin
    replies = sys.stdout
    replies.write(json.dumps({'ready': True}) + '\n')
    replies.flush()
    for line in requests:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(req)
        replies.write(json.dumps({'pid': pid}) + '\n')
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(
            json.dumps({'exit': os.waitstatus_to_exitcode(status)}) + '\n')
        replies.flush()


# --------------------------------------------------------------- client
def run_fresh(cmd: List[str], env: Dict[str, str],
              timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` as a new process in REPO (stdout and stderr together)."""
    return subprocess.run(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


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
        return run_fresh([sys.executable, *argv], env, timeout)
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


if __name__ == '__main__':
    serve()
