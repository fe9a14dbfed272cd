"""A tool run through tests/tool_server.py behaves as ``python script.py``:
its own process, argv, environment, exit status and output; lt_mm is not
imported before the script imports it."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.tool_server import run_python

SCRIPT = '''
import os, sys
print('argv', sys.argv[1:])
print('main', __name__)
print('pid', os.getpid())
print('env', os.environ.get('LT_MM_PROBE'))
print('cwd', os.getcwd())
print('lt_mm loaded', any(m == 'lt_mm' or m.startswith('lt_mm.')
                          for m in sys.modules))
print('path0', sys.path[0])
sys.stderr.write('to stderr\\n')
sys.stdout.flush()
mode = sys.argv[1]
if mode == 'message':
    sys.exit('refused: bad value')
if mode == 'code':
    sys.exit(3)
if mode == 'raise':
    raise ValueError('boom')
'''


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO)
    env.update(extra)
    return env


@pytest.fixture
def script(tmp_path):
    path = tmp_path / 'probe.py'
    path.write_text(SCRIPT)
    return str(path)


def test_runs_as_main_with_its_argv_env_and_pid(script, tmp_path):
    proc = run_python([script, 'ok', '--x=1'], _env(LT_MM_PROBE='yes'))
    out = proc.stdout
    assert proc.returncode == 0, out
    assert "argv ['ok', '--x=1']" in out
    assert 'main __main__' in out
    assert 'env yes' in out
    assert f'cwd {REPO}' in out
    assert f'path0 {tmp_path}' in out
    assert 'to stderr' in out
    assert 'lt_mm loaded False' in out
    pid = int(out.split('pid ')[1].split()[0])
    assert pid != os.getpid()
    # the next run is another process and sees its own environment
    proc2 = run_python([script, 'ok'], _env())
    assert 'env None' in proc2.stdout
    assert int(proc2.stdout.split('pid ')[1].split()[0]) != pid


@pytest.mark.parametrize('mode,code,text', [
    ('message', 1, 'refused: bad value'),
    ('code', 3, None),
    ('raise', 1, 'ValueError: boom'),
])
def test_exit_status_and_message_as_the_interpreter(script, mode, code, text):
    proc = run_python([script, mode], _env())
    fresh = subprocess.run([sys.executable, script, mode],
                           cwd=REPO,
                           env=_env(),
                           stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT,
                           text=True)
    assert proc.returncode == fresh.returncode == code
    if text is not None:
        assert text in proc.stdout and text in fresh.stdout


def test_timeout_kills_the_run(tmp_path):
    path = tmp_path / 'sleep.py'
    path.write_text('import time\ntime.sleep(60)\n')
    with pytest.raises(subprocess.TimeoutExpired):
        run_python([str(path)], _env(), timeout=1)
    # the next run is served; a missing script: status 2, as python says
    missing = str(path).replace('sleep', 'none')
    proc = run_python([missing], _env())
    assert proc.returncode == 2 and "can't open file" in proc.stdout


def test_falls_back_to_a_fresh_interpreter(script, monkeypatch):
    import tests.tool_server as server

    def no_server(self, env):
        raise RuntimeError('tool server did not start (test)')

    monkeypatch.delenv('LT_MM_TEST_TOOL_SERVER', raising=False)
    monkeypatch.setattr(server, '_IDLE', [])
    monkeypatch.setattr(server, '_NO_SERVER', [])
    monkeypatch.setattr(server.ToolServer, '__init__', no_server)
    with pytest.warns(UserWarning, match='fresh interpreter'):
        proc = run_python([script, 'code'], _env(LT_MM_PROBE='fresh'))
    assert proc.returncode == 3 and 'env fresh' in proc.stdout
    assert server._NO_SERVER
