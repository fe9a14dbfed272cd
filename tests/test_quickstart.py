"""The quickstart's fast mode: same code path as the full run, tiny sizes."""
import json
import os
import os.path as osp
import subprocess
import sys

from tests.conftest import REPO


def _run(args, timeout=1500):
    env = dict(os.environ, MPLBACKEND='Agg', PYTHONPATH=REPO)
    env.setdefault('OMP_NUM_THREADS', '1')
    proc = subprocess.run([sys.executable, 'tools/quickstart.py', *args],
                          cwd=REPO,
                          env=env,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def test_quickstart_fast(tmp_path):
    work = str(tmp_path / 'qs')
    out = _run(['--fast', '--work-dir', work])
    # one table per task, every method a row
    for title in ('classification', 'semantic segmentation', 'detection'):
        assert title in out
    for method in ('DisAlign', 'TDE', 'tau-norm', 'LWS', 'cRT', 'NCM',
                   'CDT'):
        assert method in out
    assert 'quickstart finished in' in out
    with open(osp.join(work, 'results.json')) as f:
        res = json.load(f)
    assert set(res['tables']) == {'cls', 'seg', 'det'}
    assert len(res['tables']['cls']) == 8  # baseline + 7 methods
    assert len(res['tables']['seg']) == 5
    assert len(res['tables']['det']) == 4
    assert osp.isfile(osp.join(work, 'results.md'))
    for png in ('cls_per_class_accuracy.png', 'cls_weight_norms.png',
                'cls_sweeps.png'):
        path = osp.join(work, png)
        assert osp.getsize(path) > 1000, png
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    # re-running another method never overwrites the stage-1 checkpoint
    s1_dir = osp.join(work, 'cls', 'stage1')
    with open(osp.join(s1_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    before = (os.stat(ckpt).st_mtime_ns, os.stat(ckpt).st_size)
    out2 = _run(['--fast', '--work-dir', work, '--tasks', 'cls', '--methods',
                 'NCM'])
    assert 'reusing' in out2
    assert (os.stat(ckpt).st_mtime_ns, os.stat(ckpt).st_size) == before
