"""LongTailAccuracy (many / medium / few protocol of Liu et al. 2019, used
by Decoupling Table 2, TDE Table 2, DisAlign Table 1) against a
hand-computed confusion on nine samples, through mmengine's Evaluator with
real mmpretrain DataSample objects."""
import json
import math

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.structures import DataSample
from torch.testing import assert_close

import lt_mm.cls  # noqa: F401
from lt_mm.cls.metrics import LongTailAccuracy, per_class_accuracy
from lt_mm.core.stats import ClassStats, shot_splits

# training counts -> shot_splits(100, 20): many {0} (150 > 100),
# medium {1, 2} (20 <= 50, 30 <= 100), few {3} (5 < 20)
COUNTS = [150, 50, 30, 5]

# (gt, scores); top-1 / top-2 in the comments
SAMPLES = [
    (0, [0.70, 0.10, 0.15, 0.05]),  # pred 0 (ok), top2 {0, 2} ok
    (0, [0.30, 0.40, 0.20, 0.10]),  # pred 1 (x),  top2 {1, 0} ok
    (1, [0.04, 0.80, 0.10, 0.06]),  # pred 1 (ok), top2 ok
    (1, [0.50, 0.20, 0.25, 0.05]),  # pred 0 (x),  top2 {0, 2} x
    (2, [0.10, 0.20, 0.60, 0.09]),  # pred 2 (ok)
    (2, [0.45, 0.05, 0.40, 0.10]),  # pred 0 (x),  top2 {0, 2} ok
    (3, [0.30, 0.04, 0.06, 0.60]),  # pred 3 (ok)
    (3, [0.10, 0.15, 0.05, 0.70]),  # pred 3 (ok)
    (2, [0.10, 0.12, 0.70, 0.08]),  # pred 2 (ok)
]
# confusion (rows gt, cols top-1 prediction):
#   gt 0: [1, 1, 0, 0] -> 1/2 = 50 %
#   gt 1: [1, 1, 0, 0] -> 1/2 = 50 %
#   gt 2: [1, 0, 2, 0] -> 2/3 = 66.667 %
#   gt 3: [0, 0, 0, 2] -> 2/2 = 100 %
# top1 = 6/9 = 66.667; top2: all but sample 3 -> 8/9 = 88.889
# balanced = (50 + 50 + 66.667 + 100) / 4 = 66.667
# many = 50; medium = (50 + 66.667) / 2 = 58.333; few = 100
EXPECTED = {
    'accuracy/top1': 600 / 9,
    'accuracy/top2': 800 / 9,
    'accuracy/balanced': (50 + 50 + 200 / 3 + 100) / 4,
    'accuracy/many': 50.0,
    'accuracy/medium': (50 + 200 / 3) / 2,
    'accuracy/few': 100.0,
}


def _samples():
    return [
        DataSample().set_gt_label(y).set_pred_score(torch.tensor(s))
        for y, s in SAMPLES
    ]


def test_long_tail_accuracy_hand_computed(tmp_path):
    out = tmp_path / 'per_class.json'
    metric = LongTailAccuracy(
        topk=(1, 2), counts=COUNTS, per_class_file=str(out))
    assert metric.splits == {'many': [0], 'medium': [1, 2], 'few': [3]}
    evaluator = Evaluator([metric])
    samples = _samples()
    evaluator.process(data_samples=samples[:4])  # two batches
    evaluator.process(data_samples=samples[4:])
    res = evaluator.evaluate(len(samples))
    assert set(res) == set(EXPECTED)
    for k, v in EXPECTED.items():
        assert math.isclose(res[k], v, rel_tol=1e-9), (k, res[k], v)
    # per-class accuracy kept on the metric and dumped for the tools
    assert_close(
        torch.tensor(metric.per_class, dtype=torch.float64),
        torch.tensor([50.0, 50.0, 200 / 3, 100.0], dtype=torch.float64))
    dumped = json.loads(out.read_text())
    assert dumped['per_class'] == pytest.approx([50, 50, 200 / 3, 100])
    assert dumped['splits']['few'] == [3]


def test_direct_process_and_compute_metrics():
    # the metric's own process / compute_metrics on DataSample dicts
    metric = LongTailAccuracy(topk=(1, 5), counts=COUNTS, per_class_file=None)
    metric.process(None, [d.to_dict() for d in _samples()])
    res = metric.compute_metrics(metric.results)
    # top-5 > C = 4 classes is skipped; no prefix at this level
    assert set(res) == {'top1', 'balanced', 'many', 'medium', 'few'}
    assert math.isclose(res['top1'], 600 / 9)
    assert math.isclose(res['medium'], (50 + 200 / 3) / 2)


def test_splits_from_stats_file_and_thresholds(tmp_path):
    # file splits are used as they are (here deliberately not shot_splits)
    path = tmp_path / 'stats.json'
    ClassStats(
        counts=COUNTS,
        unit='images',
        splits={
            'many': [0, 1],
            'medium': [2],
            'few': [3]
        }).save(path)
    m = LongTailAccuracy(stats_file=str(path), per_class_file=None)
    assert m.splits == {'many': [0, 1], 'medium': [2], 'few': [3]}
    m.process(None, [d.to_dict() for d in _samples()])
    res = m.compute_metrics(m.results)
    assert math.isclose(res['many'], 50.0)  # (50 + 50) / 2
    assert math.isclose(res['medium'], 200 / 3)
    # thresholds: many > 40, few < 10 -> many {0, 1}, medium {2}, few {3}
    m2 = LongTailAccuracy(
        counts=COUNTS, many_thr=40, few_thr=10, per_class_file=None)
    assert m2.splits == {'many': [0, 1], 'medium': [2], 'few': [3]}


def test_explicit_thresholds_override_the_stats_file_splits(tmp_path):
    # a file written with the papers' 100 / 20 (tools/class_stats.py):
    # many {0} (150), medium {1, 2} (50, 30), few {3} (5)
    path = str(tmp_path / 'stats.json')
    papers = shot_splits(COUNTS, 100, 20)
    ClassStats(counts=COUNTS, unit='images', splits=papers).save(path)
    # no threshold given: the file's groups
    m = LongTailAccuracy(stats_file=path, per_class_file=None)
    assert m.splits == {'many': [0], 'medium': [1, 2], 'few': [3]}
    # given thresholds win: many > 40 -> {0, 1}; few < 40 -> {2, 3}
    m = LongTailAccuracy(
        stats_file=path, many_thr=40, few_thr=40, per_class_file=None)
    assert m.splits == {'many': [0, 1], 'medium': [], 'few': [2, 3]}
    # one threshold given: the other keeps its default (few < 20)
    m = LongTailAccuracy(stats_file=path, many_thr=40, per_class_file=None)
    assert m.splits == {'many': [0, 1], 'medium': [2], 'few': [3]}
    assert (m.many_thr, m.few_thr) == (40, 20)
    m = LongTailAccuracy(stats_file=path, few_thr=40, per_class_file=None)
    assert m.splits == {'many': [0], 'medium': [1], 'few': [2, 3]}


def test_class_without_test_sample_and_empty_split():
    # class 3 has no test sample: NaN per-class accuracy, excluded from the
    # balanced mean and its (few) group is NaN
    acc = per_class_accuracy(
        torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 4)
    # class 0: 1 of 2; class 1: 1 of 1
    assert acc[:2].tolist() == [50.0, 100.0]
    assert math.isnan(acc[2]) and math.isnan(acc[3])
    m = LongTailAccuracy(topk=1, counts=COUNTS, per_class_file=None)
    m.process(None, [d.to_dict() for d in _samples()[:6]])
    res = m.compute_metrics(m.results)
    assert math.isnan(res['few'])
    assert math.isclose(res['balanced'], (50 + 50 + 50) / 3)


def test_bad_input():
    with pytest.raises(ValueError, match='exactly one'):
        LongTailAccuracy()
    with pytest.raises(ValueError, match='exactly one'):
        LongTailAccuracy(counts=COUNTS, splits={'many': [0]})
    with pytest.raises(ValueError, match='num_classes=5'):
        LongTailAccuracy(counts=COUNTS, num_classes=5)
    with pytest.raises(ValueError, match='few_thr'):
        LongTailAccuracy(counts=COUNTS, many_thr=10, few_thr=20)
    m = LongTailAccuracy(counts=COUNTS, per_class_file=None)
    with pytest.raises(ValueError, match='predicts 5 classes'):
        m.process(None, [
            DataSample().set_gt_label(0).set_pred_score(
                torch.rand(5)).to_dict()
        ])


def test_multi_label_ground_truth_is_refused():
    # [0, 2] used to be cut to its first label 0 (prediction 2 scored 0)
    m = LongTailAccuracy(counts=COUNTS, per_class_file=None)
    sample = DataSample().set_gt_label([0, 2]).set_pred_score(
        torch.tensor([0.1, 0.2, 0.6, 0.1]))
    with pytest.raises(ValueError, match=r'gt_label \[0, 2\].*single-label'):
        m.process(None, [sample.to_dict()])
