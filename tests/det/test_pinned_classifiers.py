"""Pinned behaviour of lt_mm.det.classifiers / bbox_heads found unguarded
by a mutation audit: the one-foreground-class edge of the out_features
check, the reference defaults of the det layers (which differ from
lt_mm.core's), the nn.Linear-like properties and the guards of the TDE
head-direction update.
"""
import pytest
import torch
from mmdet.registry import MODELS
from torch.testing import assert_close

import lt_mm.det  # noqa: F401  (registers the modules)


def _build(cfg):
    return MODELS.build(cfg)


@pytest.mark.parametrize('kind', [
    'DisAlignLinear', 'DisAlignCosineLinear', 'CosineLinear', 'TauNormLinear',
    'CausalNormLinear', 'LWSLinear', 'CRTLinear', 'NCMLinear'
])
def test_one_foreground_class_plus_background_builds(kind):
    # out_features = 2: C = 1 foreground class + background, the smallest
    # softmax box head; only out_features < 2 is refused
    layer = _build(dict(type=kind, in_features=4, out_features=2))
    assert layer.out_features == 2
    assert layer.in_features == 4
    layer.eval()
    with torch.no_grad():
        if kind == 'NCMLinear':
            layer.set_centroids(torch.rand(3, 4), torch.zeros(3).long())
        out = layer(torch.rand(3, 4))
    assert out.shape == (3, 2)


@pytest.mark.parametrize('bad', [1, 0])
def test_fewer_than_two_outputs_refused_naming_the_value(bad):
    with pytest.raises(ValueError, match=f'out_features={bad}'):
        _build(dict(type='CosineLinear', in_features=4, out_features=bad))


def test_cosine_linear_reference_defaults():
    # det default: learnable scale initialised at 20 (DisAlign issue #3),
    # not core CosineClassifier's fixed 16
    layer = _build(dict(type='CosineLinear', in_features=2, out_features=3))
    params = dict(layer.named_parameters())
    assert 'scale' in params and params['scale'].requires_grad
    assert float(params['scale']) == 20.0
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.]]))
    # x = (2, 0): cos = [1, 0, 1/sqrt 2] -> 20 * cos
    assert_close(
        layer(torch.tensor([[2.0, 0.0]])),
        torch.tensor([[20.0, 0.0, 20.0 / 2**0.5]]))
    assert (layer.in_features, layer.out_features) == (2, 3)


def test_causal_norm_linear_properties_and_reference_defaults():
    layer = _build(
        dict(type='CausalNormLinear', in_features=4, out_features=3))
    assert (layer.in_features, layer.out_features) == (4, 3)
    # TDE detection setting: alpha 1.5, mu 0.9998, Eq. 9 at test
    assert layer.alpha == 1.5
    assert layer.momentum == 0.9998
    assert layer.background_exempt is True


def test_causal_norm_default_momentum_in_the_head_direction_update():
    layer = _build(
        dict(type='CausalNormLinear', in_features=2, out_features=3))
    layer.train()
    layer(torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]))
    # labels: classes 0, 1 and background 2 -> foreground mean (2, 3);
    # d starts at 0: d = 0.9998 * 0 + (2, 3) (mmdet-style moving sum)
    layer.update_head_direction_from_labels(torch.tensor([0, 1, 2]))
    d1 = layer.head_direction.clone()
    assert_close(d1, torch.tensor([2.0, 3.0]))
    layer(torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]))
    layer.update_head_direction_from_labels(torch.tensor([0, 1, 2]))
    # second update: d = 0.9998 * (2, 3) + (2, 3) = (3.9996, 5.9994)
    assert_close(layer.head_direction, torch.tensor([3.9996, 5.9994]))


def test_head_direction_update_needs_a_training_forward():
    layer = _build(
        dict(type='CausalNormLinear', in_features=2, out_features=3))
    with pytest.raises(RuntimeError, match='without a preceding training'):
        layer.update_head_direction_from_labels(torch.tensor([0]))
    # the features are consumed: a second update needs a new forward
    layer.train()
    layer(torch.rand(2, 2))
    layer.update_head_direction_from_labels(torch.tensor([0, 2]))
    with pytest.raises(RuntimeError, match='without a preceding training'):
        layer.update_head_direction_from_labels(torch.tensor([0, 2]))


def test_head_direction_update_refuses_labels_of_another_forward():
    layer = _build(
        dict(type='CausalNormLinear', in_features=2, out_features=3))
    layer.train()
    layer(torch.rand(3, 2))
    with pytest.raises(ValueError, match='2 RoI labels for 3 RoI'):
        layer.update_head_direction_from_labels(torch.tensor([0, 1]))


def test_tau_norm_repr_names_tau_and_bias_rule():
    layer = _build(
        dict(type='TauNormLinear', in_features=2, out_features=3, tau=0.5))
    assert 'tau=0.5, keep_fg_bias=False' in repr(layer)


def test_disalign_cosine_default_scale_is_learnable_twenty():
    layer = _build(
        dict(type='DisAlignCosineLinear', in_features=2, out_features=3))
    params = dict(layer.named_parameters())
    assert float(params['scale']) == 20.0 and params['scale'].requires_grad


def test_tau_norm_defaults_unit_rows_without_fg_bias():
    # defaults: tau = 1 (unit foreground rows), foreground bias dropped
    layer = _build(dict(type='TauNormLinear', in_features=2, out_features=3))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3., 4.], [0., 2.], [1., 1.]]))
        layer.bias.copy_(torch.tensor([5.0, 5.0, 0.5]))
    layer.eval()
    # rows [3, 4] / 5 and [0, 2] / 2; x = (1, 1):
    # [7/5, 1, 1 + 1 + 0.5] = [1.4, 1.0, 2.5]
    assert_close(
        layer(torch.tensor([[1.0, 1.0]])), torch.tensor([[1.4, 1.0, 2.5]]))


def _tau_norm_keep_fg_bias():
    """A TauNormLinear keeping its foreground bias; fg rows (3, 4), (0, 2)
    of norms 5, 2 and the background row (1, 1)."""
    layer = _build(
        dict(
            type='TauNormLinear',
            in_features=2,
            out_features=3,
            keep_fg_bias=True))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3., 4.], [0., 2.], [1., 1.]]))
    return layer


def test_tau_norm_keep_fg_bias_adds_every_bias():
    layer = _tau_norm_keep_fg_bias()
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([5.0, -1.0, 0.5]))
    layer.eval()
    # unit fg rows, x = (1, 1): [7/5 + 5, 1 - 1, 2 + 0.5] = [6.4, 0, 2.5]
    with torch.no_grad():  # cached path
        assert_close(
            layer(torch.tensor([[1.0, 1.0]])), torch.tensor([[6.4, 0.0, 2.5]]))
    assert_close(  # uncached path (grad enabled)
        layer(torch.tensor([[1.0, 1.0]])).detach(),
        torch.tensor([[6.4, 0.0, 2.5]]))


def test_tau_norm_cache_follows_a_bias_only_change():
    layer = _tau_norm_keep_fg_bias()
    with torch.no_grad():
        layer.bias.zero_()
    layer.eval()
    x = torch.tensor([[1.0, 1.0]])
    with torch.no_grad():
        assert_close(layer(x), torch.tensor([[1.4, 1.0, 2.0]]))
        layer.bias.add_(torch.tensor([1.0, 2.0, 3.0]))  # weights untouched
        # [1.4 + 1, 1 + 2, 2 + 3]
        assert_close(layer(x), torch.tensor([[2.4, 3.0, 5.0]]))


def test_tau_norm_without_bias():
    layer = _build(
        dict(type='TauNormLinear', in_features=2, out_features=3, bias=False))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3., 4.], [0., 2.], [1., 1.]]))
    layer.eval()
    with torch.no_grad():
        # [7/5, 1, 2], no bias at all
        assert_close(
            layer(torch.tensor([[1.0, 1.0]])), torch.tensor([[1.4, 1.0, 2.0]]))


def test_head_direction_ignores_negative_labels():
    # only 0 <= label < C are foreground: -1 (no class) and C (background)
    # are both left out of the mean
    layer = _build(
        dict(type='CausalNormLinear', in_features=2, out_features=3))
    layer.train()
    layer(torch.tensor([[1.0, 2.0], [50.0, 60.0], [9.0, 9.0]]))
    layer.update_head_direction_from_labels(torch.tensor([1, -1, 2]))
    assert_close(layer.head_direction, torch.tensor([1.0, 2.0]))


def _heads(**kw):
    common = dict(
        in_channels=2, roi_feat_size=1, fc_out_channels=4, num_classes=2)
    stock = _build(dict(type='Shared2FCBBoxHead', **common))
    tde = _build(
        dict(
            type='CausalNormShared2FCBBoxHead',
            cls_predictor_cfg=dict(type='CausalNormLinear', num_heads=2),
            **common,
            **kw))
    return stock, tde


def test_tde_head_drops_only_the_fc_cls_init():
    stock, tde = _heads()
    fc_cls = [
        c for c in stock.init_cfg
        if isinstance(c, dict) and c.get('override') == dict(name='fc_cls')
    ]
    assert len(fc_cls) == 1  # mmdet's Normal(0, 0.01) of fc_cls
    # every other init of the stock head (fc_reg Normal(0.001), the
    # shared fcs' Xavier) is kept
    assert tde.init_cfg == [c for c in stock.init_cfg if c not in fc_cls]
    assert any(
        isinstance(c, dict) and c.get('override') == dict(name='fc_reg')
        for c in tde.init_cfg)
    # an explicit init_cfg is left as given
    mine = [dict(type='Normal', std=0.5, override=dict(name='fc_cls'))]
    _, tde = _heads(init_cfg=mine)
    assert tde.init_cfg == mine
