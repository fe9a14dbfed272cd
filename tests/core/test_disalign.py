"""Tests for lt_mm.core.disalign (DisAlign Eq. 4-6, Table 2)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from lt_mm.core.disalign import DisAlignCalibration, disalign_calibrate

# Hand example: C = 3, two samples.
Z = torch.tensor([[2.0, -1.0, 0.5], [1.0, 2.0, -4.0]])
SIGMA = torch.tensor([[0.5], [0.25]])
ALPHA = torch.tensor([2.0, 0.5, 1.0])
BETA = torch.tensor([1.0, 0.0, -2.0])
# Eq. 5: z_hat = s * (a * z + b) + (1 - s) * z
# row 0 (s = 0.5):
#   c0: 0.5 * (2 * 2 + 1) + 0.5 * 2        = 2.5 + 1.0   =  3.5
#   c1: 0.5 * (0.5 * -1 + 0) + 0.5 * -1    = -0.25 - 0.5 = -0.75
#   c2: 0.5 * (1 * 0.5 - 2) + 0.5 * 0.5    = -0.75 + 0.25 = -0.5
# row 1 (s = 0.25):
#   c0: 0.25 * (2 * 1 + 1) + 0.75 * 1      = 0.75 + 0.75 =  1.5
#   c1: 0.25 * (0.5 * 2) + 0.75 * 2        = 0.25 + 1.5  =  1.75
#   c2: 0.25 * (-4 - 2) + 0.75 * -4        = -1.5 - 3.0  = -4.5
EXP_IDENTITY = torch.tensor([[3.5, -0.75, -0.5], [1.5, 1.75, -4.5]])
# Eq. 6: z_hat = (1 + s * a) * z + s * b
# row 0: c0 (1 + 1) * 2 + 0.5 = 4.5; c1 (1 + 0.25) * -1 = -1.25;
#        c2 (1 + 0.5) * 0.5 + 0.5 * -2 = 0.75 - 1 = -0.25
# row 1: c0 (1 + 0.5) * 1 + 0.25 = 1.75; c1 (1 + 0.125) * 2 = 2.25;
#        c2 (1 + 0.25) * -4 + 0.25 * -2 = -5 - 0.5 = -5.5
EXP_SHIFTED = torch.tensor([[4.5, -1.25, -0.25], [1.75, 2.25, -5.5]])


def _set_half_sigma(module):
    """Zero the confidence layer so sigma = sigmoid(0) = 0.5 everywhere."""
    with torch.no_grad():
        module.confidence_layer.weight.zero_()
        module.confidence_layer.bias.zero_()


@pytest.mark.parametrize('param', ['identity', 'shifted'])
@pytest.mark.parametrize('spatial', [False, True])
def test_identity_at_init(param, spatial):
    torch.manual_seed(0)
    m = DisAlignCalibration(
        in_channels=4, num_classes=3, param=param, spatial=spatial)
    if spatial:
        logits, feats = torch.randn(2, 3, 2, 2), torch.randn(2, 4, 2, 2)
    else:
        logits, feats = torch.randn(5, 3), torch.randn(5, 4)
    out = m(logits, feats)
    # bit-exact identity: z + sigma * (0 * z + 0)
    assert torch.equal(out, logits)
    expected_alpha = 1.0 if param == 'identity' else 0.0
    assert_close(m.logit_scale.data, torch.full((3, ), expected_alpha))
    assert_close(m.logit_bias.data, torch.zeros(3))


def test_shifted_reference_alpha_init_is_not_identity():
    # Reference classification init alpha = 1 -> (1 + sigma) * z.
    m = DisAlignCalibration(
        in_channels=4, num_classes=3, param='shifted', alpha_init=1.0)
    _set_half_sigma(m)
    out = m(Z, torch.randn(2, 4))
    assert_close(out, 1.5 * Z)


@pytest.mark.parametrize('param,expected', [('identity', EXP_IDENTITY),
                                            ('shifted', EXP_SHIFTED)])
def test_calibrate_hand_example(param, expected):
    out = disalign_calibrate(Z, SIGMA, ALPHA, BETA, param=param)
    assert_close(out, expected)
    # sigma given as (N,) works for vector logits too
    out = disalign_calibrate(Z, SIGMA.flatten(), ALPHA, BETA, param=param)
    assert_close(out, expected)


@pytest.mark.parametrize('param,expected', [('identity', EXP_IDENTITY),
                                            ('shifted', EXP_SHIFTED)])
def test_module_hand_example(param, expected):
    m = DisAlignCalibration(in_channels=2, num_classes=3, param=param)
    with torch.no_grad():
        m.logit_scale.copy_(ALPHA)
        m.logit_bias.copy_(BETA)
        # sigma = sigmoid(v^T x + b): x = (0, 0) and bias 0 -> 0.5;
        # bias ln(1/3) -> 1 / (1 + 3) = 0.25
        m.confidence_layer.weight.zero_()
        m.confidence_layer.weight[0, 0] = torch.log(torch.tensor(1 / 3))
        m.confidence_layer.bias.zero_()
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert_close(m.confidence(feats), SIGMA)
    assert_close(m(Z, feats), expected)


def test_background_column_untouched():
    z = torch.cat([Z, torch.tensor([[7.0], [-3.0]])], dim=1)  # (2, C+1)
    out = disalign_calibrate(z, SIGMA, ALPHA, BETA, background=True)
    assert_close(out[:, :3], EXP_IDENTITY)
    assert torch.equal(out[:, 3], z[:, 3])
    m = DisAlignCalibration(in_channels=4, num_classes=3, background=True)
    with torch.no_grad():
        m.logit_scale.fill_(3.0)
        m.logit_bias.fill_(-1.0)
    out = m(z, torch.randn(2, 4))
    assert torch.equal(out[:, 3], z[:, 3])
    assert not torch.allclose(out[:, :3], z[:, :3])
    # alpha of length C + 1 is refused: the bg is not calibrated
    with pytest.raises(ValueError, match='background'):
        disalign_calibrate(
            z, SIGMA, torch.ones(4), torch.zeros(4), background=True)


def test_gradients_only_reach_calibration_params():
    torch.manual_seed(0)
    fc = nn.Linear(4, 3)
    for p in fc.parameters():
        p.requires_grad_(False)
    m = DisAlignCalibration(in_channels=4, num_classes=3)
    x = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    F.cross_entropy(m(fc(x), x), y).backward()
    # at the identity init d z_hat / d sigma = (alpha - 1) z + beta = 0:
    # sigma only starts learning once alpha / beta have moved.
    assert m.confidence_layer.weight.grad.abs().sum() == 0
    assert m.logit_scale.grad.abs().sum() > 0
    m.zero_grad()
    with torch.no_grad():
        m.logit_scale.fill_(1.5)
    F.cross_entropy(m(fc(x), x), y).backward()
    assert fc.weight.grad is None and fc.bias.grad is None
    for name, p in m.named_parameters():
        assert p.grad is not None, name
    assert m.logit_scale.grad.abs().sum() > 0
    assert m.logit_bias.grad.abs().sum() > 0
    assert m.confidence_layer.weight.grad.abs().sum() > 0
    names = {n for n, _ in m.named_parameters()}
    assert names == {
        'logit_scale', 'logit_bias', 'confidence_layer.weight',
        'confidence_layer.bias'
    }


def test_spatial_broadcast():
    m = DisAlignCalibration(in_channels=4, num_classes=3, spatial=True)
    assert isinstance(m.confidence_layer, nn.Conv2d)
    with torch.no_grad():
        m.logit_scale.copy_(ALPHA)
        m.logit_bias.copy_(BETA)
    _set_half_sigma(m)
    # every pixel holds the row-0 logits -> every pixel gives EXP row 0
    logits = Z[0].reshape(1, 3, 1, 1).expand(2, 3, 2, 3).clone()
    out = m(logits, torch.randn(2, 4, 2, 3))
    assert out.shape == (2, 3, 2, 3)
    assert_close(out, EXP_IDENTITY[0].reshape(1, 3, 1, 1).expand_as(out))
    # per-pixel sigma: equal to the vector formula pixel by pixel
    torch.manual_seed(1)
    with torch.no_grad():
        m.confidence_layer.weight.normal_()
    logits, feats = torch.randn(2, 3, 2, 3), torch.randn(2, 4, 2, 3)
    out = m(logits, feats)
    sigma = m.confidence(feats)
    assert sigma.shape == (2, 1, 2, 3)
    flat = disalign_calibrate(
        logits.movedim(1, -1).reshape(-1, 3),
        sigma.movedim(1, -1).reshape(-1, 1), ALPHA, BETA)
    assert_close(out, flat.reshape(2, 2, 3, 3).movedim(-1, 1))


def test_sigma_init_modes():
    torch.manual_seed(0)
    m = DisAlignCalibration(
        in_channels=8, num_classes=3, sigma_init='constant')
    assert_close(m.confidence_layer.weight.data, torch.full((1, 8), 0.1))
    m = DisAlignCalibration(in_channels=8, num_classes=3, sigma_init='normal')
    assert_close(m.confidence_layer.bias.data, torch.zeros(1))
    assert m.confidence_layer.weight.abs().max() < 0.1


def test_bad_inputs():
    with pytest.raises(ValueError, match='param'):
        DisAlignCalibration(in_channels=4, num_classes=3, param='paper')
    with pytest.raises(ValueError, match='sigma_init'):
        DisAlignCalibration(in_channels=4, num_classes=3, sigma_init='zeros')
    m = DisAlignCalibration(in_channels=4, num_classes=3)
    with pytest.raises(ValueError, match='feats'):
        m(Z, torch.randn(2, 5))
    with pytest.raises(ValueError, match='alpha'):
        disalign_calibrate(Z, SIGMA, torch.ones(4), BETA)
    with pytest.raises(ValueError, match='sigma'):
        disalign_calibrate(Z, torch.ones(2, 3), ALPHA, BETA)


def test_exclude_background_without_slicing_equals_fg_only_calibration():
    # the fast path pads alpha - 1 and beta with 0 for the background
    # column; it must equal calibrating the C fg columns alone and
    # appending the untouched background column (old slice + cat form)
    torch.manual_seed(0)
    for shape, sig_shape in (((6, 5), (6, 1)), ((2, 5, 3, 4), (2, 1, 3, 4))):
        z = torch.randn(shape, dtype=torch.float64)
        sigma = torch.rand(sig_shape, dtype=torch.float64)
        alpha = torch.rand(4, dtype=torch.float64, requires_grad=True)
        beta = torch.randn(4, dtype=torch.float64, requires_grad=True)
        out = disalign_calibrate(z, sigma, alpha, beta, background=True)
        fg = disalign_calibrate(z[:, :4], sigma, alpha, beta)
        assert_close(out[:, :4], fg)
        assert torch.equal(out[:, 4], z[:, 4])
        out[:, :4].sum().backward()
        assert alpha.grad is not None and beta.grad.abs().sum() > 0


def test_exclude_background_is_a_deprecated_alias_of_background():
    z = torch.tensor([[1.0, -2.0, 3.0, 5.0]])
    sigma = torch.tensor([[0.5]])
    alpha, beta = torch.tensor([2.0, 1.0, 0.5]), torch.tensor([1.0, 0., 0.])
    with pytest.warns(DeprecationWarning, match='renamed background'):
        old = disalign_calibrate(
            z, sigma, alpha, beta, exclude_background=True)
    # background column 5 untouched; fg: z + 0.5 ((a - 1) z + b)
    # 1 + 0.5 (1 + 1) = 2; -2 + 0 = -2; 3 + 0.5 (-0.5 * 3) = 2.25
    torch.testing.assert_close(old, torch.tensor([[2.0, -2.0, 2.25, 5.0]]))
    with pytest.warns(DeprecationWarning):
        m = DisAlignCalibration(4, 3, exclude_background=True)
    assert m.background
    with pytest.raises(ValueError, match='use background only'):
        disalign_calibrate(
            z, sigma, alpha, beta, background=True, exclude_background=False)


@pytest.mark.parametrize('sigma_shape,logit_shape', [
    ((1, 1), (8, 4)),
    ((8, 1), (1, 4)),
    ((1, 1, 5, 5), (4, 4, 5, 5)),
    ((4, 1, 1, 1), (4, 4, 5, 5)),
])
def test_sigma_of_another_batch_or_size_is_refused(sigma_shape, logit_shape):
    # one confidence per sample / pixel: no silent broadcast of one
    # sample's sigma over the batch
    with pytest.raises(ValueError, match='same N'):
        disalign_calibrate(
            torch.zeros(logit_shape), torch.full(sigma_shape, 0.5),
            torch.ones(4), torch.zeros(4))


def test_fractional_sizes_are_refused():
    with pytest.raises(ValueError, match=r'in_channels=16.9 is not an int'):
        DisAlignCalibration(16.9, 4)
    with pytest.raises(ValueError, match=r'num_classes=4.5 is not an int'):
        DisAlignCalibration(16, 4.5)
    assert DisAlignCalibration(16.0, 4).in_channels == 16
