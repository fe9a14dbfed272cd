"""Pins of HeadBodyTailIoUMetric and of the group rules behind it that the
other tests leave open (found by mutation testing of lt_mm/seg/metrics.py
and lt_mm/core/splits.py)."""
import pytest

from lt_mm.core.splits import lvis_splits, pixel_splits, ratio_splits

CLASSES = ('c0', 'c1', 'c2', 'c3', 'c4')


def test_pixel_splits_with_a_class_absent_from_training():
    # a class without training pixel is a (valid) tail class:
    # C = 4, sum 100: 0.6 > 1.5 / 4 -> head; 0.3, 0.1 body; 0 <= 0.0375 tail
    assert pixel_splits([60, 30, 10, 0]) == {
        'head': [0],
        'body': [1, 2],
        'tail': [3]
    }


def test_ratio_thresholds_are_ratios():
    # a share above 1 is no ratio: refused, naming the value
    with pytest.raises(ValueError, match=r'head_thr=1\.5'):
        ratio_splits([1, 2, 3], head_thr=1.5, tail_thr=0.1)
    # 1.0 itself is valid: no class can be head
    assert ratio_splits([1, 2, 3], head_thr=1.0, tail_thr=0.2) == {
        'head': [],
        'body': [1, 2],  # 2/6, 3/6 > 0.2
        'tail': [0]  # 1/6 <= 0.2
    }


def test_lvis_splits_rare_max_zero():
    # rare_max = 0: only classes without training image are rare
    assert lvis_splits(
        image_counts=[0, 1, 2], rare_max=0, common_max=1) == {
            'rare': [0],
            'common': [1],
            'frequent': [2]
        }
    with pytest.raises(ValueError, match='rare_max=-1'):
        lvis_splits(image_counts=[0, 1, 2], rare_max=-1)


def test_explicit_total_wins_over_the_stats_total():
    from lt_mm.core.splits import compute_splits
    from lt_mm.core.stats import ClassStats

    st = ClassStats(
        counts=[0.5, 0.005, 0.0005], unit='pixels', extra={'total': 1.0})
    # file total 1.0: 0.5 head, 0.005 body, 0.0005 tail
    assert compute_splits(st, 'ratio') == {
        'head': [0],
        'body': [1],
        'tail': [2]
    }
    # total=0.1 given: ratios 5, 0.05 head (> 0.01), 0.005 body
    assert compute_splits(
        st, 'ratio', total=0.1) == {
            'head': [0, 1],
            'body': [2],
            'tail': []
        }


@pytest.mark.parametrize('splits', [{}, [[0], [1]], (('head', [0]), )])
def test_splits_must_be_a_non_empty_dict(splits):
    from lt_mm.seg import HeadBodyTailIoUMetric

    with pytest.raises(ValueError, match='must be a non-empty dict'):
        HeadBodyTailIoUMetric(splits=splits)


def test_metric_counts_may_hold_a_class_without_training_pixel():
    from lt_mm.seg import HeadBodyTailIoUMetric

    # C = 5, sum 100: 0.5 head (> 0.3), 0.2 and 0.27 body, 0.03 and 0 tail
    metric = HeadBodyTailIoUMetric(counts=[50, 20, 27, 3, 0])
    assert metric.resolve_groups(CLASSES) == {
        'head': [0],
        'body': [1, 2],
        'tail': [3, 4]
    }


def test_bad_shares_fail_at_construction():
    from lt_mm.seg import HeadBodyTailIoUMetric

    # tail_share 0.5 > head_share 0.1: refused when the metric is built,
    # not when the runner hands over the classes
    with pytest.raises(ValueError, match='tail_share must not exceed'):
        HeadBodyTailIoUMetric(
            counts=[50, 20, 27, 2, 1], head_share=0.1, tail_share=0.5)


def test_class_count_mismatch_names_the_source(tmp_path):
    from lt_mm.core.stats import ClassStats
    from lt_mm.seg import HeadBodyTailIoUMetric

    with pytest.raises(
            ValueError,
            match=r'\(counts\) have 5 classes but '
            'the dataset has 4'):
        HeadBodyTailIoUMetric(counts=[50, 20, 27, 2, 1]).resolve_groups(
            CLASSES[:4])
    path = str(tmp_path / 'stats.json')
    ClassStats(counts=[50, 20, 27, 2, 1], unit='pixels').save(path)
    with pytest.raises(ValueError, match=r'stats\.json\) have 5 classes'):
        HeadBodyTailIoUMetric(stats_file=path).resolve_groups(CLASSES[:4])


def test_class_name_mismatch_warns_only_when_names_differ(tmp_path):
    import warnings

    from lt_mm.core.stats import ClassStats
    from lt_mm.seg import HeadBodyTailIoUMetric

    counts = [50, 20, 27, 2, 1]
    same = str(tmp_path / 'same.json')
    # trailing spaces do not count (mmseg spells ADE20K's 'bed ')
    ClassStats(
        counts=counts, unit='pixels', names=['c0 ', 'c1', 'c2', 'c3',
                                             'c4']).save(same)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        HeadBodyTailIoUMetric(stats_file=same).resolve_groups(CLASSES)
    other = str(tmp_path / 'other.json')
    ClassStats(
        counts=counts, unit='pixels', names=['a', 'b', 'c', 'd',
                                             'e']).save(other)
    with pytest.warns(UserWarning, match='class names in .*other.json'):
        groups = HeadBodyTailIoUMetric(
            stats_file=other).resolve_groups(CLASSES)
    assert groups == {'head': [0], 'body': [1, 2], 'tail': [3, 4]}


def test_group_index_equal_to_the_number_of_classes_is_refused():
    from lt_mm.seg import HeadBodyTailIoUMetric

    metric = HeadBodyTailIoUMetric(splits={'head': [0], 'tail': [5]})
    with pytest.raises(
            ValueError, match=r'indices \[5\] but the dataset '
            'has 5 classes'):
        metric.dataset_meta = dict(classes=CLASSES)
