"""``benchmarks/bench_heads.py --quick``: every lt_mm head next to the
stock head at tiny sizes; the outputs must agree (identity calibrations ==
stock head, cached == uncached normalised weights, TDE box scores survive
mmdet's softmax). No timing is asserted."""

from ..conftest import load_script


def _bench():
    return load_script('benchmarks', 'bench_heads.py')


def test_bench_heads_quick(capsys):
    bench = _bench()
    out = bench.main(['--quick', '--threads', '1'])
    text = capsys.readouterr().out
    assert set(out) == {'cls', 'seg', 'det'}
    for task, checks in out.items():
        assert f'{task}: {len(checks)} output checks passed' in text
        heads = {head for head, _, _ in checks}
        assert len(heads) >= {'cls': 12, 'seg': 8, 'det': 7}[task]
        kinds = {(head, kind) for head, kind, _ in checks}
        for head in heads:
            assert (head, 'cached == uncached') in kinds
        for head in bench.IDENTITY_HEADS[task]:
            assert (head, 'identity == stock') in kinds
        assert all(diff <= 1e-5 for _, _, diff in checks)
    det_kinds = {kind for _, kind, _ in out['det']}
    assert 'softmax(log P) == P' in det_kinds


def test_timing_helpers_interleave_and_format():
    bench = _bench()
    calls = []
    times = bench.time_interleaved(
        {
            'a': lambda: calls.append('a'),
            'b': lambda: calls.append('b')
        },
        repeats=3,
        warmup=1)
    # warmup a, b; then rounds a b | b a | a b (the order rotates)
    assert calls == ['a', 'b', 'a', 'b', 'b', 'a', 'a', 'b']
    assert [len(v['wall']) for v in times.values()] == [3, 3]
    assert [len(v['cpu']) for v in times.values()] == [3, 3]
    row = dict(task='seg', head='X', target=1.03, ok=False)
    for clock in ('cpu', 'wall'):
        row.update({
            f'{clock}_min_ms': 1.0,
            f'{clock}_median_ms': 2.0,
            f'{clock}_ratio_min': 1.5,
            f'{clock}_ratio_median': 1.2
        })
    assert 'MISS' in bench.format_table([row])
