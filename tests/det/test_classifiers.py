"""Box classifiers and the TDE box head on real mmdet objects.

Every expected number is computed by hand in the comments; the tests build
mmdet's own heads (``Shared2FCBBoxHead`` / ``CascadeRoIHead``) and go
through mmdet's ``loss_and_target`` and ``predict_by_feat``.
"""
import math

import pytest
import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch.testing import assert_close

import lt_mm.det  # noqa: F401  (registers the modules)
from lt_mm.core.causal_norm import (CausalNormClassifier, causal_norm_logits,
                                    tde_logits)


def _build(cfg):
    return MODELS.build(cfg)


# ------------------------------------------------------------- DisAlign
def test_disalign_linear_hand_example_and_identity_at_init():
    # D = 2 features, C = 2 foreground classes + background (last)
    layer = _build(dict(type='DisAlignLinear', in_features=2, out_features=3))
    x = torch.tensor([[1.0, 2.0]])
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.]]))
        layer.bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
    # z = W x + b = [1 + .5, 2 - 1, 3 + 0] = [1.5, 1.0, 3.0]
    # at init alpha = 1, beta = 0: the stage-1 classifier, bit-exact
    assert torch.equal(layer(x), torch.tensor([[1.5, 1.0, 3.0]]))
    with torch.no_grad():
        layer.calibration.logit_scale.copy_(torch.tensor([2.0, 3.0]))
        layer.calibration.logit_bias.copy_(torch.tensor([1.0, -1.0]))
        conf = layer.calibration.confidence_layer
        conf.weight.zero_()
        conf.bias.fill_(math.log(3.0))  # sigma = sigmoid(log 3) = 3/4
    # z_hat_j = z_j + sigma * ((alpha_j - 1) z_j + beta_j):
    #   j=0: 1.5 + .75 * (1 * 1.5 + 1) = 1.5 + 1.875 = 3.375
    #   j=1: 1.0 + .75 * (2 * 1.0 - 1) = 1.0 + 0.75  = 1.75
    #   background passes through: 3.0
    assert_close(layer(x), torch.tensor([[3.375, 1.75, 3.0]]))
    assert layer.stage2_parameter_names() == ['calibration']


def test_disalign_cosine_hand_example():
    layer = _build(
        dict(
            type='DisAlignCosineLinear',
            in_features=2,
            out_features=3,
            scale=2.0))
    x = torch.tensor([[3.0, 4.0]])  # |x| = 5
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1., 0.], [0., 2.], [-1., 0.]]))
        layer.calibration.logit_scale.copy_(torch.tensor([2.0, 1.0]))
        layer.calibration.logit_bias.copy_(torch.tensor([0.0, 0.5]))
        conf = layer.calibration.confidence_layer
        conf.weight.zero_()
        conf.bias.zero_()  # sigma = 1/2
    # cosines: [3/5, 4/5, -3/5] -> z = 2 * cos = [1.2, 1.6, -1.2]
    # j=0: 1.2 + .5 * (1 * 1.2 + 0)  = 1.8
    # j=1: 1.6 + .5 * (0 * 1.6 + .5) = 1.85
    # bg: -1.2 unchanged
    assert_close(layer(x), torch.tensor([[1.8, 1.85, -1.2]]))
    names = {n for n, _ in layer.named_parameters()}
    assert {'weight', 'scale', 'calibration.logit_scale'} <= names


def test_cosine_linear_hand_example():
    layer = _build(
        dict(type='CosineLinear', in_features=2, out_features=3, scale=20.0))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1., 0.], [0., 3.], [1., 1.]]))
    x = torch.tensor([[0.0, 2.0]])
    # cos = [0, 1, 1/sqrt(2)] -> 20 * cos
    assert_close(layer(x), torch.tensor([[0.0, 20.0, 20 / math.sqrt(2)]]))


# --------------------------------------------------------------- tau-norm
def test_tau_norm_linear_background_row_untouched():
    layer = _build(
        dict(type='TauNormLinear', in_features=2, out_features=3, tau=1.0))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2., 0.], [0., .5], [3., 4.]]))
        layer.bias.copy_(torch.tensor([1.0, 2.0, -1.0]))
    x = torch.tensor([[1.0, 1.0]])
    # train mode: plain linear [2 + 1, .5 + 2, 7 - 1] = [3, 2.5, 6]
    layer.train()
    assert_close(layer(x), torch.tensor([[3.0, 2.5, 6.0]]))
    # eval, tau = 1: fg rows / ||w|| -> [1, 0], [0, 1]; fg bias dropped;
    # background row [3, 4] and bias -1 kept: [1, 1, 7 - 1]
    layer.eval()
    assert_close(layer(x), torch.tensor([[1.0, 1.0, 6.0]]))
    # tau = 0.5: rows / sqrt(norm): [2 / sqrt 2, 0], [0, .5 / sqrt .5]
    layer.tau = 0.5
    assert_close(layer(x), torch.tensor([[math.sqrt(2), math.sqrt(.5), 6.0]]))


# ------------------------------------------------------- TDE box head
def _tiny_tde_head(**cls_kwargs):
    cls_cfg = dict(type='CausalNormLinear', num_heads=2)
    cls_cfg.update(cls_kwargs)
    return _build(
        dict(
            type='CausalNormShared2FCBBoxHead',
            in_channels=2,
            roi_feat_size=1,
            fc_out_channels=4,
            num_classes=2,
            cls_predictor_cfg=cls_cfg))


def test_tde_head_keeps_stock_names_and_skips_normal_init():
    head = _tiny_tde_head()
    names = dict(head.named_parameters())
    assert names['fc_cls.weight'].shape == (3, 4)
    assert 'fc_cls.head_direction' in dict(head.named_buffers())
    # mmdet's Normal(std=0.01) init of fc_cls is removed (reference init)
    assert not any(
        isinstance(c, dict) and c.get('override') == dict(name='fc_cls')
        for c in head.init_cfg)


def test_head_direction_uses_foreground_rois_only():
    head = _tiny_tde_head(momentum=0.5)
    with torch.no_grad():
        # shared fcs pass the 2 RoI features through: x_cls = [x0, x1, 0, 0]
        fc1, fc2 = head.shared_fcs
        fc1.weight.zero_()
        fc1.weight[0, 0] = 1.0
        fc1.weight[1, 1] = 1.0
        fc1.bias.zero_()
        fc2.weight.copy_(torch.eye(4))
        fc2.bias.zero_()
    # one image, 3 sampled RoIs: 2 positives (classes 1 and 0), 1 negative
    priors = torch.tensor([[0., 0., 10., 10.], [5., 5., 20., 20.],
                           [30., 30., 40., 40.]])
    gt_bboxes = torch.tensor([[0., 0., 10., 10.], [5., 5., 20., 20.]])
    assign = AssignResult(
        num_gts=2,
        gt_inds=torch.tensor([1, 2, 0]),
        max_overlaps=torch.tensor([1.0, 1.0, 0.0]),
        labels=torch.tensor([1, 0, -1]))
    res = SamplingResult(
        pos_inds=torch.tensor([0, 1]),
        neg_inds=torch.tensor([2]),
        priors=priors,
        gt_bboxes=gt_bboxes,
        assign_result=assign,
        gt_flags=torch.zeros(3, dtype=torch.uint8))
    # RoI features in the sampled order (positives first, as mmdet)
    feats = torch.tensor([[1., 2.], [3., 4.], [100., 100.]]).view(3, 2, 1, 1)
    head.train()
    cls_score, bbox_pred = head(feats)
    rois = torch.cat([torch.zeros(3, 1), priors], dim=1)
    cfg = ConfigDict(pos_weight=-1)
    out = head.loss_and_target(cls_score, bbox_pred, rois, [res], cfg)
    assert out['bbox_targets'][0].tolist() == [1, 0, 2]  # bg = 2
    # d = 0.5 * 0 + mean of the foreground x_cls = ([1,2,0,0]+[3,4,0,0])/2
    # (the background RoI [100, 100] would give [34.67, 35.33, 0, 0])
    assert_close(head.fc_cls.head_direction, torch.tensor([2., 3., 0., 0.]))
    cls_score, bbox_pred = head(feats)
    head.loss_and_target(cls_score, bbox_pred, rois, [res], cfg)
    # d = 0.5 * [2, 3, 0, 0] + [2, 3, 0, 0] = [3, 4.5, 0, 0]
    assert_close(head.fc_cls.head_direction, torch.tensor([3., 4.5, 0., 0.]))
    assert set(out['loss_bbox']) >= {'loss_cls', 'loss_bbox', 'acc'}


def _hand_tde_head():
    """D = 4, K = 2 heads, tau = 2 (scale tau / K = 1), gamma = 0,
    alpha = 1, C = 2 foreground classes + background."""
    head = _tiny_tde_head(tau=2.0, gamma=0.0, alpha=1.0)
    with torch.no_grad():
        # unit-norm chunks: class 0 = (1,0 | 0,1), class 1 = (0,1 | 1,0),
        # background = (.6,.8 | 0,1)
        head.fc_cls.weight.copy_(
            torch.tensor([[1., 0., 0., 1.], [0., 1., 1., 0.], [.6, .8, 0.,
                                                               1.]]))
        head.fc_cls.head_direction.copy_(torch.tensor([1., 0., 0., 1.]))
    return head.eval()


# x = (3, 4 | 0, 2): normalised chunks (.6, .8 | 0, 1); d chunks (1,0|0,1)
# cos = (.6, 1); alpha = 1: x_eff = (.6-.6, .8 | 0, 1-1) = (0, .8 | 0, 0)
# de-confounded logits y = [.6 + 1, .8 + 0, .36 + .64 + 1] = [1.6, .8, 2.0]
# TDE logits           t = [0 + 0,  .8 + 0, .64 + 0]        = [0, .8, .64]
_P = [math.exp(v) for v in (1.6, 0.8, 2.0)]
_Q = [math.exp(v) for v in (0.0, 0.8, 0.64)]
_P_BG = _P[2] / sum(_P)  # 7.389 / 14.568 = 0.50722
_P_FG = 1 - _P_BG  # 0.49278
# Eq. 9: final_c = (1 - p_bg) * q_c / (q_0 + q_1), final_bg = p_bg
_EXPECTED = [
    _P_FG * _Q[0] / (_Q[0] + _Q[1]),  # 0.49278 * 1 / 3.2255    = 0.15277
    _P_FG * _Q[1] / (_Q[0] + _Q[1]),  # 0.49278 * 2.2255/3.2255 = 0.34000
    _P_BG,  # 0.50722
]


def test_background_exempted_scores_through_predict_by_feat():
    head = _hand_tde_head()
    x = torch.tensor([[3., 4., 0., 2.]])
    cls_score = head.fc_cls(x)
    # the head emits log-probabilities: exp sums to one
    assert_close(cls_score.exp().sum(), torch.tensor(1.0))
    # ... identical to lt_mm.core's CausalNormClassifier.predict
    core = CausalNormClassifier(
        4,
        3,
        num_heads=2,
        tau=2.0,
        gamma=0.0,
        alpha=1.0,
        background_exempt=True)
    core.load_state_dict(head.fc_cls.state_dict())
    assert_close(cls_score, core.eval().predict(x))
    roi = torch.tensor([[0., 4., 4., 20., 20.]])
    bbox_pred = torch.zeros(1, 8)
    meta = dict(img_shape=(32, 32))
    res = head.predict_by_feat((roi, ), (cls_score, ), (bbox_pred, ), [meta],
                               rcnn_test_cfg=None)[0]
    # mmdet's softmax(log P) = P: exactly Eq. 9, no double softmax
    # (a second softmax would give [.275, .332, .393])
    assert_close(res.scores, torch.tensor([_EXPECTED]), atol=1e-6, rtol=0)
    # the ranking of the foreground flips (TDE) while p_bg is kept
    assert res.scores[0, 1] > res.scores[0, 0]
    # with mmdet's NMS post-processing: one box above 0.2, class 1
    test_cfg = ConfigDict(
        score_thr=0.2, nms=dict(type='nms', iou_threshold=0.5), max_per_img=10)
    det = head.predict_by_feat((roi, ), (cls_score, ), (bbox_pred, ), [meta],
                               rcnn_test_cfg=test_cfg)[0]
    assert det.labels.tolist() == [1]
    assert_close(det.scores, torch.tensor([_EXPECTED[1]]), atol=1e-6, rtol=0)


def test_cascade_fuses_stage_log_probs_as_geometric_mean():
    torch.manual_seed(0)
    num_classes = 3
    head_cfg = [
        dict(
            type='CausalNormShared2FCBBoxHead',
            in_channels=4,
            fc_out_channels=8,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=stds),
            reg_class_agnostic=True,
            cls_predictor_cfg=dict(type='CausalNormLinear', alpha=1.5))
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1])
    ]
    roi_head = _build(
        dict(
            type='CascadeRoIHead',
            num_stages=2,
            stage_loss_weights=[1, 0.5],
            bbox_roi_extractor=dict(
                type='SingleRoIExtractor',
                roi_layer=dict(
                    type='RoIAlign', output_size=7, sampling_ratio=0),
                out_channels=4,
                featmap_strides=[4, 8, 16, 32]),
            bbox_head=head_cfg))
    roi_head.init_weights()
    captured = []
    for head in roi_head.bbox_head:
        with torch.no_grad():
            head.fc_cls.head_direction.copy_(torch.rand(8) + 0.5)
        head.fc_cls.register_forward_hook(lambda m, i, o: captured.append(
            (i[0].detach(), o.detach())))
    roi_head.eval()
    feats = tuple(torch.rand(1, 4, 64 // s, 64 // s) for s in (4, 8, 16, 32))
    proposals = InstanceData(
        bboxes=torch.tensor([[2., 2., 30., 30.], [10., 12., 50., 40.],
                             [0., 0., 63., 63.]]))
    with torch.no_grad():
        res = roi_head.predict_bbox(
            feats, [dict(img_shape=(64, 64))], [proposals],
            rcnn_test_cfg=None)[0]
    assert len(captured) == 2
    log_ps = []
    for head, (x, out) in zip(roi_head.bbox_head, captured):
        fc = head.fc_cls
        # Eq. 9 written out: bg keeps p_bg, fg shares 1 - p_bg like q
        y = causal_norm_logits(x, fc.weight, 2, fc.tau, fc.gamma)
        t = tde_logits(x, fc.weight, fc.head_direction, 1.5, 2, fc.tau,
                       fc.gamma)
        p, q = y.softmax(1), t.softmax(1)
        fg = (1 - p[:, -1:]) * q[:, :-1] / q[:, :-1].sum(1, keepdim=True)
        assert_close(
            out.exp(), torch.cat([fg, p[:, -1:]], dim=1), atol=1e-6, rtol=0)
        log_ps.append(out)
    # Cascade: softmax(mean_s log P_s) = prod_s P_s^(1/2) / Z
    geo = (log_ps[0].exp() * log_ps[1].exp()).sqrt()
    assert_close(res.scores, geo / geo.sum(1, keepdim=True), atol=1e-6, rtol=0)


# ------------------------------------------------------------ bad input
def test_bad_classifier_arguments_fail_at_build_time():
    with pytest.raises(ValueError, match='alpha'):
        _tiny_tde_head(alpha=-1.0)
    with pytest.raises(ValueError, match='tau'):
        _build(
            dict(
                type='TauNormLinear', in_features=2, out_features=3, tau=-0.5))
    with pytest.raises(ValueError, match='out_features'):
        _build(dict(type='DisAlignLinear', in_features=2, out_features=1))
    with pytest.raises(ValueError, match='CausalNormLinear'):
        _build(
            dict(
                type='CausalNormShared2FCBBoxHead',
                in_channels=2,
                roi_feat_size=1,
                fc_out_channels=4,
                num_classes=2,
                cls_predictor_cfg=dict(type='Linear')))


# ------------------------------------- cached normalised weights (#13)
@pytest.mark.parametrize('cfg', [
    dict(type='TauNormLinear', tau=0.7),
    dict(type='TauNormLinear', tau=1.0, keep_fg_bias=True),
    dict(type='CosineLinear'),
    dict(type='DisAlignCosineLinear'),
    dict(type='CausalNormLinear', alpha=1.0),
    dict(type='CausalNormLinear', alpha=1.0, background_exempt=False),
])
def test_box_classifier_cache_equals_uncached_and_follows_updates(cfg):
    torch.manual_seed(0)

    def make():
        return _build(dict(cfg, in_features=4, out_features=3))

    layer = make()
    x = torch.randn(5, 4)
    if cfg['type'] == 'CausalNormLinear':
        layer.update_head_direction(torch.rand(6, 4))

    def both():
        layer.eval()
        with torch.no_grad():
            cached = layer(x)
            assert_close(layer(x), cached)
        uncached = layer(x).detach()  # grad enabled: nothing cached
        assert_close(cached, uncached)
        return cached

    before = both()
    layer.train()
    out = layer(x)
    (out * torch.randn_like(out)).sum().backward()
    torch.optim.SGD(layer.parameters(), lr=0.5).step()
    after = both()
    assert not torch.allclose(after, before)
    fresh = make()
    fresh.load_state_dict(layer.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert_close(fresh(x), after)
        fresh.load_state_dict(make().state_dict())
        assert not torch.allclose(fresh(x), after)


def test_tde_box_scores_are_eq9_after_mmdet_softmax_1203_classes():
    # the whole path: CausalNormLinear -> log P -> mmdet's softmax in
    # predict_by_feat; compared with Eq. 9 written literally in float64
    # ((1 - p_bg) q_c / (1 - q_bg), 1 - p_bg as the sum of the fg p_c)
    torch.manual_seed(0)
    layer = _build(
        dict(
            type='CausalNormLinear',
            in_features=8,
            out_features=1204,
            tau=40.0))
    layer.update_head_direction(torch.rand(16, 8))
    with torch.no_grad():
        # fg rows point away from the (positive) features, the background
        # row along them: gaps up to ~40 between bg and the best fg logit
        layer.weight.copy_(torch.randn(1204, 8) - 1.0)
        layer.weight[-1] = 1.0
    x = torch.rand(50, 8)
    layer.eval()
    with torch.no_grad():
        scores = torch.softmax(layer(x), dim=-1).double()
    w = layer.weight.detach().double()
    d = layer.head_direction.double()
    plain = causal_norm_logits(x.double(), w, 2, tau=40.0)
    tde = tde_logits(x.double(), w, d, 1.5, 2, tau=40.0)
    p, q = plain.softmax(1), tde.softmax(1)
    ref = torch.cat([
        p[:, :-1].sum(1, keepdim=True) * q[:, :-1] /
        q[:, :-1].sum(1, keepdim=True), p[:, -1:]
    ], 1)
    assert (ref[:, -1] > 1 - 1e-6).any()  # background-dominated RoIs
    assert (scores - ref).abs().max() <= 1e-5  # acceptance (float32)
    # relative: also the tiny foreground scores of those RoIs (the float32
    # logits of magnitude ~40 carry ~1e-6 relative rounding themselves)
    assert ((scores - ref).abs() / ref).max() <= 1e-4
