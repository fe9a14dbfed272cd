"""``benchmarks/bench_lvis_eval.py --quick`` runs as a user runs it and the
fast LVIS backend agrees with the official one on its tiny synthetic set
(1203 categories, 400 detections per image, tied scores, an image and a
category without detections, bbox and segm). No timing is asserted."""
import os
import os.path as osp
import re
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'benchmarks', 'bench_lvis_eval.py')


def _run(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, SCRIPT, *args],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=120)


def test_quick_benchmark_agrees():
    proc = _run('--quick')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert '1203 (r/c/f 337/461/405)' in out
    assert '400 detections per image' in out
    # the detections table: both backends, both iou types
    for iou in ('bbox', 'segm'):
        for backend in ('official', 'fast'):
            assert re.search(rf'^{iou}\s+12\s+{backend}\s', out, re.M), out
    # the difference table: every metric within 1e-6, marked ok
    rows = re.findall(r'^(bbox|segm)\s+((?:\S+\s+){9})(\S+)\s+ok$', out, re.M)
    assert [r[0] for r in rows] == ['bbox', 'segm'], out
    for _, diffs, worst in rows:
        values = [float(v) for v in diffs.split()] + [float(worst)]
        assert max(values) <= 1e-6, values
    assert 'official / fast' not in out  # no timing verdict in quick mode


def test_bad_arguments_are_refused():
    proc = _run('--images', '0')
    assert proc.returncode == 2
    assert '--images=0 must be >= 1' in proc.stderr
