"""Pinned behaviour of lt_mm.core.disalign (DisAlign Eq. 4-6) found by a
mutation audit."""
import pytest
import torch

from lt_mm.core.disalign import DisAlignCalibration, disalign_calibrate


@pytest.mark.parametrize('logit_shape,feat_shape', [
    ((2, 3, 5, 5), (2, 4, 4, 4)),
    ((2, 3), (2, 4, 5, 5)),
])
def test_forward_refuses_logits_and_feats_of_other_sizes(
        logit_shape, feat_shape):
    m = DisAlignCalibration(4, 3, spatial=True)
    shape = ', '.join(str(s) for s in logit_shape)
    with pytest.raises(
            ValueError,
            match=rf'logits of shape \({shape}\) do '
            'not match feats'):
        m(torch.zeros(logit_shape), torch.ones(feat_shape))


def test_calibrate_refuses_1d_logits_naming_the_shape():
    with pytest.raises(ValueError, match=r'got shape \(3,\)'):
        disalign_calibrate(
            torch.ones(3), torch.ones(3), torch.ones(3), torch.zeros(3))


def test_constant_sigma_init_bias_bound_is_one_over_sqrt_d():
    # sigma_init='constant': weight = sigma_const, bias ~ U(+-1/sqrt(D));
    # D = 100 -> |bias| <= 0.1 (a bound of sqrt(D) = 10 would exceed it)
    torch.manual_seed(0)
    biases = torch.stack([
        DisAlignCalibration(100, 3, sigma_init='constant',
                            sigma_const=0.25).confidence_layer.bias
        for _ in range(50)
    ])
    assert biases.abs().max() <= 0.1
    assert biases.abs().max() > 0.09  # spread over the whole interval
    m = DisAlignCalibration(100, 3, sigma_init='constant', sigma_const=0.25)
    assert torch.equal(m.confidence_layer.weight, torch.full((1, 100), 0.25))


def test_forward_per_pixel_logits_and_feats_of_the_same_size():
    # alpha = 1, beta = 0 (identity init): the output is the input
    m = DisAlignCalibration(4, 3, spatial=True)
    z = torch.randn(2, 3, 5, 5)
    assert torch.equal(m(z, torch.ones(2, 4, 5, 5)), z)
