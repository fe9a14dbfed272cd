"""Pins of LongTailAccuracy / long_tail_accuracy behaviour that the other
tests leave open (found by mutation testing of lt_mm/cls/metrics.py):
the score path of ``long_tail_accuracy`` (the metric itself always passes
ranked labels), its top-k boundaries and its bad-input guards."""
import math
import re

import pytest
import torch

import lt_mm.cls  # noqa: F401
from lt_mm.cls.metrics import LongTailAccuracy, long_tail_accuracy

# the nine samples of tests/cls/test_metrics.py: (gt, scores)
SAMPLES = [
    (0, [0.70, 0.10, 0.15, 0.05]),  # top-1 0 (ok), ranking 0 2 1 3
    (0, [0.30, 0.40, 0.20, 0.10]),  # top-1 1 (x),  ranking 1 0 2 3
    (1, [0.04, 0.80, 0.10, 0.06]),  # top-1 1 (ok), ranking 1 2 3 0
    (1, [0.50, 0.20, 0.25, 0.05]),  # top-1 0 (x),  ranking 0 2 1 3
    (2, [0.10, 0.20, 0.60, 0.09]),  # top-1 2 (ok), ranking 2 1 0 3
    (2, [0.45, 0.05, 0.40, 0.10]),  # top-1 0 (x),  ranking 0 2 3 1
    (3, [0.30, 0.04, 0.06, 0.60]),  # top-1 3 (ok), ranking 3 0 2 1
    (3, [0.10, 0.15, 0.05, 0.70]),  # top-1 3 (ok), ranking 3 1 0 2
    (2, [0.10, 0.12, 0.70, 0.08]),  # top-1 2 (ok), ranking 2 1 0 3
]
SCORES = torch.tensor([s for _, s in SAMPLES], dtype=torch.float64)
TARGET = torch.tensor([y for y, _ in SAMPLES])
SPLITS = {'many': [0], 'medium': [1, 2], 'few': [3]}
# per class (top-1): 0: 1/2, 1: 1/2, 2: 2/3, 3: 2/2
PER_CLASS = [50.0, 50.0, 200 / 3, 100.0]


def test_scores_path_hand_computed():
    # rank of the gt label: 2 for samples 1 and 5, 3 for sample 3, else 1
    # -> top1 = 6/9, top2 = 8/9, top3 = top4 = 9/9; top5 > C = 4: skipped
    res = long_tail_accuracy(SCORES, TARGET, SPLITS, 4, topk=(1, 2, 3, 4, 5))
    assert set(res) == {
        'top1', 'top2', 'top3', 'top4', 'balanced', 'many', 'medium', 'few',
        'per_class'
    }
    assert math.isclose(res['top1'], 600 / 9)
    assert math.isclose(res['top2'], 800 / 9)
    assert res['top3'] == 100.0 and res['top4'] == 100.0
    assert res['per_class'] == pytest.approx(PER_CLASS)
    assert math.isclose(res['balanced'], sum(PER_CLASS) / 4)
    assert math.isclose(res['many'], 50.0)
    assert math.isclose(res['medium'], (50 + 200 / 3) / 2)
    assert math.isclose(res['few'], 100.0)


def test_default_topk_is_top1_on_scores():
    # defaults: topk=(1, ), is_topk=False (scores, not ranked labels)
    res = long_tail_accuracy(SCORES, TARGET, SPLITS, 4)
    assert set(res) == {
        'top1', 'balanced', 'many', 'medium', 'few', 'per_class'
    }
    assert math.isclose(res['top1'], 600 / 9)


def test_metric_reports_top_k_equal_to_the_number_of_classes():
    # k == C is a valid top-k (every label ranked): 100 %
    m = LongTailAccuracy(
        topk=(1, 4), splits=SPLITS, num_classes=4, per_class_file=None)
    m.process(None, [
        dict(pred_score=s, gt_label=torch.tensor([y]))
        for s, y in zip(SCORES, TARGET)
    ])
    res = m.compute_metrics(m.results)
    assert res['top4'] == 100.0
    assert math.isclose(res['top1'], 600 / 9)


def test_ranked_labels_narrower_than_k_skip_that_k():
    # only the top-1 label is known: top-2 cannot be computed and must not
    # be reported as top-1 (C = 4 >= k = 2)
    ranked = SCORES.argmax(dim=1, keepdim=True)
    res = long_tail_accuracy(
        ranked, TARGET, SPLITS, 4, topk=(1, 2), is_topk=True)
    assert 'top2' not in res
    assert math.isclose(res['top1'], 600 / 9)


def test_labels_outside_the_classes_are_refused():
    scores = SCORES[:3]
    for bad, shown in ((-1, r'\[-1, 1\]'), (4, r'\[0, 4\]')):
        target = torch.tensor([0, 1, bad])
        with pytest.raises(
                ValueError, match=r'\[0, 4\); got values in ' + shown):
            long_tail_accuracy(scores, target, SPLITS, 4)


def test_no_sample_is_refused():
    with pytest.raises(ValueError, match='no sample'):
        long_tail_accuracy(
            torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), SPLITS, 4)
    # a single sample is fine
    res = long_tail_accuracy(SCORES[:1], TARGET[:1], SPLITS, 4)
    assert res['top1'] == 100.0


@pytest.mark.parametrize('shape', [(9, 5), (9, 3), (4, )])
def test_scores_of_another_number_of_classes_are_refused(shape):
    scores = torch.rand(*shape)
    target = TARGET[:shape[0]]
    pattern = re.escape(f'shape {tuple(shape)}') + r'.*\(N, 4\)'
    with pytest.raises(ValueError, match=pattern):
        long_tail_accuracy(scores, target, SPLITS, 4)


@pytest.mark.parametrize('topk', [0, (1, 0), (0, 5), (5, -1), ()])
def test_non_positive_topk_is_refused(topk):
    with pytest.raises(ValueError, match=r'topk=.*must be positive'):
        LongTailAccuracy(
            topk=topk, counts=[150, 50, 30, 5], per_class_file=None)


def test_explicit_splits_give_the_number_of_classes():
    # no num_classes: the largest index + 1 (class 3 -> C = 4)
    m = LongTailAccuracy(splits=SPLITS, per_class_file=None)
    assert (m.num_classes, m.splits, m.counts) == (4, SPLITS, None)
    # num_classes wins (classes 4, 5 in no group)
    m = LongTailAccuracy(splits=SPLITS, num_classes=6, per_class_file=None)
    assert m.num_classes == 6
    with pytest.raises(ValueError, match='splits are empty'):
        LongTailAccuracy(splits={'many': [], 'few': []}, per_class_file=None)


def test_zero_thresholds_are_valid_and_negative_ones_are_named():
    # many_thr = few_thr = 0: every class with an image is many-shot, a
    # class without training image (0 < 0 is false) is medium
    m = LongTailAccuracy(
        counts=[3, 0, 1], many_thr=0, few_thr=0, per_class_file=None)
    assert m.splits == {'many': [0, 2], 'medium': [1], 'few': []}
    with pytest.raises(ValueError, match='many_thr.*-1'):
        LongTailAccuracy(counts=[3, 0, 1], many_thr=-1, per_class_file=None)
    with pytest.raises(ValueError, match='few_thr.*-1'):
        LongTailAccuracy(counts=[3, 0, 1], few_thr=-1, per_class_file=None)


def test_predicted_labels_without_scores():
    # samples with pred_label only: top-1 and the groups as from scores;
    # top-5 cannot be computed from one label per sample and is skipped
    m = LongTailAccuracy(
        topk=(1, 5), counts=[150, 50, 30, 5], per_class_file=None)
    m.process(None, [
        dict(pred_label=s.argmax().reshape(1), gt_label=torch.tensor([y]))
        for s, y in zip(SCORES, TARGET)
    ])
    res = m.compute_metrics(m.results)
    assert set(res) == {'top1', 'balanced', 'many', 'medium', 'few'}
    assert math.isclose(res['top1'], 600 / 9)
    assert math.isclose(res['medium'], (50 + 200 / 3) / 2)
    assert m.per_class == pytest.approx(PER_CLASS)


def test_stats_file_splits_are_used_only_when_complete_and_wanted(tmp_path):
    from lt_mm.core.stats import ClassStats

    counts = [150, 50, 30, 5]  # shot_splits: many [0], medium [1, 2], few [3]
    shot = {'many': [0], 'medium': [1, 2], 'few': [3]}
    path = str(tmp_path / 'stats.json')
    ClassStats(
        counts=counts,
        unit='images',
        splits={
            'many': [0, 1],
            'medium': [2],
            'few': [3]
        }).save(path)
    # use_file_splits=False: the file's groups are ignored
    m = LongTailAccuracy(
        stats_file=path, use_file_splits=False, per_class_file=None)
    assert m.splits == shot
    assert m.counts == counts
    # a file without all three groups: recomputed from its counts
    part = str(tmp_path / 'part.json')
    ClassStats(
        counts=counts, unit='images', splits={
            'many': [0, 1],
            'few': [3]
        }).save(part)
    m = LongTailAccuracy(stats_file=part, per_class_file=None)
    assert m.splits == shot


def test_samples_with_and_without_scores_mixed():
    # the ranked labels are cut to the narrowest sample (1 label): top-1 of
    # all nine samples, top-2 skipped
    m = LongTailAccuracy(
        topk=(1, 2), counts=[150, 50, 30, 5], per_class_file=None)
    m.process(None, [
        dict(pred_score=s, gt_label=torch.tensor([y]))
        for s, y in zip(SCORES[:5], TARGET[:5])
    ])
    m.process(None, [
        dict(pred_label=s.argmax().reshape(1), gt_label=torch.tensor([y]))
        for s, y in zip(SCORES[5:], TARGET[5:])
    ])
    res = m.compute_metrics(m.results)
    assert 'top2' not in res
    assert math.isclose(res['top1'], 600 / 9)
    assert math.isclose(res['balanced'], sum(PER_CLASS) / 4)
