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
    for method in ('DisAlign', 'TDE', 'tau-norm', 'LWS', 'cRT', 'NCM', 'CDT'):
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
    out2 = _run(
        ['--fast', '--work-dir', work, '--tasks', 'cls', '--methods', 'NCM'])
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
    row = dict(method='baseline (joint)', kind='stage1')
    per_seed = {
        0: {
            'seg': [
                dict(
                    row,
                    mIoU=10.0,
                    head=60.0,
                    body=0.0,
                    tail=None,
                    seconds=4.0)
            ]
        },
        1: {
            'seg': [
                dict(
                    row,
                    mIoU=12.0,
                    head=64.0,
                    body=3.0,
                    tail=None,
                    seconds=6.0)
            ]
        },
        2: {
            'seg': [
                dict(
                    row,
                    mIoU=17.0,
                    head=62.0,
                    body=6.0,
                    tail=None,
                    seconds=5.0)
            ]
        },
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
    assert '| baseline (joint) | stage1 | 13.0 ± 3.6 | 62.0 ± 2.0 | ' \
        '3.0 ± 3.0 | n/a | 5 |' in md


def test_paired_differences_by_hand():
    """Method minus the same seed's baseline; seeds where either lacks a
    value drop out of that column; "body & tail" is the mean of the two."""
    from lt_mm.quickstart.report import paired_differences, paired_markdown

    def rows(base, dis):
        return {
            'seg': [
                dict(method='baseline (joint)', kind='stage1', **base),
                dict(method='DisAlign', kind='stage2', **dis)
            ]
        }

    per_seed = {
        # mIoU, head, body, tail
        0:
        rows(
            dict(mIoU=10.0, head=60.0, body=0.0, tail=2.0),
            dict(mIoU=13.0, head=59.0, body=4.0, tail=6.0)),
        1:
        rows(
            dict(mIoU=20.0, head=70.0, body=10.0, tail=None),
            dict(mIoU=21.0, head=70.0, body=11.0, tail=5.0)),
        2:
        rows(
            dict(mIoU=30.0, head=80.0, body=20.0, tail=8.0),
            dict(mIoU=35.0, head=77.0, body=20.0, tail=float('nan'))),
    }
    row = paired_differences(per_seed)['seg'][0]
    assert row['method'] == 'DisAlign' and row['n'] == 3
    # mIoU: 3, 1, 5 -> mean 3, sample var (0 + 4 + 4) / 2 = 4 -> std 2
    assert row['mIoU'] == dict(mean=3.0, std=2.0, min=1.0, values=[3, 1, 5])
    # head: -1, 0, -3 -> mean -4/3, var (1/9 + 16/9 + 25/9) / 2 = 7/3
    assert row['head']['mean'] == pytest.approx(-4 / 3)
    assert row['head']['std'] == pytest.approx((7 / 3)**0.5)
    assert row['head']['min'] == -3.0
    # tail: only seed 0 has both values (4): a mean, no std
    assert row['tail'] == dict(mean=4.0, std=None, min=4.0, values=[4.0])
    # body & tail: seed 0 (4 + 6) / 2 - (0 + 2) / 2 = 4; seeds 1, 2 drop
    assert row['body & tail']['values'] == [4.0]
    md = paired_markdown('seg', [row])
    assert '| body & tail |' in md
    assert '| DisAlign | stage2 | +3.0 ± 2.0 (min +1.0) | ' \
        '-1.3 ± 1.5 (min -3.0) | +1.7 ± 2.1 (min +0.0) | +4.0 (1 of 3) | ' \
        '+4.0 (1 of 3) |' in md
    # a seed without the baseline pairs nothing
    one = paired_differences(
        {0: {
            'seg': [dict(method='DisAlign', kind='stage2', mIoU=1.0)]
        }})['seg'][0]
    assert one['n'] == 0 and one['mIoU'] is None
    assert '| DisAlign | stage2 | n/a |' in paired_markdown('seg', [one])


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
    out = _run([
        '--fast', '--work-dir', work, '--tasks', 'seg', '--methods',
        'DisAlign', '--seeds', '2'
    ])
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
    # DisAlign minus the same seed's baseline, from the per-seed rows
    paired = res['paired']['seg']
    assert [r['method'] for r in paired] == ['DisAlign']
    base = {s: res['per_seed'][s]['seg'][0] for s in ('0', '1')}
    dis = {s: res['per_seed'][s]['seg'][1] for s in ('0', '1')}
    want = [dis[s]['mIoU'] - base[s]['mIoU'] for s in ('0', '1')]
    assert paired[0]['mIoU']['values'] == pytest.approx(want)
    assert "minus the same seed's baseline" in md
    assert "minus the same seed's baseline" in out


def test_a_failing_task_is_logged_and_raised_from_its_worker(tmp_path, capfd):
    from lt_mm.quickstart.runs import ElapsedLog, run_tasks_parallel
    with pytest.raises(KeyError, match='nope'):
        run_tasks_parallel(['nope'], str(tmp_path), 1, ElapsedLog())
    # logged by the worker when it failed (fd-level: the worker is forked)
    assert '[nope] FAILED: KeyError' in capfd.readouterr().out
    with pytest.raises(ValueError, match='jobs=0'):
        run_tasks_parallel(['seg'], str(tmp_path), 0, ElapsedLog())


def _tree(root):
    return sorted(
        osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root)
        for f in fs)


def test_data_of_other_settings_is_replaced_not_mixed(tmp_path):
    from lt_mm.quickstart.data import build_task_data
    root = str(tmp_path / 'seg')
    build_task_data('seg', root, size='full', seed=0)
    full = _tree(root)
    # the fast set (8 + 4 mosaics) in the same folder: none of the 80 + 40
    # full mosaics is left for mmseg to list
    build_task_data('seg', root, size='fast', seed=1)
    fast = _tree(root)
    maps = [p for p in fast if p.startswith('annotations')]
    assert len(maps) == 8 + 4, maps
    assert len(full) > len(fast)
    fresh = str(tmp_path / 'fresh')
    build_task_data('seg', fresh, size='fast', seed=1)
    assert _tree(fresh) == fast


def test_interrupted_data_is_rebuilt(tmp_path):
    from lt_mm.quickstart.data import _done_marker, build_task_data
    root = str(tmp_path / 'cls')
    build_task_data('cls', root, size='fast', seed=0)
    files = _tree(root)
    # an interrupted rebuild: the marker written first, a stray file
    with open(_done_marker(root)) as f:
        marker = json.load(f)
    marker['complete'] = False
    marker.pop('summary')
    with open(_done_marker(root), 'w') as f:
        json.dump(marker, f)
    with open(osp.join(root, 'stray.txt'), 'w') as f:
        f.write('half-written')
    build_task_data('cls', root, size='fast', seed=0)
    assert _tree(root) == files
    with open(_done_marker(root)) as f:
        assert json.load(f)['complete'] is True


def test_a_foreign_data_folder_is_refused(tmp_path):
    from lt_mm.quickstart.data import build_task_data
    root = tmp_path / 'det'
    root.mkdir()
    (root / 'mine.json').write_text('{}')
    with pytest.raises(FileExistsError, match='no quickstart data marker'):
        build_task_data('det', str(root), size='fast', seed=0)
    assert (root / 'mine.json').read_text() == '{}'


def _fake_stage1(work, task, record):
    from lt_mm.quickstart.runs import STAGE1_RECORD
    s1 = osp.join(work, task, 'stage1')
    os.makedirs(s1)
    ckpt = osp.join(s1, 'epoch_2.pth')
    with open(ckpt, 'wb') as f:
        f.write(b'not used')
    if record is not None:
        with open(osp.join(s1, STAGE1_RECORD), 'w') as f:
            json.dump(record, f)
    return ckpt


def test_stage1_is_reused_only_for_the_same_settings(tmp_path):
    from lt_mm.quickstart.runs import (STAGE1_RECORD, Stage1Mismatch,
                                       reusable_stage1, stage1_record)
    work = str(tmp_path)
    assert reusable_stage1('cls', work, True, 0) is None
    ckpt = _fake_stage1(work, 'cls',
                        dict(stage1_record('cls', True, 0), complete=True))
    assert reusable_stage1('cls', work, True, 0) == ckpt
    with pytest.raises(Stage1Mismatch, match='fast data, seed 0.*full data'):
        reusable_stage1('cls', work, False, 0)
    with pytest.raises(Stage1Mismatch, match='seed 0.*seed 1'):
        reusable_stage1('cls', work, True, 1)
    # unfinished training, and a work dir without a record
    _fake_stage1(work, 'seg',
                 dict(stage1_record('seg', True, 0), complete=False))
    with pytest.raises(Stage1Mismatch, match='did not finish'):
        reusable_stage1('seg', work, True, 0)
    _fake_stage1(work, 'det', None)
    with pytest.raises(Stage1Mismatch, match='is missing'):
        reusable_stage1('det', work, True, 0)
    # a record cut short while it was written
    with open(osp.join(work, 'det', 'stage1', STAGE1_RECORD), 'w') as f:
        f.write('{"task": "de')
    with pytest.raises(Stage1Mismatch, match='cannot be read'):
        reusable_stage1('det', work, True, 0)


def test_other_seed_in_a_used_work_dir_stops_before_any_data(tmp_path):
    from lt_mm.quickstart.runs import stage1_record
    work = str(tmp_path)
    _fake_stage1(work, 'cls',
                 dict(stage1_record('cls', True, 0), complete=True))
    tool = _quickstart_tool()
    with pytest.raises(SystemExit, match='seed 0.*seed 1.*--seeds'):
        tool.main(
            ['--fast', '--work-dir', work, '--tasks', 'cls', '--seed', '1'])
    with pytest.raises(SystemExit, match='full data'):
        tool.main(['--work-dir', work, '--tasks', 'cls'])
    assert not osp.exists(osp.join(work, 'data'))


def test_tasks_and_seeds_checked_before_any_work(tmp_path):
    tool = _quickstart_tool()
    work = str(tmp_path / 'w')
    with pytest.raises(SystemExit, match='cls named more than once'):
        tool.main(['--fast', '--work-dir', work, '--tasks', 'cls', 'cls'])
    with pytest.raises(SystemExit, match=r'--seed 4294967296: seeds are 0'):
        tool.main(['--fast', '--work-dir', work, '--seed', '4294967296'])
    with pytest.raises(SystemExit, match=r'--seed -1: seeds are 0'):
        tool.main(['--fast', '--work-dir', work, '--seed', '-1'])
    with pytest.raises(SystemExit, match=r'--seeds 4294967296: seeds are 0'):
        tool.main(['--fast', '--work-dir', work, '--seeds', '0', '4294967296'])
    assert not osp.exists(work)


def test_report_missing_groups_and_single_values():
    from lt_mm.quickstart.report import (aggregate_markdown, aggregate_tables,
                                         results_table)
    from lt_mm.quickstart.runs import RunResult

    # LVIS reports -1 for a group without categories: not a score
    res = RunResult(
        metrics={
            'lvis/bbox_AP': 0.3,
            'lvis/bbox_APr': -1.0
        },
        work_dir='',
        checkpoint=None)
    row = results_table('det', {'baseline (joint)': res})[0]
    assert row['box AP'] == 30.0 and row['APr'] is None
    # a value in 1 of 3 seeds: its mean, no std, and how many seeds
    base = dict(
        method='m',
        kind='stage1',
        head=60.0,
        body=None,
        tail=None,
        seconds=1.0)
    per_seed = {
        0: {
            'seg': [dict(base, mIoU=12.0)]
        },
        1: {
            'seg': [dict(base, mIoU=float('nan'))]
        },
        2: {
            'seg': [dict(base, mIoU=None)]
        },
    }
    agg = aggregate_tables(per_seed)['seg'][0]
    assert agg['mIoU'] == dict(mean=12.0, std=None, values=[12.0])
    md = aggregate_markdown('seg', [agg], 3)
    assert '| m | stage1 | 12.0 (1 of 3) | 60.0 ± 0.0 | n/a | n/a | 1 |' \
        in md
    one = aggregate_tables({0: {'seg': [dict(base, mIoU=12.0)]}})['seg'][0]
    assert '| 12.0 | 60.0 | n/a |' in aggregate_markdown('seg', [one], 1)


def test_outside_a_checkout_the_configs_are_named(tmp_path, monkeypatch):
    from lt_mm.quickstart import runs
    from lt_mm.quickstart.report import tool_path
    assert tool_path('train.py') == osp.join(REPO, 'tools', 'train.py')
    monkeypatch.setattr(runs, 'REPO', str(tmp_path))  # a wheel's site dir
    with pytest.raises(FileNotFoundError, match='not one .*LT_MM_REPO'):
        runs.run_config(
            'digits_cls_resnet_stage1.py', str(tmp_path / 'w'), train=False)
    with pytest.raises(FileNotFoundError, match='pip install -e'):
        tool_path('analysis', 'sweep_posthoc.py')
