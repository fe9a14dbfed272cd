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

``LT_MM_TEST_TOOL_SERVER=0`` makes the suite start a fresh interpreter per
run instead (``tests/conftest.py``).
"""
import json
import os
import sys

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


if __name__ == '__main__':
    serve()
