"""Pinned behaviour of lt_mm.core.grw (DisAlign Eq. 11) found by a
mutation audit."""
import pytest
import torch

from lt_mm.core.grw import GRWCrossEntropy, grw_cross_entropy


def test_grw_cross_entropy_without_class_weight_is_refused():
    with pytest.raises(ValueError, match='needs class_weight'):
        grw_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), None)


def test_grw_loss_repr_names_rho():
    assert 'rho=1.2, ' in repr(GRWCrossEntropy([6, 3, 1], 1.2))
