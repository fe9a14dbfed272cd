"""Tests for lt_mm.core.grw (DisAlign Eq. 8-11, generalized re-weight)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lt_mm.core.grw import (GRWCrossEntropy, grw_class_weights,
                            grw_cross_entropy)

COUNTS = [6, 3, 1]  # r = [0.6, 0.3, 0.1]


def test_weights_rho_zero_is_all_ones():
    w = grw_class_weights(COUNTS, 0.0)
    assert w.dtype == torch.float32
    assert_close(w, torch.ones(3))


def test_weights_rho_one_inverse_frequency():
    # 1 / r = [5/3, 10/3, 10], sum = 15, times C / sum = 3 / 15
    # -> [1/3, 2/3, 2], which sums to C = 3
    w = grw_class_weights(COUNTS, 1.0)
    assert_close(w, torch.tensor([1 / 3, 2 / 3, 2.0]))
    assert_close(w.sum(), torch.tensor(3.0))


def test_weights_rho_half():
    # r^-0.5 = [1/sqrt(.6), 1/sqrt(.3), 1/sqrt(.1)]
    #        = [1.290994, 1.825742, 3.162278], sum = 6.279014
    # times 3 / 6.279014 -> [0.616814, 0.872310, 1.510876]
    w = grw_class_weights(torch.tensor(COUNTS), 0.5)
    assert_close(
        w, torch.tensor([0.616814, 0.872310, 1.510876]), atol=1e-5, rtol=0)


def test_weights_background_fixed_at_one():
    w = grw_class_weights(COUNTS, 1.0, background=True)
    assert_close(w, torch.tensor([1 / 3, 2 / 3, 2.0, 1.0]))
    w = grw_class_weights(COUNTS, 2.5, background=True)
    assert w[-1].item() == 1.0
    assert_close(w[:-1].sum(), torch.tensor(3.0))  # fg weights sum to C


def test_weights_bad_input():
    with pytest.raises(ValueError, match='rho'):
        grw_class_weights(COUNTS, -0.1)
    with pytest.raises(ValueError, match='zero count'):
        grw_class_weights([5, 0, 2], 1.0)
    with pytest.raises(ValueError, match='negative'):
        grw_class_weights([5, -1, 2], 1.0)


# Two samples, C = 3, weights w = [1/3, 2/3, 2] (rho = 1):
#   row 0: logits [0, 0, 0], label 0: CE = ln 3,  w = 1/3
#   row 1: logits [0, ln 3, 0], label 2: p = 1 / (1 + 3 + 1) -> CE = ln 5,
#          w = 2
LOGITS = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(3.0), 0.0]])
LABELS = torch.tensor([0, 2])
W = torch.tensor([1 / 3, 2 / 3, 2.0])
WSUM = math.log(3) / 3 + 2 * math.log(5)  # = 0.366204 + 3.218876 = 3.585080


def test_loss_hand_computed_reductions():
    # weighted mean: 3.585080 / (1/3 + 2) = 1.536463
    out = grw_cross_entropy(LOGITS, LABELS, W, reduction='weighted_mean')
    assert_close(out, torch.tensor(WSUM / (7 / 3)))
    assert_close(out, torch.tensor(1.536463), atol=1e-6, rtol=0)
    # cross-check with torch's weighted CE
    assert_close(out, F.cross_entropy(LOGITS, LABELS, weight=W))
    # mean over the elements: 3.585080 / 2 = 1.792540
    out = grw_cross_entropy(LOGITS, LABELS, W, reduction='mean')
    assert_close(out, torch.tensor(WSUM / 2))
    out = grw_cross_entropy(LOGITS, LABELS, W, reduction='sum')
    assert_close(out, torch.tensor(WSUM))
    out = grw_cross_entropy(LOGITS, LABELS, W, reduction='none')
    assert_close(out, torch.tensor([math.log(3) / 3, 2 * math.log(5)]))


def test_ignore_index_never_indexes_weights():
    # third sample has label 255 with C = 3: must be removed before the
    # weights are gathered (class_weight[255] would crash).
    logits = torch.cat([LOGITS, torch.tensor([[5.0, -2.0, 1.0]])])
    labels = torch.tensor([0, 2, 255])
    kw = dict(ignore_index=255)
    out = grw_cross_entropy(logits, labels, W, 'weighted_mean', **kw)
    assert_close(out, grw_cross_entropy(LOGITS, LABELS, W, 'weighted_mean'))
    out = grw_cross_entropy(logits, labels, W, 'sum', **kw)
    assert_close(out, torch.tensor(WSUM))
    # mmseg 'mean': ignored elements count in the denominator (3) ...
    out = grw_cross_entropy(logits, labels, W, 'mean', **kw)
    assert_close(out, torch.tensor(WSUM / 3))
    # ... unless avg_non_ignore=True (2 non-ignored)
    out = grw_cross_entropy(
        logits, labels, W, 'mean', avg_non_ignore=True, **kw)
    assert_close(out, torch.tensor(WSUM / 2))
    out = grw_cross_entropy(logits, labels, W, 'none', **kw)
    assert_close(out, torch.tensor([math.log(3) / 3, 2 * math.log(5), 0.0]))


def test_per_pixel_logits():
    # (N=1, C=3, H=1, W=3): pixels = row 0, row 1, an ignored pixel
    logits = torch.cat([LOGITS, torch.tensor([[1.0, 2.0, 3.0]])])
    logits = logits.t().reshape(1, 3, 1, 3)
    labels = torch.tensor([[[0, 2, 255]]])
    out = grw_cross_entropy(logits, labels, W, 'mean', ignore_index=255)
    assert_close(out, torch.tensor(WSUM / 3))
    out = grw_cross_entropy(logits, labels, W, 'none', ignore_index=255)
    assert out.shape == (1, 1, 3)
    assert out[0, 0, 2] == 0
    out = grw_cross_entropy(
        logits, labels, W, 'weighted_mean', ignore_index=255)
    assert_close(out, torch.tensor(WSUM / (7 / 3)))


def test_all_ignored_gives_zero_and_gradient():
    logits = LOGITS.clone().requires_grad_(True)
    labels = torch.tensor([255, 255])
    for red in ('weighted_mean', 'mean', 'sum'):
        out = grw_cross_entropy(
            logits, labels, W, red, ignore_index=255, avg_non_ignore=True)
        assert out.item() == 0.0
        out.backward()
        assert torch.isfinite(logits.grad).all()


def test_module_detection_background():
    # counts of the C = 3 foreground classes; logits have C + 1 columns
    loss = GRWCrossEntropy(COUNTS, rho=1.0, background=True)
    assert_close(loss.class_weight, torch.tensor([1 / 3, 2 / 3, 2.0, 1.0]))
    assert 'class_weight' not in loss.state_dict()
    # row 0: logits 0 x 4, label 3 (bg): CE = ln 4, w = 1
    # row 1: logits [0, 0, 0, ln 2], label 1: CE = ln 5, w = 2/3
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, math.log(2.0)]])
    labels = torch.tensor([3, 1])
    expected = (math.log(4) + 2 / 3 * math.log(5)) / (1 + 2 / 3)
    assert_close(loss(logits, labels), torch.tensor(expected))
    with pytest.raises(ValueError, match='background=True'):
        GRWCrossEntropy(COUNTS, rho=1.0)(logits, labels)


def test_module_seg_options():
    loss = GRWCrossEntropy(
        COUNTS, rho=1.0, reduction='mean', ignore_index=255, loss_weight=2.0)
    logits = torch.cat([LOGITS, torch.tensor([[5.0, -2.0, 1.0]])])
    labels = torch.tensor([0, 2, 255])
    assert_close(loss(logits, labels), torch.tensor(2 * WSUM / 3))
    with pytest.raises(ValueError, match='reduction'):
        GRWCrossEntropy(COUNTS, rho=1.0, reduction='avg')
    with pytest.raises(ValueError, match='rho'):
        GRWCrossEntropy(COUNTS, rho=-1.0)


def test_grw_weights_in_log_space_at_large_rho():
    # r ** -rho overflows float64 for rho = 60 at LVIS-scale ratios; the
    # weights are C * softmax(-rho * log n): the rarest class gets all
    counts = [1.0, 10.0, 1e4]
    w = grw_class_weights(counts, 60.0)
    assert torch.isfinite(w).all()
    assert_close(w, torch.tensor([3.0, 0.0, 0.0]))
    # and equal the linear form where that one is finite (rho = 0.8):
    # r^-0.8 = [1, 10^-0.8, 10^-3.2] up to a common factor
    lin = torch.tensor([1.0, 10**-0.8, 10**-3.2], dtype=torch.float64)
    assert_close(grw_class_weights(counts, 0.8), (3 * lin / lin.sum()).float())
