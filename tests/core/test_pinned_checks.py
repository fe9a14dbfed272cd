"""Pinned bad inputs of lt_mm.core.checks and lt_mm.core._utils.

Each guard gets its own test that names the offending value (mutation
audit: these guards could be removed without any other test failing).
"""
import math

import pytest
import torch

from lt_mm.core._utils import weight_2d
from lt_mm.core.checks import as_counts


def test_as_counts_length_mismatch_names_both_numbers():
    # 3 counts for a 2-class model: a statistics file of another dataset
    with pytest.raises(
            ValueError,
            match=r'counts has 3 entries but the '
            r'model has num_classes=2'):
        as_counts([1, 2, 3], num_classes=2)
    with pytest.raises(
            ValueError, match=r'class_probs has 1 entries .*'
            r'num_classes=2'):
        as_counts([1.0], num_classes=2, name='class_probs')
    assert as_counts([1, 2], num_classes=2).tolist() == [1.0, 2.0]


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_as_counts_refuses_nan_and_inf_naming_the_values(bad):
    # NaN passes both 'n < 0' and 'n == 0' silently: only the finiteness
    # check stops it
    with pytest.raises(
            ValueError,
            match=r'counts contains NaN or inf: '
            r'\[1.0, ' + str(bad)):
        as_counts([1, bad, 2])
    with pytest.raises(ValueError, match='NaN or inf'):
        as_counts(torch.tensor([3.0, bad]), allow_zero=True)


def test_weight_2d_wrong_feature_dim_names_shape_and_dim():
    with pytest.raises(
            ValueError,
            match=r'weight has shape \(3, 4\); '
            r'expected \(C, 5\).*dimension 5'):
        weight_2d(torch.zeros(3, 4), dim=5)
    # a 1x1 conv weight flattens; a 3x3 one does not
    assert weight_2d(torch.zeros(3, 4, 1, 1), dim=4).shape == (3, 4)
    with pytest.raises(
            ValueError,
            match=r'weight has shape \(3, 4, 2, 2\); '
            r'expected \(C, D\)'):
        weight_2d(torch.zeros(3, 4, 2, 2))
    with pytest.raises(ValueError, match=r'weight has shape \(4,\)'):
        weight_2d(torch.zeros(4))


def test_as_counts_none_names_the_argument():
    with pytest.raises(
            ValueError,
            match='counts is None: this method needs '
            'per-class training counts'):
        as_counts(None)
    with pytest.raises(ValueError, match='^class_probs is None'):
        as_counts(None, name='class_probs')


@pytest.mark.parametrize('empty', [[], torch.zeros(0)])
def test_as_counts_empty_is_refused(empty):
    with pytest.raises(
            ValueError, match='^counts is empty; expected one '
            'count per class'):
        as_counts(empty)
