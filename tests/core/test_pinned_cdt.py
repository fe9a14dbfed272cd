"""Pinned bad inputs of the post-hoc rules of lt_mm.core.cdt (CDT Eq. 5,
logit adjustment), found by a mutation audit."""
import math

import pytest
import torch

from lt_mm.core.cdt import (CDTCrossEntropy, apply_posthoc, cdt_logits,
                            logit_adjust, nc_tau_adjust, parse_posthoc)


def test_parse_posthoc_refuses_a_non_dict_or_a_missing_type():
    with pytest.raises(
            ValueError, match=r"head: posthoc='nc_tau' must be a dict"):
        parse_posthoc('nc_tau', 'head')
    with pytest.raises(
            ValueError, match=r"head: posthoc=\{'tau': 1.0\} must be a dict"):
        parse_posthoc(dict(tau=1.0), 'head')
    assert parse_posthoc(None, 'head') is None


def test_apply_posthoc_rule_without_counts_names_the_rule():
    with pytest.raises(
            ValueError, match=r"posthoc 'nc_tau' needs class "
            'counts'):
        apply_posthoc(None, torch.zeros(2, 3), rule='nc_tau')


@pytest.mark.parametrize('fn', [nc_tau_adjust, logit_adjust])
def test_posthoc_rules_refuse_1d_logits_naming_the_shape(fn):
    with pytest.raises(ValueError, match=r'got shape \(3,\)'):
        fn(torch.ones(3), [1, 2, 3], 1.0)


def test_cdt_logits_refuse_1d_logits_naming_the_shape():
    with pytest.raises(ValueError, match=r'got shape \(3,\)'):
        cdt_logits(torch.ones(3), torch.ones(3))


def test_cdt_loss_repr_names_gamma_and_start_epoch():
    text = repr(CDTCrossEntropy([4, 1], 0.5, start_epoch=3))
    assert 'gamma=0.5, start_epoch=3, ' in text


def test_apply_posthoc_explicit_rule_tau_defaults_to_one():
    # logit adjustment z_c - tau * log N_c with counts [1, e]:
    # tau = 1 (default) -> [0, -1]; tau = 2 -> [0, -2]
    z = torch.zeros(1, 2)
    counts = [1.0, math.e]
    torch.testing.assert_close(
        apply_posthoc(None, z, rule='logit_adjust', counts=counts),
        torch.tensor([[0.0, -1.0]]))
    torch.testing.assert_close(
        apply_posthoc(None, z, rule='logit_adjust', tau=2.0, counts=counts),
        torch.tensor([[0.0, -2.0]]))
    assert apply_posthoc(None, z) is z  # no rule: unchanged
