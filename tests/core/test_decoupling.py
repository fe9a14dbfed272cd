"""Tests for lt_mm.core.decoupling (Decoupling Eq. 3-4, Sec. 4)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from lt_mm.core.decoupling import (NCM_BUFFERS, ClassMeansMixin,
                                   CosineClassifier, LearnableWeightScaling,
                                   class_centroids, ncm_logits,
                                   reinit_classifier, tau_norm_logits,
                                   tau_normalize)

# rows w_0 = [3, 4] (norm 5), w_1 = [0, 2] (norm 2)
W = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
X = torch.tensor([[1.0, 1.0]])


def test_tau_normalize_hand():
    assert_close(tau_normalize(W, 0.0), W)
    assert_close(tau_normalize(W, 1.0), torch.tensor([[0.6, 0.8], [0., 1.]]))
    # tau = 0.5: divide by sqrt(5) and sqrt(2)
    assert_close(
        tau_normalize(W, 0.5),
        torch.tensor([[3 / math.sqrt(5), 4 / math.sqrt(5)], [0.,
                                                             math.sqrt(2)]]))
    # conv weight (C, D, 1, 1): same per-row rule
    assert_close(
        tau_normalize(W.reshape(2, 2, 1, 1), 1.0).flatten(1),
        torch.tensor([[0.6, 0.8], [0., 1.]]))
    with pytest.raises(ValueError, match='tau'):
        tau_normalize(W, -0.5)


def test_tau_norm_logits_hand():
    # tau = 0: x . w = [3 + 4, 0 + 2] = [7, 2] (plain dot product, no bias)
    assert_close(tau_norm_logits(X, W, 0.0), torch.tensor([[7.0, 2.0]]))
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        fc.weight.copy_(W)
    assert_close(tau_norm_logits(X, W, 0.0), fc(X) - fc.bias)
    # tau = 1: unit-norm rows -> [1.4, 1.0]
    assert_close(tau_norm_logits(X, W, 1.0), torch.tensor([[1.4, 1.0]]))
    # tau = 0.5: [7 / sqrt5, 2 / sqrt2] = [3.130495, 1.414214]
    assert_close(
        tau_norm_logits(X, W, 0.5),
        torch.tensor([[7 / math.sqrt(5), math.sqrt(2)]]))


def test_tau_norm_logits_spatial_conv_weight():
    feats = torch.tensor([[1.0, 1.0], [2.0, 0.0]]).t().reshape(1, 2, 1, 2)
    out = tau_norm_logits(feats, W.reshape(2, 2, 1, 1), 1.0)
    assert out.shape == (1, 2, 1, 2)
    # pixel 0 = [1, 1] -> [1.4, 1.0]; pixel 1 = [2, 0] -> [1.2, 0]
    assert_close(out[0, :, 0, :].t(), torch.tensor([[1.4, 1.0], [1.2, 0.]]))


def test_lws_equals_frozen_classifier_at_init():
    torch.manual_seed(0)
    fc = nn.Linear(3, 4).requires_grad_(False)
    lws = LearnableWeightScaling(4)
    x = torch.randn(5, 3)
    assert torch.equal(lws(fc(x)), fc(x))
    det = LearnableWeightScaling(4, scale_bias=False)
    wx = F.linear(x, fc.weight)
    assert_close(det(wx, fc.bias), fc(x))
    # only the scales receive gradients
    lws(fc(x)).sum().backward()
    assert fc.weight.grad is None
    assert lws.scales.grad is not None


def test_lws_hand_example():
    # W x = [1, 4], b = [1, -2], scales f = [2, 0.5]
    wx = torch.tensor([[1.0, 4.0]])
    b = torch.tensor([1.0, -2.0])
    lws = LearnableWeightScaling(2)
    with torch.no_grad():
        lws.scales.copy_(torch.tensor([2.0, 0.5]))
    # classification: (W x + b) * f = [2 * 2, 2 * 0.5] = [4, 1]
    assert_close(lws(wx + b), torch.tensor([[4.0, 1.0]]))
    assert_close(lws(wx, b), torch.tensor([[4.0, 1.0]]))
    # detection: (W x) * f + b = [2 + 1, 2 - 2] = [3, 0]
    det = LearnableWeightScaling(2, scale_bias=False)
    with torch.no_grad():
        det.scales.copy_(torch.tensor([2.0, 0.5]))
    assert_close(det(wx, b), torch.tensor([[3.0, 0.0]]))
    # per-pixel logits (N, C, H, W)
    maps = wx.reshape(1, 2, 1, 1).expand(1, 2, 2, 3)
    out = lws(maps)
    assert_close(
        out,
        torch.tensor([2.0, 2.0]).reshape(1, 2, 1, 1).expand(1, 2, 2, 3))
    with pytest.raises(ValueError, match='classes'):
        lws(torch.zeros(1, 3))


def test_reinit_classifier():
    fc = nn.Linear(16, 3)
    conv = nn.Conv2d(16, 3, 1)
    for layer in (fc, conv):
        with torch.no_grad():
            layer.weight.fill_(5.0)
            layer.bias.fill_(5.0)
        assert reinit_classifier(layer) is layer
        # PyTorch default init: |w| <= 1 / sqrt(fan_in) = 0.25
        assert layer.weight.abs().max() <= 0.25
        assert layer.bias.abs().max() <= 0.25
    with pytest.raises(ValueError, match='Linear'):
        reinit_classifier(nn.ReLU())


# Toy NCM set: class 0 = [2, 0], [4, 0]; class 1 = [0, 3], [0, 1]
FEATS = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
LABELS = torch.tensor([0, 0, 1, 1])
MU = torch.tensor([1.5, 1.0])  # global mean
# cl2n: centred samples [.5, -1], [2.5, -1], [-1.5, 2], [-1.5, 0]
# with norms sqrt(1.25), sqrt(7.25), 2.5, 1.5
C0_CL2N = (torch.tensor([0.5, -1.0]) / math.sqrt(1.25) +
           torch.tensor([2.5, -1.0]) / math.sqrt(7.25)) / 2
# = ([.447214, -.894427] + [.928477, -.371391]) / 2 = [.687845, -.632909]
C1_CL2N = torch.tensor([-0.8, 0.4])  # ([-.6, .8] + [-1, 0]) / 2


def test_class_centroids_hand():
    c, mu = class_centroids(FEATS, LABELS, 2, feat_type='un')
    assert_close(mu, MU)
    assert_close(c, torch.tensor([[3.0, 0.0], [0.0, 2.0]]))
    c, _ = class_centroids(FEATS, LABELS, 2, feat_type='l2n')
    assert_close(c, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    c, mu = class_centroids(FEATS, LABELS, 2, feat_type='cl2n')
    assert_close(mu, MU)
    assert_close(c, torch.stack([C0_CL2N, C1_CL2N]))
    assert_close(c[0], torch.tensor([0.687845, -0.632909]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r'\[2\]'):
        class_centroids(FEATS, LABELS, 3)


def test_ncm_logits_hand():
    x = torch.tensor([[3.0, 1.0]])
    # 'un': centroids [3, 0], [0, 2] -> -(0 + 1) = -1, -(9 + 1) = -10
    c, mu = class_centroids(FEATS, LABELS, 2, feat_type='un')
    assert_close(
        ncm_logits(x, c, feat_type='un'), torch.tensor([[-1.0, -10.0]]))
    # 'cos' on raw features: 3 / sqrt10, 1 / sqrt10
    assert_close(
        ncm_logits(x, c, feat_type='un', dist='cos'),
        torch.tensor([[3.0, 1.0]]) / math.sqrt(10))
    # 'l2n': unit x_hat, unit centroids -> ||x_hat - c||^2 = 2 - 2 x_hat.c
    #   = [2 - 6 / sqrt10, 2 - 2 / sqrt10] = [0.102633, 1.367544]
    c, _ = class_centroids(FEATS, LABELS, 2, feat_type='l2n')
    assert_close(
        ncm_logits(x, c, feat_type='l2n'),
        -torch.tensor([[2 - 6 / math.sqrt(10), 2 - 2 / math.sqrt(10)]]))
    # 'cl2n': x - mu = [1.5, 0] -> [1, 0]
    #   to c1 = [-.8, .4]: 1.8^2 + .4^2 = 3.4
    #   to c0: (1 - .687845)^2 + .632909^2
    c, mu = class_centroids(FEATS, LABELS, 2)
    d0 = (1 - C0_CL2N[0])**2 + C0_CL2N[1]**2
    out = ncm_logits(x, c, mu)
    assert_close(out, torch.stack([-d0, torch.tensor(-3.4)])[None])
    with pytest.raises(ValueError, match='global_mean'):
        ncm_logits(x, c, None, feat_type='cl2n')


def test_ncm_spatial_and_ignore():
    # per-pixel features with an ignored pixel that must not count
    fmap = torch.cat([FEATS, torch.tensor([[50.0, 50.0]])]).t()
    fmap = fmap.reshape(1, 2, 1, 5)
    labels = torch.tensor([[[0, 0, 1, 1, 255]]])
    c, mu = class_centroids(fmap, labels, 2, ignore_index=255)
    assert_close(mu, MU)
    assert_close(c, torch.stack([C0_CL2N, C1_CL2N]))
    out = ncm_logits(fmap, c, mu)
    assert out.shape == (1, 2, 1, 5)
    flat = ncm_logits(fmap[0, :, 0].t(), c, mu)
    assert_close(out[0, :, 0].t(), flat)


def test_cosine_classifier():
    m = CosineClassifier(2, 2, scale=16.0)
    with torch.no_grad():
        m.weight.copy_(W)
    # cos([1,1],[3,4]) = 7 / (5 sqrt2) = 0.989949; cos([1,1],[0,2]) = 1/sqrt2
    expected = 16 * torch.tensor([[7 / (5 * math.sqrt(2)), 1 / math.sqrt(2)]])
    assert_close(m(X), expected)
    assert_close(m(5 * X), expected)
    out = m(X.reshape(1, 2, 1, 1).expand(2, 2, 3, 1))
    assert_close(out, expected.reshape(1, 2, 1, 1).expand(2, 2, 3, 1))
    assert 'scale' not in dict(m.named_parameters())
    ml = CosineClassifier(2, 2, scale=20.0, learn_scale=True)
    assert isinstance(ml.scale, nn.Parameter)
    assert ml.scale.item() == 20.0
    ml(X).sum().backward()
    assert ml.scale.grad is not None
    with pytest.raises(ValueError, match='scale'):
        CosineClassifier(2, 2, scale=0.0)


# ------------------------------------------ fast paths (issue #13)
def test_tau_norm_spatial_is_a_1x1_convolution():
    torch.manual_seed(0)
    feats = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    weight = torch.randn(3, 5, dtype=torch.float64)
    # literal per-pixel sum: y_c(p) = sum_d w~_cd x_d(p)
    ref = torch.einsum('ndhw,cd->nchw', feats, tau_normalize(weight, 0.5))
    out = tau_norm_logits(feats, weight.reshape(3, 5, 1, 1), 0.5)
    assert_close(out, ref)
    assert out.is_contiguous()


def test_cosine_classifier_cache_equals_uncached_and_invalidates():
    torch.manual_seed(0)
    m = CosineClassifier(4, 3, scale=2.0, learn_scale=True)
    x = torch.randn(5, 4)

    def manual():
        w = m.weight / m.weight.norm(dim=1, keepdim=True)
        xn = x / x.norm(dim=1, keepdim=True)
        return m.scale.detach() * xn @ w.detach().t()

    m.eval()
    with torch.no_grad():
        assert_close(m(x), manual())
        assert len(m._weight_cache) == 1
        assert_close(m(x), manual())  # served from the cache
    # an optimizer step on weight and scale: recomputed
    m.train()
    assert len(m._weight_cache) == 0
    m(x).sum().backward()
    torch.optim.SGD(m.parameters(), lr=1.0).step()
    m.eval()
    with torch.no_grad():
        m(x)
        m.scale.add_(1.0)  # in-place edit of the scale only
        assert_close(m(x), manual())
        m.load_state_dict({
            'weight': torch.eye(3, 4),
            'scale': torch.tensor(3.0)
        })
        # rows e_0..e_2: y_c = 3 * x_c / ||x||
        assert_close(m(x), 3 * x[:, :3] / x.norm(dim=1, keepdim=True))


class _Means(ClassMeansMixin, nn.Module):

    def __init__(self, feat_type='un', dist='l2'):
        super().__init__()
        self.init_class_means(2, 2, feat_type, dist)


def test_class_means_mixin_buffers_error_and_scores():
    m = _Means()
    assert [n for n, _ in m.named_buffers()] == list(NCM_BUFFERS)
    assert not m.ready
    with pytest.raises(
            RuntimeError,
            match=r"_Means: the class means are "
            r"not computed.*NCMCentroidHook.*the model over"):
        m.ncm_scores(torch.zeros(1, 2))
    # centroids c0 = (0, 0), c1 = (3, 4); x = (3, 0):
    # -||x - c0||^2 = -9, -||x - c1||^2 = -(0 + 16) = -16
    m.store_class_means(
        torch.tensor([[0., 0.], [3., 4.]], dtype=torch.float64),
        torch.tensor([1.5, 2.0]))
    assert m.ready and m.centroids.dtype == torch.float32
    assert_close(
        m.ncm_scores(torch.tensor([[3., 0.]])), torch.tensor([[-9., -16.]]))
    # the buffers travel in the state dict
    m2 = _Means()
    m2.load_state_dict(m.state_dict())
    assert m2.ready and torch.equal(m2.global_mean, torch.tensor([1.5, 2.]))


def test_class_means_mixin_refuses_bad_choices():
    with pytest.raises(ValueError, match='feat_type'):
        _Means(feat_type='l3n')
    with pytest.raises(ValueError, match='dist'):
        _Means(dist='l1')


def test_cosine_classifier_zero_feature_gives_no_nan_in_float16():
    clf = CosineClassifier(4, 3).half()
    feats = torch.zeros(2, 4, dtype=torch.float16)
    for mode in (clf.train, clf.eval):
        mode()
        out = clf(feats)
        assert not out.isnan().any() and (out == 0).all()
    assert not tau_norm_logits(feats, torch.zeros(3, 4, dtype=torch.float16),
                               1.0).isnan().any()


def test_ncm_l2_scores_in_float32_under_autocast_and_half():
    """-||x - c||^2 as ||x||^2 + ||c||^2 - 2 x.c cancels: raw features
    with x.c in the hundreds lose the ranking in bfloat16 / float16."""
    from lt_mm.core.decoupling import ncm_logits
    g = torch.Generator().manual_seed(0)
    c = 20.0 + torch.randn(5, 64, generator=g)  # close, large centroids
    x = c[torch.arange(40) % 5] + 0.3 * torch.randn(40, 64, generator=g)
    ref = ncm_logits(x.double(), c.double(), feat_type='un')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        auto = ncm_logits(x, c, feat_type='un')
    half = ncm_logits(x.half(), c.half(), feat_type='un')
    assert auto.dtype == half.dtype == torch.float32
    assert torch.equal(auto.argmax(1), ref.argmax(1))
    torch.testing.assert_close(auto.double(), ref, rtol=0, atol=1e-2)
    # half inputs: only the rounding of x and c to half remains
    torch.testing.assert_close(
        half.double(),
        ncm_logits(x.half().double(), c.half().double(), feat_type='un'),
        rtol=0,
        atol=1e-2)
