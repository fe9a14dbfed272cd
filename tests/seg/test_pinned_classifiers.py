"""Pinned behaviour of the per-pixel classifiers (``conv_seg``
replacements) and ``LTDecodeHead`` found unpinned by a mutation audit:
feature-shape refusal, DisAlign's sigma on ``feat`` in every path, the
reference confidence ConvModule's 1x1 kernel, autograd through the eval
cache, TDE's detector-only option refused (hand-computed on tiny maps)."""
import math

import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS
from torch.testing import assert_close

from lt_mm.seg import (CausalNormConvSeg, CosineConvSeg, CRTConvSeg,
                       DisAlignConvSeg, LWSConvSeg, NCMConvSeg, TauNormConvSeg)
from tests.seg.test_cells import _fcn


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


@pytest.mark.parametrize('cls', [
    DisAlignConvSeg, CausalNormConvSeg, TauNormConvSeg, LWSConvSeg,
    CosineConvSeg, CRTConvSeg, NCMConvSeg
])
def test_every_classifier_refuses_a_wrong_feature_map(cls):
    clf = cls(2, 2)
    # wrong channel count, and an unbatched (D, H, W) map that conv2d
    # alone would accept
    for shape in ((1, 3, 2, 2), (2, 2, 2)):
        with pytest.raises(
                ValueError,
                match=str(shape).replace('(', r'\(').replace(')', r'\)')):
            clf(torch.zeros(*shape))


def test_disalign_eval_fused_path_takes_sigma_from_feat():
    # W = I, b = 0, confidence weight [1, 0], alpha = 1, beta = [0, 2]:
    # z_hat = z + sigma(feat) * beta; x = [1, 1], feat = [3, 0]
    # -> [1, 1 + 2 sigmoid(3)] (sigmoid(1) if sigma were taken from x)
    clf = DisAlignConvSeg(2, 2)
    with torch.no_grad():
        clf.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
        clf.bias.zero_()
        clf.calibration.confidence_layer.weight.copy_(
            torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1))
        clf.calibration.confidence_layer.bias.zero_()
        clf.calibration.logit_bias.copy_(torch.tensor([0.0, 2.0]))
    clf.eval()
    x = torch.ones(1, 2, 1, 1)
    feat = torch.tensor([3.0, 0.0]).reshape(1, 2, 1, 1)
    with torch.no_grad():
        out = clf(x, feat=feat)
        assert_close(out.flatten(), torch.tensor([1.0, 1 + 2 * _sig(3.0)]))
        # feat omitted: sigma from x itself
        assert_close(clf(x).flatten(), torch.tensor([1.0, 1 + 2 * _sig(1.0)]))


def test_disalign_train_mode_backpropagates_twice_without_a_step():
    # gradient accumulation: two forward/backward passes, no optimizer
    # step in between (nothing may be served from the eval cache)
    clf = DisAlignConvSeg(2, 2)
    clf.train()
    x = torch.rand(1, 2, 2, 3)
    for _ in range(2):
        clf(x).sum().backward()
    assert clf.calibration.logit_bias.grad is not None


def test_disalign_conv_module_confidence_is_1x1_per_pixel():
    with DefaultScope.overwrite_default_scope('mmseg'):
        head = MODELS.build(
            dict(
                type='LTDecodeHead',
                head_type='FCNHead',
                in_channels=4,
                channels=4,
                num_convs=0,
                concat_input=False,
                num_classes=3,
                norm_cfg=dict(type='BN'),
                classifier=dict(
                    type='DisAlignConvSeg', confidence='conv_module')))
    layer = head.conv_seg.calibration.confidence_layer
    assert tuple(layer.conv.weight.shape[2:]) == (1, 1)
    head.eval()
    with torch.no_grad():
        out = head.cls_seg(torch.rand(2, 4, 2, 3))
    assert out.shape == (2, 3, 2, 3)


def test_causal_norm_conv_seg_refuses_background_exempt():
    with pytest.raises(ValueError, match='background_exempt'):
        CausalNormConvSeg(4, 2, background_exempt=True)


def test_tau_norm_conv_seg_default_tau_1_and_eval_autograd():
    clf = TauNormConvSeg(2, 2)
    with torch.no_grad():
        clf.weight.copy_(
            torch.tensor([[3.0, 4.0], [1.0, 0.0]]).reshape(2, 2, 1, 1))
    clf.eval()
    x = torch.ones(1, 2, 1, 2)
    # default tau = 1: unit rows [0.6, 0.8], [1, 0]; x = [1, 1] per pixel
    # -> [1.4, 1.0] (bias dropped). With gradients on, twice (no cached
    # graph may be reused).
    for _ in range(2):
        out = clf(x)
        assert_close(
            out.detach(),
            torch.tensor([1.4, 1.0]).reshape(1, 2, 1, 1).expand(1, 2, 1, 2))
        out.sum().backward()
    assert clf.weight.grad is not None


def test_causal_norm_conv_seg_default_alpha():
    assert CausalNormConvSeg(4, 2).alpha == 1.5


def test_tau_norm_conv_seg_repr_names_tau():
    assert 'tau=0.5, keep_bias=True' in repr(
        TauNormConvSeg(2, 2, tau=0.5, keep_bias=True))


def _lt_fcn(**extra):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return _fcn(**extra)


def test_lt_head_refuses_a_one_channel_binary_head():
    # mmseg's binary form (num_classes=2, out_channels=1, sigmoid) has no
    # channel per class
    with pytest.raises(ValueError, match='out_channels=1, num_classes=2'):
        _lt_fcn(
            out_channels=1,
            threshold=0.3,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            classifier=dict(type='DisAlignConvSeg'))


@pytest.mark.parametrize('bad', ['DisAlignConvSeg', dict(tau=1.0)])
def test_lt_head_refuses_a_classifier_without_type(bad):
    with pytest.raises(ValueError, match='must be a dict with a type'):
        _lt_fcn(classifier=bad)


def test_lt_head_posthoc_train_ann_file_refused_naming_it():
    with pytest.raises(ValueError, match="train_ann_file='x.txt'"):
        _lt_fcn(posthoc=dict(type='nc_tau', train_ann_file='x.txt'))


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def test_lt_head_type_errors_name_the_value():
    flat = dict(
        in_channels=2,
        channels=2,
        num_convs=0,
        concat_input=False,
        num_classes=2)
    with pytest.raises(ValueError, match="'NoSuchHead' is not registered"):
        _build(dict(type='LTDecodeHead', head_type='NoSuchHead', **flat))
    with pytest.raises(ValueError, match='cannot wrap itself'):
        _build(dict(type='LTDecodeHead', head_type='LTDecodeHead', **flat))
    with pytest.raises(ValueError, match='not an mmseg decode head'):
        _build(dict(type='LTDecodeHead', head_type='ResNetV1c', depth=18))
    with pytest.raises(ValueError, match='head must have a type'):
        _build(dict(type='LTDecodeHead', head=flat))


def test_cosine_conv_seg_default_scale_16_and_small_scale_allowed():
    clf = CosineConvSeg(2, 2)
    assert [n for n, _ in clf.named_parameters()] == ['weight']
    with torch.no_grad():
        clf.weight.copy_(
            torch.tensor([[1.0, 0.0], [0.0, 5.0]]).reshape(2, 2, 1, 1))
    x = torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1)
    # 16 * cos: [16 * 0.6, 16 * 0.8] = [9.6, 12.8]
    assert_close(clf(x).flatten(), torch.tensor([9.6, 12.8]))
    small = CosineConvSeg(2, 2, scale=0.5)
    small.weight.data.copy_(clf.weight.data)
    assert_close(small(x).flatten(), torch.tensor([0.3, 0.4]))
    with pytest.raises(ValueError, match='scale'):
        CosineConvSeg(2, 2, scale=0.0)
    assert 'learn_scale=False' in repr(clf)


def test_crt_conv_seg_eval_forward_does_not_mark_retrained():
    clf = CRTConvSeg(2, 2).eval()
    with torch.no_grad():
        clf(torch.ones(1, 2, 1, 1))
    assert int(clf.crt_retrained) == 0
    clf.train()
    clf(torch.ones(1, 2, 1, 1))
    assert int(clf.crt_retrained) == 1


def test_ncm_conv_seg_refuses_data_without_labelled_pixels():
    clf = NCMConvSeg(2, 2)
    feats = torch.ones(1, 2, 2, 2)
    labels = torch.full((1, 2, 2), 255, dtype=torch.long)
    with pytest.raises(ValueError, match='no labelled pixel'):
        clf.set_centroids(feats, labels, ignore_index=255)
    # one labelled pixel is enough: class 0 = [1, 1], class 1 missing
    labels[0, 0, 0] = 0
    assert clf.set_centroids(feats, labels, ignore_index=255) == [1]


def test_ncm_missing_class_floor_is_per_image_and_pixel():
    clf = NCMConvSeg(2, 2, feat_type='un', dist='l2').eval()
    # class 0 = mean of [1, 0] and [3, 0] = [2, 0]; class 1 has no pixel
    feats = torch.tensor([[1.0, 3.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    assert clf.set_centroids(feats, torch.zeros(1, 1, 2,
                                                dtype=torch.long)) == [1]
    # two images of 1 x 2 pixels: [2, 0], [2, 1] | [0, 0], [4, 0]
    x = torch.tensor([[[2.0, 2.0], [0.0, 1.0]],
                      [[0.0, 4.0], [0.0, 0.0]]]).reshape(2, 2, 1, 2)
    with torch.no_grad():
        out = clf(x)
    # class 0: -||x - [2, 0]||^2 = [0, -1] | [-4, -4];
    # class 1: one below the lowest other score at that pixel
    expected = torch.tensor([[[0.0, -1.0], [-1.0, -2.0]],
                             [[-4.0, -4.0], [-5.0,
                                             -5.0]]]).reshape(2, 2, 1, 2)
    assert_close(out, expected)
    assert "feat_type='un', dist='l2', missing='warn'" in repr(clf)


def test_tde_head_training_forward_outside_loss_uses_every_pixel():
    # a training-mode forward without loss() (no ground truth kept): the
    # valid mask is None and the head direction takes every pixel
    head = _lt_fcn(
        dropout_ratio=0.0,
        classifier=dict(type='CausalNormConvSeg', num_heads=1, momentum=0.0))
    head.train()
    feat = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).reshape(1, 2, 1, 2)
    out = head([feat])
    assert out.shape == (1, 2, 1, 2)
    # mean of the two pixels [1, 2] and [3, 0] = [2, 1]
    assert_close(head.conv_seg.head_direction, torch.tensor([2.0, 1.0]))
