"""LTDecodeHead and the per-pixel classifiers on stock mmseg heads."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.models.decode_heads import (DepthwiseSeparableASPPHead, FCNHead,
                                       UPerHead)
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch.testing import assert_close

from lt_mm.seg import (CausalNormConvSeg, DisAlignConvSeg, LWSConvSeg,
                       TauNormConvSeg)

C = 4
HEADS = {
    'FCNHead': (dict(in_channels=8, channels=8,
                     num_convs=1), [torch.randn(2, 8, 5, 5)]),
    'DepthwiseSeparableASPPHead': (dict(
        in_channels=8,
        channels=8,
        c1_in_channels=4,
        c1_channels=4,
        dilations=(1,
                   2)), [torch.randn(2, 4, 10, 10),
                         torch.randn(2, 8, 5, 5)]),
    'UPerHead':
    (dict(in_channels=[4, 8], in_index=[0, 1], channels=8, pool_scales=(1, 2)),
     [torch.randn(2, 4, 10, 10),
      torch.randn(2, 8, 5, 5)]),
}
STOCK = {
    'FCNHead': FCNHead,
    'DepthwiseSeparableASPPHead': DepthwiseSeparableASPPHead,
    'UPerHead': UPerHead
}


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def _head_cfg(name, **extra):
    kwargs, _ = HEADS[name]
    return dict(type=name, num_classes=C, **kwargs, **extra)


@pytest.mark.parametrize('name', sorted(HEADS))
def test_disalign_wraps_any_head_identity_at_init(name):
    torch.manual_seed(0)
    _, inputs = HEADS[name]
    stock = _build(_head_cfg(name))
    # flat form (inheriting a stock config) and head=dict(...) form
    lt = _build(
        dict(
            _head_cfg(name),
            type='LTDecodeHead',
            head_type=name,
            classifier=dict(type='DisAlignConvSeg')))
    lt2 = _build(
        dict(
            type='LTDecodeHead',
            head=_head_cfg(name),
            classifier=dict(type='DisAlignConvSeg')))
    for head in (lt, lt2):
        assert isinstance(head, STOCK[name])
        assert type(head).__name__ == f'LT{name}'
        assert isinstance(head.conv_seg, DisAlignConvSeg)
        head.init_weights()
        # the stock checkpoint loads: same names and shapes, only the
        # calibration is new
        res = head.load_state_dict(stock.state_dict(), strict=False)
        assert res.unexpected_keys == []
        assert sorted(res.missing_keys) == [
            'conv_seg.calibration.confidence_layer.bias',
            'conv_seg.calibration.confidence_layer.weight',
            'conv_seg.calibration.logit_bias',
            'conv_seg.calibration.logit_scale'
        ]
        assert head.stage2_parameter_names() == [
            'conv_seg.calibration.logit_scale',
            'conv_seg.calibration.logit_bias',
            'conv_seg.calibration.confidence_layer'
        ]
        # alpha = 1, beta = 0 after init_weights: exactly the stock head
        stock.eval(), head.eval()
        with torch.no_grad():
            assert torch.equal(head(inputs), stock(inputs))
        assert_close(head.conv_seg.calibration.logit_scale, torch.ones(C))


def test_disalign_conv_seg_hand_computed_and_sigma_before_dropout():
    # D = 2, C = 2, one pixel x = [1, 2]; W = I, b = 0 -> z = [1, 2]
    # confidence conv weight 0, bias 0 -> sigma = 0.5
    # alpha = [2, 1], beta = [0, 1] (Eq. 5):
    #   z_hat = z + sigma * ((alpha - 1) z + beta) = [1.5, 2.5]
    clf = DisAlignConvSeg(2, 2)
    with torch.no_grad():
        clf.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
        clf.bias.zero_()
        clf.calibration.confidence_layer.weight.zero_()
        clf.calibration.logit_scale.copy_(torch.tensor([2.0, 1.0]))
        clf.calibration.logit_bias.copy_(torch.tensor([0.0, 1.0]))
    x = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
    assert_close(clf(x).flatten(), torch.tensor([1.5, 2.5]))
    # sigma from the pre-dropout map: x dropped to [0, 4], feat = [1, 2],
    # confidence weight [1, 0] -> sigma = sigmoid(1) from feat
    # (sigmoid(0) = 0.5 if it used the dropped map). z = [0, 4]:
    #   z_hat = [0 + s * (0 + 0), 4 + s * (0 + 1)]
    with torch.no_grad():
        clf.calibration.confidence_layer.weight.copy_(
            torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1))
    s = torch.sigmoid(torch.tensor(1.0))
    dropped = torch.tensor([0.0, 4.0]).reshape(1, 2, 1, 1)
    assert_close(clf(dropped, feat=x).flatten(), torch.stack([0 * s, 4 + s]))
    # and the head passes the pre-dropout map: compare with a manual run
    head = _build(
        dict(
            _head_cfg('FCNHead', dropout_ratio=0.5),
            type='LTDecodeHead',
            head_type='FCNHead',
            classifier=dict(type='DisAlignConvSeg')))
    with torch.no_grad():
        head.conv_seg.calibration.logit_scale.fill_(3.0)
        head.conv_seg.calibration.confidence_layer.weight.fill_(0.5)
    head.train()
    feat = torch.rand(2, 8, 3, 3) + 0.5
    torch.manual_seed(1)
    out = head.cls_seg(feat)
    torch.manual_seed(1)
    dropped = head.dropout(feat)
    expected = head.conv_seg.calibration(
        F.conv2d(dropped, head.conv_seg.weight, head.conv_seg.bias), feat)
    wrong = head.conv_seg.calibration(
        F.conv2d(dropped, head.conv_seg.weight, head.conv_seg.bias), dropped)
    assert_close(out, expected)
    assert not torch.allclose(out, wrong)


def test_disalign_reference_confidence_layer():
    # ConvModule (norm + ReLU) before the sigmoid: sigma in [0.5, 1)
    head = _build(
        dict(
            _head_cfg('FCNHead', norm_cfg=dict(type='BN')),
            type='LTDecodeHead',
            head_type='FCNHead',
            classifier=dict(type='DisAlignConvSeg', confidence='conv_module')))
    head.init_weights()
    layer = head.conv_seg.calibration.confidence_layer
    # the head's Normal(std=0.01) init of conv_seg must not reach the BN
    assert_close(layer.bn.weight, torch.ones(1))
    sigma = head.conv_seg.calibration.confidence(torch.randn(2, 8, 3, 3))
    assert sigma.min() >= 0.5 and sigma.max() < 1


def _samples(gt):
    out = []
    for g in gt:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=g[None])
        out.append(s)
    return out


def test_causal_norm_head_direction_and_tde():
    # hand-computed classifier: D = 2, K = 1, tau = 1, gamma = 0,
    # w0 = [1, 0], w1 = [0, 1]. Training pixels x1 = [3, 4] (valid) and
    # x2 = [1, 0] (ignored): d = 0.9 * 0 + mean(valid) = [3, 4].
    clf = CausalNormConvSeg(2, 2, num_heads=1, tau=1.0, gamma=0.0, alpha=1.0)
    assert clf.weight.shape == (2, 2, 1, 1)
    with torch.no_grad():
        clf.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
    x = torch.tensor([[3.0, 1.0], [4.0, 0.0]]).reshape(1, 2, 1, 2)
    clf.train()
    # causal-norm logits: x / ||x|| . w / ||w|| = [0.6, 0.8] and [1, 0]
    assert_close(
        clf(x, valid=torch.tensor([[[True, False]]])),
        torch.tensor([[0.6, 1.0], [0.8, 0.0]]).reshape(1, 2, 1, 2))
    assert_close(clf.head_direction, torch.tensor([3.0, 4.0]))
    # TDE (alpha 1): d_hat = [0.6, 0.8]
    #   x1: cos = 1 -> x_eff = 0 -> [0, 0]
    #   x2: cos = 0.6 -> [1, 0] - 0.6 [0.6, 0.8] = [0.64, -0.48]
    clf.eval()
    assert_close(
        clf(x),
        torch.tensor([[0.0, 0.64], [0.0, -0.48]]).reshape(1, 2, 1, 2))
    # through a head: the direction is the mean pre-dropout feature of the
    # non-ignored pixels (gt resized to the feature map, nearest)
    head = _build(
        dict(
            _head_cfg('FCNHead', norm_cfg=None, dropout_ratio=0.3),
            type='LTDecodeHead',
            head_type='FCNHead',
            classifier=dict(type='CausalNormConvSeg', num_heads=2)))
    assert head.stage2_parameter_names() == []
    _, inputs = HEADS['FCNHead']
    gt = torch.randint(0, C, (2, 10, 10))
    gt[0, :, :6] = 255
    head.train()
    losses = head.loss(inputs, _samples(gt), {})
    assert losses['loss_ce'].requires_grad
    feat = head._forward_feature(inputs)  # no norm: same in any mode
    valid = F.interpolate(
        gt[:, None].float(), size=feat.shape[2:], mode='nearest')[:, 0]
    valid = valid != 255
    expected = feat.permute(0, 2, 3, 1)[valid].mean(0)
    assert_close(head.conv_seg.head_direction, expected.detach())
    assert head._gt_for_mask is None


def test_tau_norm_and_lws_hand_computed():
    # tau-norm: rows w0 = [3, 4], w1 = [1, 0]; tau = 1 -> [0.6, 0.8], [1, 0]
    # x = [1, 1] -> eval logits [1.4, 1.0] (bias dropped); training: stock
    clf = TauNormConvSeg(2, 2, tau=1.0)
    with torch.no_grad():
        clf.weight.copy_(
            torch.tensor([[3.0, 4.0], [1.0, 0.0]]).reshape(2, 2, 1, 1))
        clf.bias.copy_(torch.tensor([10.0, 20.0]))
    x = torch.ones(1, 2, 1, 1)
    clf.eval()
    assert_close(clf(x).flatten(), torch.tensor([1.4, 1.0]))
    clf.train()
    assert_close(clf(x).flatten(), torch.tensor([17.0, 21.0]))
    # LWS: (W x + b) * f with f = [2, 0.5]: ([7, 1] + [10, 20]) * f
    lws = LWSConvSeg(2, 2)
    with torch.no_grad():
        lws.weight.copy_(clf.weight)
        lws.bias.copy_(clf.bias)
        lws.lws.scales.copy_(torch.tensor([2.0, 0.5]))
    assert_close(lws(x).flatten(), torch.tensor([34.0, 10.5]))
    lws.init_weights()
    assert_close(lws(x).flatten(), torch.tensor([17.0, 21.0]))
    head = _build(
        dict(
            _head_cfg('FCNHead'),
            type='LTDecodeHead',
            head_type='FCNHead',
            classifier=dict(type='LWSConvSeg')))
    assert head.stage2_parameter_names() == ['conv_seg.lws.scales']


def test_head_bad_input():
    with pytest.raises(ValueError, match='150 classes but the decode head'):
        _build(
            dict(
                _head_cfg('FCNHead'),
                type='LTDecodeHead',
                head_type='FCNHead',
                classifier=dict(type='DisAlignConvSeg'),
                loss_decode=dict(
                    type='GRWCrossEntropyLoss', stats_file='builtin:ade20k')))
    with pytest.raises(ValueError, match='not registered'):
        _build(
            dict(
                _head_cfg('FCNHead'),
                type='LTDecodeHead',
                head_type='FCNHead',
                classifier=dict(type='NoSuchConvSeg')))
    with pytest.raises(ValueError, match='exactly one of'):
        _build(dict(type='LTDecodeHead', classifier=None))
    with pytest.raises(ValueError, match='put them inside head'):
        _build(
            dict(
                type='LTDecodeHead', head=_head_cfg('FCNHead'), num_classes=3))
    with pytest.raises(ValueError, match='divides'):
        _build(
            dict(
                _head_cfg('FCNHead'),
                type='LTDecodeHead',
                head_type='FCNHead',
                classifier=dict(type='CausalNormConvSeg', num_heads=3)))


# ------------------------------------- cached normalised weights (#13)
@pytest.mark.parametrize('make', [
    lambda: TauNormConvSeg(4, 3, tau=0.7),
    lambda: TauNormConvSeg(4, 3, tau=1.0, keep_bias=True),
    lambda: CausalNormConvSeg(4, 3, alpha=1.0),
])
def test_conv_seg_cache_equals_uncached_and_follows_updates(make):
    torch.manual_seed(0)
    clf = make()
    x = torch.rand(2, 4, 3, 5)
    clf.train()
    clf(torch.rand(1, 4, 2, 2), feat=None, valid=None)  # TDE: d != 0

    def both():
        clf.eval()
        with torch.no_grad():
            cached = clf(x)
            assert_close(clf(x), cached)
        uncached = clf(x).detach()  # grad enabled: nothing cached
        assert_close(cached, uncached)
        return cached

    before = both()
    clf.train()
    out = clf(x)
    (out * torch.randn_like(out)).sum().backward()
    torch.optim.SGD(clf.parameters(), lr=0.5).step()
    after = both()
    assert not torch.allclose(after, before)
    fresh = make()
    fresh.load_state_dict(clf.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert_close(fresh(x), after)
        fresh.load_state_dict(make().state_dict())
        assert not torch.allclose(fresh(x), after)


def test_tau_norm_conv_seg_cached_path_hand_computed():
    # rows [3, 4] -> [0.6, 0.8], [1, 0] -> [1, 0]; x = [1, 2] per pixel:
    # [0.6 + 1.6, 1.0] = [2.2, 1.0]; keep_bias adds [10, 20]
    clf = TauNormConvSeg(2, 2, tau=1.0, keep_bias=True).eval()
    with torch.no_grad():
        clf.weight.copy_(
            torch.tensor([[3.0, 4.0], [1.0, 0.0]]).reshape(2, 2, 1, 1))
        clf.bias.copy_(torch.tensor([10.0, 20.0]))
        x = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1).expand(1, 2, 2, 3)
        out = clf(x)
    assert_close(
        out,
        torch.tensor([12.2, 21.0]).reshape(1, 2, 1, 1).expand(1, 2, 2, 3))


def test_disalign_conv_seg_fused_eval_equals_the_two_convolutions():
    from lt_mm.seg.classifiers import DisAlignConvSeg
    torch.manual_seed(0)
    clf = DisAlignConvSeg(8, 5)
    with torch.no_grad():
        clf.calibration.logit_scale.copy_(torch.linspace(0.5, 2.0, 5))
        clf.calibration.logit_bias.copy_(torch.linspace(-1.0, 1.0, 5))
        clf.calibration.confidence_layer.weight.normal_()
    x = torch.randn(2, 8, 4, 3)
    clf.eval()
    with torch.no_grad():
        reference = clf.calibration(clf.logits(x), x)  # two convolutions
        fused = clf(x)  # one stacked convolution (cached weights)
        assert clf._weight_cache.get(
            'logits_and_sigma',
            (clf.weight, clf.bias, clf.calibration.confidence_layer.weight,
             clf.calibration.confidence_layer.bias), (x.dtype, ),
            lambda: None) is not None
        torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
        # a change of the calibration's confidence layer is seen
        clf.calibration.confidence_layer.bias.fill_(3.0)
        torch.testing.assert_close(
            clf(x), clf.calibration(clf.logits(x), x), rtol=1e-5, atol=1e-6)
    clf.train()  # training: the unfused path (feat may differ from x)
    torch.testing.assert_close(
        clf(x, feat=x.flip(0)),
        clf.calibration(clf.logits(x), x.flip(0)),
        rtol=0,
        atol=0)


def test_disalign_conv_seg_hooks_on_the_confidence_layer_still_fire():
    from lt_mm.seg.classifiers import DisAlignConvSeg
    clf = DisAlignConvSeg(8, 5).eval()
    seen = []
    clf.calibration.confidence_layer.register_forward_hook(
        lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        clf(torch.randn(1, 8, 3, 3))
    assert seen == [torch.Size([1, 1, 3, 3])]
