"""Pinned behaviour of lt_mm.core.causal_norm (TDE Eq. 7-9) found by a
mutation audit."""
import math

import pytest
import torch

from lt_mm.core.causal_norm import (CausalNormClassifier,
                                    background_exempt_log_probs,
                                    causal_norm_logits, causal_weight,
                                    suggest_alpha, tde_logits)


@pytest.mark.parametrize('plain,tde', [
    ((2, 3), (2, 4)),
    ((2, 1), (2, 1)),
    ((3, ), (3, )),
])
def test_background_exempt_refuses_bad_shapes_naming_them(plain, tde):
    shape = ', '.join(str(s) for s in plain)
    with pytest.raises(ValueError, match=r'logits \(' + shape):
        background_exempt_log_probs(torch.zeros(plain), torch.zeros(tde))


def test_suggest_alpha_mask_of_another_shape_is_refused():
    feats = torch.ones(3, 4)
    d = torch.ones(4)
    with pytest.raises(
            ValueError, match=r'mask has shape \(2,\); expected '
            r'\(3,\)'):
        suggest_alpha(feats, d, 2, mask=torch.tensor([True, False]))


def test_suggest_alpha_without_samples_says_so():
    feats, d = torch.ones(3, 4), torch.ones(4)
    with pytest.raises(ValueError, match='got no samples'):
        suggest_alpha(feats, d, 2, mask=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match='got no samples'):
        suggest_alpha(torch.ones(0, 4), d, 2)


def test_tde_logits_head_direction_of_another_size_names_it():
    with pytest.raises(
            ValueError, match=r'head_direction has 3 entries; '
            r'expected D=4'):
        tde_logits(torch.ones(2, 4), torch.ones(3, 4), torch.ones(3), 1.0)


@pytest.mark.parametrize('alpha', [0.0, 1.0])
def test_classifier_predict_refuses_features_of_another_dim(alpha):
    clf = CausalNormClassifier(4, 3).eval()
    with torch.no_grad(), pytest.raises(
            ValueError, match=r'feats have D=6; expected in_channels=4'):
        clf.predict(torch.ones(2, 6), alpha=alpha)


def test_suggest_alpha_head_direction_of_another_size_names_it():
    with pytest.raises(
            ValueError, match=r'head_direction has 6 entries; '
            r'expected D=4'):
        suggest_alpha(torch.ones(3, 4), torch.ones(6), 2)


def test_background_exempt_needs_a_foreground_and_the_background():
    with pytest.raises(
            ValueError, match=r'background_exempt=True needs '
            r'num_classes >= 2'):
        CausalNormClassifier(4, 1, background_exempt=True)
    assert CausalNormClassifier(4, 2, background_exempt=True).num_classes == 2


def test_update_head_direction_refuses_features_of_another_dim():
    clf = CausalNormClassifier(4, 3)
    with pytest.raises(
            ValueError, match=r'feats have D=6; expected '
            r'in_channels=4'):
        clf.update_head_direction(torch.ones(2, 6))
    assert torch.equal(clf.head_direction, torch.zeros(4))


def test_causal_norm_logits_refuses_3d_features_naming_the_shape():
    with pytest.raises(ValueError, match=r'got shape \(2, 4, 3\)'):
        causal_norm_logits(torch.ones(2, 4, 3), torch.ones(3, 4))


def test_reference_eps_form_of_eq9_hand_example():
    # logits [0, 0, 0] (2 fg + bg last): p = 1/3 each, P_fg = 2/3;
    # tde [ln 2, 0, ln 2]: q = [2/5, 1/5, 2/5], Q_fg = 3/5.
    # Eq. 9: final_c = P_fg q_c / Q_fg = [4/9, 2/9], final_bg = 1/3.
    # eps = 1e-10 (reference) changes this by ~1e-10 only.
    logits = torch.zeros(1, 3, dtype=torch.float64)
    tde = torch.tensor([[math.log(2.0), 0.0, math.log(2.0)]],
                       dtype=torch.float64)
    want = torch.tensor([[4 / 9, 2 / 9, 3 / 9]], dtype=torch.float64).log()
    for eps in (0.0, 1e-10):
        out = background_exempt_log_probs(logits, tde, eps=eps)
        torch.testing.assert_close(out, want, atol=1e-8, rtol=0)
    # the autograd path (training / calibration) gives the same numbers
    grad_logits = logits.clone().requires_grad_()
    out = background_exempt_log_probs(grad_logits, tde)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=0)
    out[0, 0].backward()
    # d log final_0 / d z_bg = -p_bg = -1/3 (through log P_fg only)
    torch.testing.assert_close(grad_logits.grad[0, 2],
                               torch.tensor(-1 / 3, dtype=torch.float64))
    # a large eps visibly smooths: (q_c + eps) / (Q_fg + eps), renormalised
    # eps = 0.1: fg ∝ (2/3) (0.5, 0.3) / 0.7, bg 1/3 -> [10/21, 6/21, 7/21]
    # / (23/21) = [10/23, 6/23, 7/23]
    out = background_exempt_log_probs(logits, tde, eps=0.1)
    want = torch.tensor([[10 / 23, 6 / 23, 7 / 23]], dtype=torch.float64)
    torch.testing.assert_close(out.exp(), want, atol=1e-12, rtol=0)


def test_classifier_init_bound_is_one_over_sqrt_d():
    # reference init: weight ~ U(+-1/sqrt(D)); D = 100 -> |w| <= 0.1
    torch.manual_seed(0)
    w = CausalNormClassifier(100, 50).weight
    assert w.abs().max() <= 0.1 and w.abs().max() > 0.099


def test_causal_weight_of_a_conv_weight_hand_example():
    # row [3, 4 | 0, 2], K = 2, gamma = 0: chunks / their norms 5 and 2
    # -> [0.6, 0.8, 0, 1]; gamma = 1: / 6 and / 3 -> [0.5, 2/3, 0, 2/3]
    w = torch.tensor([[3.0, 4.0, 0.0, 2.0]])
    want = torch.tensor([[0.6, 0.8, 0.0, 1.0]])
    torch.testing.assert_close(causal_weight(w, 2, 0.0), want)
    torch.testing.assert_close(
        causal_weight(w[:, :, None, None], 2, 0.0), want)
    torch.testing.assert_close(
        causal_weight(w, 2, 1.0), torch.tensor([[0.5, 2 / 3, 0.0, 2 / 3]]))


def test_exact_eq9_when_the_tde_foreground_underflows():
    # tde [-1000, -1000, 0]: q_fg underflows to 0, but q_c / Q_fg = 1/2
    # exactly; logits [0, 0, 0]: P_fg = 2/3 -> final = [1/3, 1/3, 1/3].
    # The default eps = 0 is the log-space path, not log(q_c + 0) = -inf.
    out = background_exempt_log_probs(
        torch.zeros(1, 3), torch.tensor([[-1000.0, -1000.0, 0.0]]))
    torch.testing.assert_close(out.exp(), torch.full((1, 3), 1 / 3))
