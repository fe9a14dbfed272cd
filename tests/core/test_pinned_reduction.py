"""Pinned bad inputs of lt_mm.core.reduction found by a mutation audit."""
import pytest
import torch

from lt_mm.core.reduction import (reduced_cross_entropy, toolbox_losses,
                                  with_defaults)


def test_reduced_cross_entropy_refuses_1d_logits_naming_the_shape():
    with pytest.raises(
            ValueError,
            match=r'logits must be \(N, C\) or '
            r'\(N, C, H, W\), got shape \(3,\)'):
        reduced_cross_entropy(torch.zeros(3), torch.tensor(0))


def test_toolbox_loss_refuses_use_sigmoid_true_and_takes_false():
    grw = toolbox_losses('cls', __name__)['GRWLoss']
    with pytest.raises(
            ValueError,
            match=r'GRWLoss: use_sigmoid=True; this '
            'is a softmax cross-entropy'):
        grw(counts=[2, 1], use_sigmoid=True)
    assert grw(counts=[2, 1], use_sigmoid=False).rho == 1.2


def _init(self, counts, rho=1.0, scale=2.0, *, name='x'):
    return counts, rho, scale, name


def test_with_defaults_keeps_the_other_positional_defaults():
    # only the last positional default changes; rho keeps 1.0
    fn = with_defaults(_init, scale=5.0)
    assert fn.__defaults__ == (1.0, 5.0)
    assert fn(None, [1]) == ([1], 1.0, 5.0, 'x')
    # an earlier one: the later default (scale=2.0) is kept, not missing
    fn = with_defaults(_init, rho=0.3, name='y')
    assert fn.__defaults__ == (0.3, 2.0)
    assert fn(None, [1]) == ([1], 0.3, 2.0, 'y')
    # counts gets a default too: every later one already has one
    assert with_defaults(_init, counts=None).__defaults__ == (None, 1.0, 2.0)
