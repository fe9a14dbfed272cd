"""``benchmarks/bench_stage2.py --quick``: standard vs. cached DisAlign
stage 2 on the tiny data from the session stage-1 checkpoint; the bench
itself asserts that the trained head parameters agree (QUICK_PARAM_TOL);
no timing is asserted."""
import math

from ..conftest import load_script


def _bench():
    return load_script('benchmarks', 'bench_stage2.py')


def test_bench_stage2_quick(cls_stage1, data_root, tmp_path, monkeypatch,
                            capsys):
    from mmengine.registry import DefaultScope
    bench = _bench()
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        rows = bench.main([
            '--quick', '--work-dir',
            str(tmp_path), '--data-root', data_root, '--stage1',
            cls_stage1['checkpoint']
        ])
    out = capsys.readouterr().out
    assert 'standard s' in out and 'mean +- std over seeds' in out
    (row, ) = rows['disalign']
    assert row['param_diff'] <= bench.QUICK_PARAM_TOL
    assert row['standard_s'] > 0 and row['cached_s'] > 0
    assert 0 < row['cache_s'] < row['cached_s']
    for std, cached in (row['top1'], row['few']):
        assert not math.isnan(std) and not math.isnan(cached)


def test_bench_stage2_quick_seg(seg_stage1, data_root, tmp_path, monkeypatch,
                                capsys):
    bench = _bench()
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    rows = bench.main([
        '--quick', '--task', 'seg', '--work-dir',
        str(tmp_path), '--data-root', data_root, '--stage1',
        seg_stage1['checkpoint']
    ])
    out = capsys.readouterr().out
    assert 'task=seg' in out and 'mIoU std/cached' in out
    (row, ) = rows['disalign']
    assert row['param_diff'] <= bench.QUICK_PARAM_TOL
    assert 0 < row['cache_s'] < row['cached_s']
    for std, cached in (row['top1'], row['few']):
        assert not math.isnan(std) and not math.isnan(cached)


def test_bench_stage2_quick_det(det_stage1, data_root, tmp_path, monkeypatch,
                                capsys):
    bench = _bench()
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    rows = bench.main([
        '--quick', '--task', 'det', '--work-dir',
        str(tmp_path), '--data-root', data_root, '--stage1',
        det_stage1['checkpoint']
    ])
    out = capsys.readouterr().out
    assert 'task=det' in out and 'box AP std/cached' in out
    (row, ) = rows['disalign']
    assert row['param_diff'] <= bench.QUICK_PARAM_TOL
    assert 0 < row['cache_s'] < row['cached_s']
    for std, cached in (row['top1'], row['few']):
        assert not math.isnan(std) and not math.isnan(cached)
