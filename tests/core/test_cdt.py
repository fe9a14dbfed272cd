"""Tests for lt_mm.core.cdt (CDT Eq. 3 and Eq. 5, logit adjustment)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from lt_mm.core.cdt import (CDTCrossEntropy, PosthocAdjust, PosthocMixin,
                            build_posthoc, cdt_logits, cdt_temperatures,
                            logit_adjust, nc_tau_adjust)

COUNTS = [100, 25, 4]


def test_temperatures_hand():
    # N_max / N_c = [1, 4, 25]; ** 0.5 -> [1, 2, 5]
    a = cdt_temperatures(COUNTS, 0.5)
    assert a.dtype == torch.float32
    assert_close(a, torch.tensor([1.0, 2.0, 5.0]))
    # gamma = 0 -> plain ERM
    assert_close(cdt_temperatures(COUNTS, 0.0), torch.ones(3))
    # gamma = 1 -> [1, 4, 25]
    assert_close(cdt_temperatures(COUNTS, 1.0), torch.tensor([1., 4., 25.]))
    with pytest.raises(ValueError, match='gamma'):
        cdt_temperatures(COUNTS, -0.1)
    with pytest.raises(ValueError, match='zero count'):
        cdt_temperatures([10, 0, 1], 0.5)


def test_cdt_logits_hand():
    a = cdt_temperatures(COUNTS, 0.5)  # [1, 2, 5]
    z = torch.tensor([[2.0, 4.0, 10.0]])
    assert_close(cdt_logits(z, a), torch.tensor([[2.0, 2.0, 2.0]]))
    # detection: last column = background, temperature 1
    zb = torch.tensor([[2.0, 4.0, 10.0, 7.0]])
    assert_close(
        cdt_logits(zb, a, background=True), torch.tensor([[2.0, 2.0, 2.0,
                                                           7.0]]))
    with pytest.raises(ValueError, match='background'):
        cdt_logits(zb, a)
    # per-pixel (N, C, H, W)
    zm = z.reshape(1, 3, 1, 1).expand(2, 3, 2, 2)
    assert_close(cdt_logits(zm, a), torch.full((2, 3, 2, 2), 2.0))


def test_cdt_loss_and_start_epoch():
    z = torch.tensor([[2.0, 4.0, 10.0]])
    y = torch.tensor([1])
    loss = CDTCrossEntropy(COUNTS, 0.5, start_epoch=2)
    assert 'temperatures' not in loss.state_dict()
    # epochs 0, 1: a_c = 1 -> plain CE = logsumexp([2, 4, 10]) - 4
    plain = torch.logsumexp(z[0], 0) - 4.0
    for epoch in (0, 1):
        loss.epoch = epoch
        assert_close(loss(z, y), plain)
        assert_close(loss.current_temperatures(), torch.ones(3))
    # from epoch 2: scaled logits [2, 2, 2] -> CE = ln 3
    loss.epoch = 2
    assert_close(loss(z, y), torch.tensor(math.log(3.0)))
    # start_epoch = 0: always on
    assert_close(CDTCrossEntropy(COUNTS, 0.5)(z, y), torch.tensor(math.log(3)))


def test_cdt_loss_ignore_background_and_pixels():
    # rows: scaled logits [2, 2, 2, 7] label 3 (bg, temperature 1),
    #       and an ignored row
    loss = CDTCrossEntropy(COUNTS, 0.5, background=True, ignore_index=255)
    z = torch.tensor([[2.0, 4.0, 10.0, 7.0], [9.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([3, 255])
    expected = torch.logsumexp(torch.tensor([2., 2., 2., 7.]), 0) - 7.0
    assert_close(loss(z, y), expected)
    # all ignored -> 0, not NaN
    assert loss(z, torch.tensor([255, 255])).item() == 0.0
    # per-pixel logits match F.cross_entropy on the scaled maps
    torch.manual_seed(0)
    zm = torch.randn(2, 3, 4, 4)
    ym = torch.randint(0, 3, (2, 4, 4))
    ym[0, 0, 0] = 255
    pix = CDTCrossEntropy(COUNTS, 0.5, ignore_index=255)
    a = torch.tensor([1.0, 2.0, 5.0]).reshape(1, 3, 1, 1)
    assert_close(pix(zm, ym), F.cross_entropy(zm / a, ym, ignore_index=255))


def test_nc_tau_and_logit_adjust_differ():
    # counts [100, 1], tau = 0.5, negative logits z = [-1, -2]
    counts = [100, 1]
    z = torch.tensor([[-1.0, -2.0]])
    # CDT Eq. 5: z / N^tau = [-1 / 10, -2 / 1] = [-0.1, -2] -> argmax 0
    nc = nc_tau_adjust(z, counts, 0.5)
    assert_close(nc, torch.tensor([[-0.1, -2.0]]))
    # logit adjustment: z - tau ln N = [-1 - 0.5 ln 100, -2]
    #   = [-3.302585, -2] -> argmax 1
    la = logit_adjust(z, counts, 0.5)
    assert_close(la, torch.tensor([[-1 - 0.5 * math.log(100), -2.0]]))
    assert nc.argmax(1).item() == 0
    assert la.argmax(1).item() == 1
    # tau = 0 leaves both unchanged
    assert_close(nc_tau_adjust(z, counts, 0.0), z)
    assert_close(logit_adjust(z, counts, 0.0), z)


def test_post_hoc_background_and_pixels():
    counts = [100, 1]
    z = torch.tensor([[-1.0, -2.0, 5.0]])
    nc = nc_tau_adjust(z, counts, 0.5, background=True)
    assert_close(nc, torch.tensor([[-0.1, -2.0, 5.0]]))
    la = logit_adjust(z, counts, 0.5, background=True)
    assert_close(la, torch.tensor([[-1 - 0.5 * math.log(100), -2.0, 5.0]]))
    with pytest.raises(ValueError, match='num_classes'):
        nc_tau_adjust(z, counts, 0.5)
    # per-pixel: z = [4, 4] everywhere, counts [4, 1], tau = 1
    #   nc: [1, 4]; la: [4 - ln 4, 4]
    zm = torch.full((1, 2, 2, 2), 4.0)
    out = nc_tau_adjust(zm, [4, 1], 1.0)
    assert_close(out[0, :, 1, 1], torch.tensor([1.0, 4.0]))
    out = logit_adjust(zm, [4, 1], 1.0)
    assert_close(out[0, :, 0, 1], torch.tensor([4 - math.log(4), 4.0]))
    with pytest.raises(ValueError, match='tau'):
        logit_adjust(zm, [4, 1], -1.0)


def test_cdt_gradient_is_scaled_by_inverse_temperature():
    # Direction and placement of Eq. 3: the loss sees z_c / a_c, so
    # dL/dz_c = (softmax(z / a)_c - y_c) / a_c: the tail logits (a_c > 1)
    # get smaller gradients, in both directions. counts [4, 1], gamma 1
    # -> a = [1, 4]; z = [2, 4], y = 1 -> z / a = [2, 1],
    # softmax = [e / (e + 1), 1 / (e + 1)] = [0.7310586, 0.2689414]
    # grad = [0.7310586 / 1, (0.2689414 - 1) / 4] = [0.7310586, -0.1827646]
    z = torch.tensor([[2.0, 4.0]], requires_grad=True)
    loss = CDTCrossEntropy([4, 1], 1.0)
    assert_close(loss.temperatures, torch.tensor([1.0, 4.0]))
    loss(z, torch.tensor([1])).backward()
    e = math.e
    assert_close(z.grad, torch.tensor([[e / (e + 1), (1 / (e + 1) - 1) / 4]]))
    assert_close(z.grad, torch.tensor([[0.7310586, -0.1827646]]))
    # plain CE (gamma = 0) on the same logits: softmax([2, 4]) - [0, 1]
    # = [0.1192029, -0.1192029]
    z0 = torch.tensor([[2.0, 4.0]], requires_grad=True)
    CDTCrossEntropy([4, 1], 0.0)(z0, torch.tensor([1])).backward()
    assert_close(z0.grad, torch.tensor([[0.1192029, -0.1192029]]))


def test_posthoc_adjust_module_hand_computed_and_checkpoint_counts():
    counts = [100.0, 10.0, 1.0]
    m = PosthocAdjust(counts, 'logit_adjust', tau=1.0, background=True)
    z = torch.tensor([[1.0, 1.0, 1.0, 7.0]])
    # z_c - log N_c on the 3 foreground columns; background 7 untouched
    expected = torch.tensor(
        [[1.0 - math.log(100.0), 1.0 - math.log(10.0), 1.0, 7.0]])
    torch.testing.assert_close(m(z), expected)
    # nc_tau override: z / N ** 0.5 = [0.1, 1/sqrt(10), 1]
    torch.testing.assert_close(
        m(z, rule='nc_tau', tau=0.5), torch.tensor([[0.1, 10**-0.5, 1.0,
                                                     7.0]]))
    # a checkpoint without counts keeps the configured ones ...
    fresh = PosthocAdjust([1.0, 2.0, 3.0], 'nc_tau')
    fresh.load_state_dict({}, strict=True)
    assert fresh.counts.tolist() == [1.0, 2.0, 3.0]
    # ... and a checkpoint's counts win (the inference statistics)
    fresh.load_state_dict({'counts': torch.tensor([4.0, 5.0, 6.0])})
    assert fresh.counts.tolist() == [4.0, 5.0, 6.0]


def test_build_posthoc_names_the_component_and_the_source():
    assert build_posthoc(None, lambda **k: [1.0], 'Head') is None
    m = build_posthoc(
        dict(type='nc_tau', tau=0.3, counts=[3.0, 1.0]),
        lambda counts=None: counts,
        'Head')
    assert m.rule == 'nc_tau' and m.tau == 0.3
    assert m.counts.tolist() == [3.0, 1.0]

    def bad_reader(stats_file=None):
        raise ValueError(f'{stats_file} does not exist')

    with pytest.raises(
            ValueError,
            match=r"Head posthoc='logit_adjust': "
            r'x\.json does not exist'):
        build_posthoc(
            dict(type='logit_adjust', stats_file='x.json'), bad_reader, 'Head')
    with pytest.raises(ValueError, match='unknown keys'):
        build_posthoc(dict(type='nc_tau', temperature=1.0), bad_reader, 'H')
    with pytest.raises(ValueError, match='posthoc type'):
        build_posthoc(dict(type='la', counts=[1.0]), bad_reader, 'H')


class _Posthoc(PosthocMixin, nn.Module):

    def __init__(self, posthoc=None, background=False):
        super().__init__()
        self.posthoc = posthoc
        self.posthoc_background = background


def test_posthoc_mixin_configured_explicit_and_none():
    z = torch.tensor([[1.0, 2.0, 0.5]])
    # no configuration, no rule: the logits themselves
    plain = _Posthoc()
    assert plain.apply_posthoc(z) is z
    # logit adjustment z_c - tau * log N_c with N = (1, e, e^2), tau = 1:
    # (1 - 0, 2 - 1, 0.5 - 2) = (1, 1, -1.5)
    counts = torch.tensor([1.0, math.e, math.e**2])
    assert_close(
        plain.apply_posthoc(z, 'logit_adjust', 1.0, counts),
        torch.tensor([[1.0, 1.0, -1.5]]))
    # the configured module; background: the last column is left alone
    # (N = (1, e) for the two foreground classes): (1 - 0, 2 - 1, 0.5)
    bg = _Posthoc(
        PosthocAdjust(counts[:2], 'logit_adjust', 1.0, background=True),
        background=True)
    assert_close(bg.apply_posthoc(z), torch.tensor([[1.0, 1.0, 0.5]]))
    # explicit rule without a configuration, background column kept
    assert_close(
        _Posthoc(background=True).apply_posthoc(z, 'nc_tau', 1.0, counts[:2]),
        torch.tensor([[1.0, 2.0 / math.e, 0.5]]))


def test_nc_tau_half_logits_come_back_float32_without_underflow():
    # pixel counts ~1e9: N_c ** -1 = 1.4e-10 is 0 in float16
    counts = [7e9, 1e6, 10.0]
    z = torch.tensor([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]])
    ref = nc_tau_adjust(z.double(), counts, 1.0)
    out = nc_tau_adjust(z.half(), counts, 1.0)
    assert out.dtype == torch.float32
    assert (out != 0).all()
    assert_close(out.double(), ref, rtol=1e-3, atol=0)
    # float32 and float64 logits keep their dtype
    assert nc_tau_adjust(z, counts, 1.0).dtype == torch.float32
    assert ref.dtype == torch.float64


def test_posthoc_counts_survive_half_and_bfloat16():
    # a dtype cast of the module must not round the training counts
    # (float16: 1e9 -> inf; bfloat16: 1e9 -> 998244352), in the module or
    # in the checkpoint saved from it; device moves still apply
    counts = [1e9, 1e6, 10.0]
    for dtype in (torch.float16, torch.bfloat16):
        m = PosthocAdjust(counts, 'nc_tau', 1.0).to(dtype)
        assert m.counts.dtype == torch.float64
        assert m.counts.tolist() == counts
        assert m.state_dict()['counts'].tolist() == counts
        out = m(torch.ones(1, 3, dtype=dtype))
        assert torch.isfinite(out).all() and (out != 0).all()
