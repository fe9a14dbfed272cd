"""Tests of lt_mm.core.sampling (Decoupling Eq. 1-2 and the sampler schemes).
"""
from collections import Counter

import pytest
import torch
from torch.testing import assert_close

from lt_mm.core.sampling import (class_aware_indices, class_sampling_probs,
                                 class_weighted_indices,
                                 progressive_class_probs)

COUNTS = [100.0, 25.0, 4.0, 1.0]  # N = 130, C = 4


def _d(x):
    return torch.tensor(x, dtype=torch.float64)


def test_class_sampling_probs_by_hand():
    # q = 1: n_j / N = 100/130, 25/130, 4/130, 1/130
    assert_close(
        class_sampling_probs(COUNTS, 1.0),
        _d([100 / 130, 25 / 130, 4 / 130, 1 / 130]))
    # q = 0: 1/C
    assert_close(class_sampling_probs(COUNTS, 0.0), _d([0.25] * 4))
    # q = 0.5: sqrt -> 10, 5, 2, 1; sum 18
    assert_close(
        class_sampling_probs(COUNTS, 0.5),
        _d([10 / 18, 5 / 18, 2 / 18, 1 / 18]))
    # a class with n_j = 0 can never be drawn, also for q = 0 (C' = 2)
    assert_close(class_sampling_probs([4.0, 0.0, 1.0], 0.0), _d([.5, 0, .5]))
    assert_close(
        class_sampling_probs([4.0, 0.0, 1.0], 0.5), _d([2 / 3, 0, 1 / 3]))


def test_class_sampling_probs_errors():
    with pytest.raises(ValueError, match='q=1.5'):
        class_sampling_probs(COUNTS, 1.5)
    with pytest.raises(ValueError, match='all zero'):
        class_sampling_probs([0, 0], 0.5)
    with pytest.raises(ValueError, match='negative'):
        class_sampling_probs([1, -2], 0.5)


def test_progressive_class_probs_by_hand():
    T = 10
    ib = _d([100 / 130, 25 / 130, 4 / 130, 1 / 130])
    cb = _d([0.25] * 4)
    # t = 0: instance-balanced
    assert_close(progressive_class_probs(COUNTS, 0, T), ib)
    # t = T/2: 0.5 * n_j/N + 0.5 * 1/4
    # class 0: 0.5*100/130 + 0.125 = 0.384615 + 0.125 = 0.509615
    half = progressive_class_probs(COUNTS, 5, T)
    assert_close(half, 0.5 * ib + 0.5 * cb)
    assert_close(half[0], _d(0.5 * 100 / 130 + 0.125))
    assert_close(half[3], _d(0.5 * 1 / 130 + 0.125))
    # t = T: class-balanced; beyond T and below 0: clamped
    assert_close(progressive_class_probs(COUNTS, T, T), cb)
    assert_close(progressive_class_probs(COUNTS, 3 * T, T), cb)
    assert_close(progressive_class_probs(COUNTS, -1, T), ib)
    # t = 3, T = 4: 0.25 * n_j / N + 0.75 / 4 ; class 1: 25/520 + 0.1875
    assert_close(
        progressive_class_probs(COUNTS, 3, 4)[1], _d(25 / 520 + 0.1875))
    with pytest.raises(ValueError, match='total_epochs=0'):
        progressive_class_probs(COUNTS, 0, 0)


def _single_label_lists(counts, offset=0):
    """Class j owns counts[j] consecutive dataset indices."""
    lists, start = [], offset
    for n in counts:
        lists.append(list(range(start, start + int(n))))
        start += int(n)
    return lists


@pytest.mark.parametrize('q', [1.0, 0.5, 0.0])
def test_class_weighted_empirical_frequencies(q):
    lists = _single_label_lists(COUNTS)
    owner = {i: j for j, idx in enumerate(lists) for i in idx}
    p = class_sampling_probs(COUNTS, q)
    n = 20000
    g = torch.Generator().manual_seed(0)
    out = class_weighted_indices(lists, p, n, g)
    assert len(out) == n
    freq = Counter(owner[i] for i in out)
    emp = _d([freq[j] / n for j in range(4)])
    # binomial std <= sqrt(0.25 / 20000) = 0.0035; tolerance ~ 4 std
    assert_close(emp, p, atol=0.015, rtol=0)


def test_class_weighted_visits_a_class_without_replacement():
    # only class 1 can be drawn: its 5 samples come in shuffled cycles
    lists = [[0, 1], [10, 11, 12, 13, 14], []]
    g = torch.Generator().manual_seed(3)
    out = class_weighted_indices(lists, [0.0, 1.0, 0.0], 15, g)
    for k in range(3):
        assert sorted(out[5 * k:5 * k + 5]) == [10, 11, 12, 13, 14]


def test_class_weighted_determinism_and_errors():
    lists = _single_label_lists(COUNTS)
    p = class_sampling_probs(COUNTS, 0.5)
    a = class_weighted_indices(lists, p, 50, torch.Generator().manual_seed(1))
    b = class_weighted_indices(lists, p, 50, torch.Generator().manual_seed(1))
    c = class_weighted_indices(lists, p, 50, torch.Generator().manual_seed(2))
    assert a == b and a != c
    assert class_weighted_indices(lists, p, 0) == []
    with pytest.raises(ValueError, match='no samples'):
        class_weighted_indices([[0], []], [0.5, 0.5], 3)
    with pytest.raises(ValueError, match='num_classes=2'):
        class_weighted_indices([[0], [1]], [1.0, 1.0, 1.0], 3)
    with pytest.raises(ValueError, match='all zero'):
        class_weighted_indices([[0], [1]], [0.0, 0.0], 3)
    with pytest.raises(ValueError, match='every class list'):
        class_weighted_indices([[], []], [1.0, 1.0], 3)
    with pytest.raises(ValueError, match='num_samples=-1'):
        class_weighted_indices([[0]], [1.0], -1)
    # before: OverflowError (inf) / a bare "cannot convert" (nan)
    with pytest.raises(ValueError, match='num_samples=inf'):
        class_weighted_indices([[0]], [1.0], float('inf'))
    with pytest.raises(ValueError, match='num_samples=nan'):
        class_aware_indices([[0]], float('nan'))


def test_class_aware_four_consecutive_per_visit():
    counts = [9, 3, 0, 1, 6]  # class 2 is empty and skipped
    lists = _single_label_lists(counts)
    owner = {i: j for j, idx in enumerate(lists) for i in idx}
    spc = 4
    n_visits = 4 * 6  # 6 passes over the 4 non-empty classes
    g = torch.Generator().manual_seed(0)
    out = class_aware_indices(lists, spc * n_visits, spc, g)
    assert len(out) == spc * n_visits
    visits = []
    for v in range(n_visits):
        block = out[spc * v:spc * (v + 1)]
        classes = {owner[i] for i in block}
        assert len(classes) == 1, block  # 4 consecutive from one class
        visits.append(classes.pop())
    # each pass over the shuffled class list visits every non-empty class
    for k in range(6):
        assert sorted(visits[4 * k:4 * k + 4]) == [0, 1, 3, 4]
    assert 2 not in visits
    # within a class, samples come from its shuffled cycle: the first 9
    # draws of class 0 are a permutation of its 9 indices
    drawn0 = [i for i in out if owner[i] == 0]
    assert sorted(drawn0[:9]) == lists[0]
    # class 3 has 1 sample: it is repeated 4 times per visit
    assert [i for i in out if owner[i] == 3] == [lists[3][0]] * (4 * 6)
    # balanced: every class gets the same number of samples
    per_class = Counter(owner[i] for i in out)
    assert per_class == {0: 24, 1: 24, 3: 24, 4: 24}


def test_class_aware_truncates_and_is_deterministic():
    lists = [[0, 1, 2], [3, 4]]
    a = class_aware_indices(lists, 7, 3, torch.Generator().manual_seed(5))
    b = class_aware_indices(lists, 7, 3, torch.Generator().manual_seed(5))
    assert a == b and len(a) == 7
    assert class_aware_indices(lists, 0) == []
    # samples_per_class=1 alternates classes within each pass
    c = class_aware_indices(lists, 10, 1, torch.Generator().manual_seed(0))
    for k in range(5):
        pair = c[2 * k:2 * k + 2]
        assert {i < 3 for i in pair} == {True, False}
    with pytest.raises(ValueError, match='samples_per_class=0'):
        class_aware_indices(lists, 4, 0)
    with pytest.raises(ValueError, match='samples_per_class=1.5'):
        class_aware_indices(lists, 4, 1.5)
    with pytest.raises(ValueError, match='every class list'):
        class_aware_indices([[], []], 4)
    with pytest.raises(ValueError, match='class_to_indices is empty'):
        class_aware_indices([], 4)


def test_multi_label_samples_in_several_lists():
    # sample 0 has classes {0, 1}; sample 1 class 1 only; class balanced:
    # class 0 visits always give sample 0
    lists = [[0], [0, 1]]
    out = class_aware_indices(lists, 8, 2, torch.Generator().manual_seed(0))
    blocks = [out[k:k + 2] for k in range(0, 8, 2)]
    assert blocks.count([0, 0]) >= 2  # the two class-0 visits
    assert set(out) == {0, 1}
