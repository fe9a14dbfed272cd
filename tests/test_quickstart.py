"""The quickstart's fast mode: same code path as the full run, tiny sizes."""
import json
import os
import os.path as osp

import pytest

from tests.conftest import REPO, load_script
from tests.tool_server import run_python


def _run(args, timeout=1500):
    env = dict(os.environ, MPLBACKEND='Agg', PYTHONPATH=REPO)
    env.setdefault('OMP_NUM_THREADS', '1')
    proc = run_python([osp.join(REPO, 'tools', 'quickstart.py'), *args],
                      env,
                      timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def _metric_rows(work, task):
    """The metric columns of every row of ``task`` (timings dropped)."""
    with open(osp.join(work, 'results.json')) as f:
        rows = json.load(f)['tables'][task]
    return [{k: v for k, v in r.items() if k != 'seconds'} for r in rows]


def test_quickstart_fast(tmp_path):
    work = str(tmp_path / 'qs')
    # the tasks side by side in two worker processes (the default on 2
    # cores; explicit here so that a 1-core machine runs the same path)
    out = _run(['--fast', '--work-dir', work, '--jobs', '2'])
    assert 'side by side in 2 worker processes' in out
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

    parallel = {task: _metric_rows(work, task)[:2] for task in ('seg', 'det')}

    # re-running another method never overwrites the stage-1 checkpoint
    s1_dir = osp.join(work, 'cls', 'stage1')
    with open(osp.join(s1_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    before = (os.stat(ckpt).st_mtime_ns, os.stat(ckpt).st_size)
    out2 = _run(['--fast', '--work-dir', work, '--tasks', 'cls', '--methods',
                 'NCM'])
    assert 'reusing' in out2
    assert (os.stat(ckpt).st_mtime_ns, os.stat(ckpt).st_size) == before

    # one process, one task after the other: the same numbers
    seq = str(tmp_path / 'seq')
    out3 = _run([
        '--fast', '--work-dir', seq, '--jobs', '1', '--tasks', 'seg', 'det',
        '--methods', 'DisAlign'
    ])
    assert 'one after another in this process' in out3
    for task in ('seg', 'det'):
        rows = _metric_rows(seq, task)
        assert [r['method'] for r in rows] == ['baseline (joint)', 'DisAlign']
        assert rows == parallel[task], task


def test_aggregate_mean_std_by_hand():
    from lt_mm.quickstart.report import aggregate_markdown, aggregate_tables
    row = dict(method='baseline (joint)', kind='stage 1')
    per_seed = {
        0: {'seg': [dict(row, mIoU=10.0, head=60.0, body=0.0, tail=None,
                         seconds=4.0)]},
        1: {'seg': [dict(row, mIoU=12.0, head=64.0, body=3.0, tail=None,
                         seconds=6.0)]},
        2: {'seg': [dict(row, mIoU=17.0, head=62.0, body=6.0, tail=None,
                         seconds=5.0)]},
    }
    agg = aggregate_tables(per_seed)['seg'][0]
    # mIoU: mean (10 + 12 + 17) / 3 = 13; sample variance
    # ((-3)^2 + (-1)^2 + 4^2) / (3 - 1) = 13, std sqrt(13) = 3.6056
    assert agg['mIoU']['mean'] == 13.0
    assert abs(agg['mIoU']['std'] - 13**0.5) < 1e-12
    # head: mean 62, ((-2)^2 + 2^2 + 0) / 2 = 4 -> std 2
    assert agg['head']['mean'] == 62.0 and agg['head']['std'] == 2.0
    # body: mean 3, (9 + 0 + 9) / 2 = 9 -> std 3
    assert agg['body']['mean'] == 3.0 and agg['body']['std'] == 3.0
    assert agg['tail'] is None and agg['n'] == 3 and agg['seconds'] == 5.0
    md = aggregate_markdown('seg', [agg], 3)
    assert '| baseline (joint) | stage 1 | 13.0 ± 3.6 | 62.0 ± 2.0 | ' \
        '3.0 ± 3.0 | n/a | 5 |' in md


def test_seed_list():
    tool = _quickstart_tool()
    assert tool.seed_list([3]) == [0, 1, 2]
    assert tool.seed_list([0, 1, 2]) == [0, 1, 2]
    assert tool.seed_list([4, 7]) == [4, 7]
    with pytest.raises(SystemExit, match='repeat'):
        tool.seed_list([1, 1])
    with pytest.raises(SystemExit, match='>= 1'):
        tool.seed_list([0])


def _quickstart_tool():
    return load_script('tools', 'quickstart.py')


def test_job_count():
    from lt_mm.quickstart.runs import available_cpus
    tool = _quickstart_tool()
    # at most one worker per task; the default also at most one per core
    assert tool.job_count(None, 3) == min(3, available_cpus())
    assert tool.job_count(8, 3) == 3
    assert tool.job_count(2, 3) == 2
    assert tool.job_count(1, 3) == 1
    assert tool.job_count(4, 1) == 1
    with pytest.raises(SystemExit, match='--jobs 0'):
        tool.job_count(0, 3)


def test_quickstart_seeds_fast(tmp_path):
    # two seeds of one cheap method: per-seed folders, mean ± std table
    work = str(tmp_path / 'qs')
    out = _run(['--fast', '--work-dir', work, '--tasks', 'seg', '--methods',
                'DisAlign', '--seeds', '2'])
    assert 'mean ± std over 2 seeds' in out
    assert 'quickstart (2 seeds) finished in' in out
    with open(osp.join(work, 'results.json')) as f:
        res = json.load(f)
    assert res['seeds'] == [0, 1]
    assert set(res['per_seed']) == {'0', '1'}
    rows = res['aggregate']['seg']
    assert [r['method'] for r in rows] == ['baseline (joint)', 'DisAlign']
    for r in rows:
        assert r['n'] == 2 and len(r['mIoU']['values']) == 2
    for seed in (0, 1):
        assert osp.isfile(osp.join(work, f'seed_{seed}', 'results.md'))
    with open(osp.join(work, 'results.md')) as f:
        md = f.read()
    assert '## seed 0' in md and '## seed 1' in md and ' ± ' in md


def test_a_failing_task_is_logged_and_raised_from_its_worker(tmp_path, capfd):
    from lt_mm.quickstart.runs import ElapsedLog, run_tasks_parallel
    with pytest.raises(KeyError, match='nope'):
        run_tasks_parallel(['nope'], str(tmp_path), 1, ElapsedLog())
    # logged by the worker when it failed (fd-level: the worker is forked)
    assert '[nope] FAILED: KeyError' in capfd.readouterr().out
    with pytest.raises(ValueError, match='jobs=0'):
        run_tasks_parallel(['seg'], str(tmp_path), 0, ElapsedLog())
