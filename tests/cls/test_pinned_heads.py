"""Pinned behaviour of the lt_mm mmpretrain heads found unpinned by a
mutation audit: documented defaults, the sigma input of DisAlign per
sample, the earlier ``prior_counts`` checkpoint key, the eval-mode weight
cache under autograd and the tau-norm shape check (hand-computed on tiny
tensors)."""
import math

import pytest
import torch
from mmpretrain.registry import MODELS
from torch.testing import assert_close

import lt_mm.cls  # noqa: F401


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def _disalign(type_, **kw):
    head = MODELS.build(dict(type=type_, num_classes=2, in_channels=2, **kw))
    with torch.no_grad():
        head.calibration.confidence_layer.weight.copy_(
            torch.tensor([[1.0, 0.0]]))
        head.calibration.confidence_layer.bias.zero_()
        head.calibration.logit_scale.fill_(1.0)
        head.calibration.logit_bias.copy_(torch.tensor([2.0, 0.0]))
    return head


# two samples: the sigma input must be computed per sample (dim 1)
X2 = torch.tensor([[3.0, 4.0], [0.0, 2.0]])


def test_disalign_linear_sigma_takes_the_raw_feature_by_default():
    head = _disalign('DisAlignLinearClsHead')
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.fill_(1.0)
    # z = [1, 1] for both samples; alpha = 1, beta = [2, 0]:
    # z + sigma * beta = [1 + 2 sigma, 1], sigma = sigmoid(x_0) on the RAW
    # feature: sigmoid(3) and sigmoid(0) = 0.5
    expected = torch.tensor([[1 + 2 * _sig(3.0), 1.0], [2.0, 1.0]])
    head.eval()
    with torch.no_grad():
        assert_close(head((X2, )), expected)


def test_disalign_linear_normed_feat_is_per_sample():
    head = _disalign('DisAlignLinearClsHead', sigma_input='normed_feat')
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.fill_(1.0)
    # rows normalised: [0.6, 0.8] and [0, 1] -> sigma = sigmoid(0.6), 0.5
    # (normalising over the batch instead would give sigmoid(1))
    expected = torch.tensor([[1 + 2 * _sig(0.6), 1.0], [2.0, 1.0]])
    head.eval()
    with torch.no_grad():
        assert_close(head((X2, )), expected)


def test_disalign_cosine_sigma_takes_the_normed_feature_by_default():
    head = _disalign('DisAlignCosineClsHead', scale=2.0)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # cosine logits 2 * x / ||x||: [1.2, 1.6] and [0, 2];
    # sigma on the normalised feature: sigmoid(0.6) and sigmoid(0) = 0.5
    s = _sig(0.6)
    expected = torch.tensor([[1.2 + 2 * s, 1.6], [0.0 + 1.0, 2.0]])
    head.eval()
    with torch.no_grad():
        assert_close(head((X2, )), expected)


def test_cosine_head_default_scale_16_not_learned():
    head = MODELS.build(
        dict(type='CosineClsHead', num_classes=2, in_channels=2))
    assert [n for n, _ in head.named_parameters()] == ['fc.weight']
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 5.0]]))
    head.eval()
    # 16 * cos: x = [3, 4] -> 16 * [0.6, 0.8] = [9.6, 12.8]
    with torch.no_grad():
        out = head((torch.tensor([[3.0, 4.0]]), ))
    assert_close(out, torch.tensor([[9.6, 12.8]]))


def test_checkpoint_with_prior_counts_loads_as_posthoc_counts():
    cfg = dict(
        type='LTLinearClsHead',
        num_classes=2,
        in_channels=2,
        posthoc=dict(type='nc_tau', tau=1.0, counts=[1, 1]))
    head = MODELS.build(cfg)
    sd = head.state_dict()
    sd['prior_counts'] = torch.tensor([4.0, 2.0])
    del sd['posthoc.counts']
    head.load_state_dict(sd)
    assert_close(head.posthoc.counts.float(), torch.tensor([4.0, 2.0]))
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.copy_(torch.tensor([8.0, 8.0]))
    head.eval()
    # nc_tau: z / N ** 1 = [8 / 4, 8 / 2] = [2, 4]
    with torch.no_grad():
        out = head((torch.zeros(1, 2), ))
    assert_close(out, torch.tensor([[2.0, 4.0]]))


def test_taunorm_eval_with_autograd_backpropagates_twice():
    # eval mode with gradients on: the weights must not come from the
    # cache (a cached tensor's graph is freed by the first backward)
    head = MODELS.build(
        dict(type='TauNormClsHead', num_classes=2, in_channels=2, tau=1.0))
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    head.eval()
    x = torch.tensor([[1.0, 1.0]])
    for _ in range(2):
        out = head((x, ))
        # tau = 1: [7 / 5, 2 / 2]
        assert_close(out.detach(), torch.tensor([[1.4, 1.0]]))
        out.sum().backward()
    assert head.fc.weight.grad is not None


def test_taunorm_cached_eval_refuses_a_wrong_feature_shape():
    head = MODELS.build(
        dict(type='TauNormClsHead', num_classes=2, in_channels=2, tau=1.0))
    head.eval()
    with torch.no_grad():
        with pytest.raises(ValueError, match=r'\(1, 2, 1\)'):
            head.test_logits(torch.zeros(1, 2, 1))
        with pytest.raises(ValueError, match=r'\(1, 3\)'):
            head.test_logits(torch.zeros(1, 3))


def test_taunorm_head_default_tau_is_0_7():
    head = MODELS.build(
        dict(type='TauNormClsHead', num_classes=2, in_channels=2))
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    head.eval()
    # w_c / ||w_c|| ** 0.7 with norms 5 and 2, x = [1, 1]:
    # [7 / 5 ** 0.7, 2 / 2 ** 0.7]
    expected = torch.tensor([[7 / 5**0.7, 2 / 2**0.7]])
    with torch.no_grad():
        assert_close(head((torch.ones(1, 2), )), expected)


def test_crt_eval_forward_does_not_mark_the_classifier_retrained():
    head = MODELS.build(dict(type='CRTClsHead', num_classes=2, in_channels=2))
    head.eval()
    with torch.no_grad():
        head((torch.ones(1, 2), ))
    assert int(head.crt_retrained) == 0  # only a training step marks it
    head.train()
    head((torch.ones(1, 2), ))
    assert int(head.crt_retrained) == 1
