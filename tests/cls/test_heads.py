"""The lt_mm mmpretrain heads: wiring of the core formulas, stage-2
parameter names, checkpoint behaviour and bad input (hand-computed on tiny
tensors)."""
import math

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import load_state_dict
from mmpretrain.registry import MODELS
from torch.testing import assert_close

import lt_mm.cls  # noqa: F401
from lt_mm.core.stats import ClassStats

# a 2-d feature, shared by the linear heads below
W = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # row norms 5 and 2
X = torch.tensor([[1.0, 1.0]])


def _build(**cfg):
    return MODELS.build(cfg)


def _set_fc(head, weight, bias=None):
    with torch.no_grad():
        head.fc.weight.copy_(weight)
        if bias is not None:
            head.fc.bias.copy_(bias)


def _eval(head, x):
    head.eval()
    with torch.no_grad():
        return head((x, ))


# ---------------------------------------------------------------- DisAlign
def test_disalign_linear_hand_computed():
    head = _build(type='DisAlignLinearClsHead', num_classes=3, in_channels=2)
    with torch.no_grad():
        head.fc.weight.copy_(
            torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.fc.bias.copy_(torch.tensor([0.0, 0.5, -1.0]))
        head.calibration.confidence_layer.weight.copy_(
            torch.tensor([[0.5, -0.25]]))
        head.calibration.confidence_layer.bias.zero_()
        head.calibration.logit_scale.copy_(torch.tensor([2.0, 1.0, 0.5]))
        head.calibration.logit_bias.copy_(torch.tensor([0.0, 1.0, -2.0]))
    x = torch.tensor([[1.0, 2.0]])
    # z = W x + b = [1, 2.5, 2]; sigma = sigmoid(0.5 - 0.5) = 0.5
    # Eq. 5: z + sigma ((alpha - 1) z + beta)
    #   = [1 + .5 (1 + 0), 2.5 + .5 (0 + 1), 2 + .5 (-1 - 2)]
    #   = [1.5, 3.0, 0.5]
    expected = torch.tensor([[1.5, 3.0, 0.5]])
    assert_close(_eval(head, x), expected)
    head.train()
    assert_close(head((x, )), expected)  # the loss sees calibrated logits
    assert head.stage2_parameter_names() == [
        'calibration.logit_scale', 'calibration.logit_bias',
        'calibration.confidence_layer'
    ]


def test_disalign_identity_at_init_and_init_cfg_kept():
    head = _build(
        type='DisAlignLinearClsHead',
        num_classes=4,
        in_channels=3,
        sigma_init='constant',
        sigma_const=0.1)
    head.init_weights()
    # init_cfg Normal(layer='Linear') must not overwrite sigma's init
    assert torch.all(head.calibration.confidence_layer.weight == 0.1)
    assert {n
            for n, _ in head.named_parameters()
            } >= {'fc.weight', 'fc.bias', 'calibration.logit_scale'}
    x = torch.randn(5, 3)
    assert torch.equal(_eval(head, x), head.fc(x))


def test_disalign_cosine_head():
    head = _build(
        type='DisAlignCosineClsHead', num_classes=2, in_channels=2, scale=2.0)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
        head.calibration.confidence_layer.weight.zero_()
        head.calibration.logit_bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.tensor([[3.0, 4.0]])
    # cosine logits: 2 * [3/5, 4/5] = [1.2, 1.6]; sigma = sigmoid(0) = .5
    # alpha = 1: + 0.5 * beta -> [1.7, 1.1]
    assert_close(_eval(head, x), torch.tensor([[1.7, 1.1]]))
    assert 'fc.weight' in head.state_dict()


def test_disalign_normed_feat_sigma_of_a_zero_feature_in_half():
    # F.normalize's default eps 1e-12 is 0 in float16: 0 / 0 = NaN
    head = _build(
        type='DisAlignCosineClsHead',
        num_classes=2,
        in_channels=2,
        sigma_input='normed_feat').half()
    x = torch.zeros(1, 2, dtype=torch.float16)
    assert torch.isfinite(head.train_logits(x)).all()


# --------------------------------------------------------- decoupling
def test_taunorm_head_hand_computed():
    head = _build(type='TauNormClsHead', num_classes=2, in_channels=2, tau=1.0)
    _set_fc(head, W, torch.tensor([10.0, 10.0]))
    # tau = 1: rows [3, 4] / 5 and [0, 2] / 2 -> x . w = [1.4, 1.0];
    # the bias is dropped (Decoupling Eq. 3)
    assert_close(_eval(head, X), torch.tensor([[1.4, 1.0]]))
    # tau = 0.5: [7 / sqrt(5), 2 / sqrt(2)] = [3.130495, 1.414214]
    head.tau = 0.5
    assert_close(
        _eval(head, X), torch.tensor([[7 / math.sqrt(5),
                                       math.sqrt(2)]]))
    head.train()
    assert_close(head((X, )), torch.tensor([[17.0, 12.0]]))  # plain fc


def test_lws_head_hand_computed():
    head = _build(type='LWSClsHead', num_classes=2, in_channels=2)
    _set_fc(head, W, torch.tensor([1.0, 1.0]))
    with torch.no_grad():
        head.lws.scales.copy_(torch.tensor([2.0, 0.5]))
    # (W x + b) * f = [8, 3] * [2, 0.5] = [16, 1.5]
    assert_close(_eval(head, X), torch.tensor([[16.0, 1.5]]))
    assert head.stage2_parameter_names() == ['lws.scales']


def test_crt_reinit_on_stage1_checkpoint_only():
    stage1 = _build(type='LinearClsHead', num_classes=2, in_channels=2)
    _set_fc(stage1, W, torch.tensor([1.0, -1.0]))
    sd1 = stage1.state_dict()
    head = _build(type='CRTClsHead', num_classes=2, in_channels=2)
    assert head.stage2_parameter_names() == ['fc']
    # mmengine's loader (the runner's load_from path) and torch's
    for load in (lambda m, sd: load_state_dict(m, sd),
                 lambda m, sd: m.load_state_dict(sd, strict=False)):
        load(head, sd1)
        assert not torch.equal(head.fc.weight, W)  # re-initialised
        assert int(head.crt_retrained) == 0
    head.train()
    head((X, ))  # first training step marks the classifier re-trained
    assert int(head.crt_retrained) == 1
    _set_fc(head, 2 * W, torch.tensor([0.5, 0.5]))
    sd2 = head.state_dict()
    fresh = _build(type='CRTClsHead', num_classes=2, in_channels=2)
    load_state_dict(fresh, sd2)
    assert torch.equal(fresh.fc.weight, 2 * W)  # stage-2 fc loads
    assert int(fresh.crt_retrained) == 1


def test_ncm_head_hand_computed():
    head = _build(
        type='NCMClsHead', num_classes=2, in_channels=2, feat_type='un')
    with pytest.raises(RuntimeError, match='NCMCentroidHook'):
        _eval(head, X)
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    head.set_centroids(feats, torch.tensor([0, 0, 1, 1]))
    # centroids [1, 0] and [0, 3]; x = [1, 1]:
    # -||x - c0||^2 = -(0 + 1) = -1; -||x - c1||^2 = -(1 + 4) = -5
    assert_close(_eval(head, X), torch.tensor([[-1.0, -5.0]]))
    sd = head.state_dict()
    assert {'centroids', 'global_mean', 'ncm_ready'} <= set(sd)
    fresh = _build(
        type='NCMClsHead', num_classes=2, in_channels=2, feat_type='un')
    fresh.load_state_dict(sd)
    assert fresh.ready


# ---------------------------------------------------------------- TDE
def test_causal_norm_head_direction_and_alpha():
    head = _build(
        type='CausalNormClsHead',
        num_classes=2,
        in_channels=2,
        num_heads=1,
        tau=1.0,
        gamma=0.0,
        alpha=1.0)
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(2))
    assert 'fc.head_direction' in head.state_dict()
    head.train()
    batch = torch.tensor([[1.0, 0.0], [1.0, 2.0]])  # mean [1, 1]
    head((batch, ))
    # reference update: d = 0.9 * 0 + mean = [1, 1]
    assert_close(head.fc.head_direction, torch.tensor([1.0, 1.0]))
    # TDE (Eq. 8), K = 1, tau = 1, gamma = 0, x = [1, 0]:
    # d_hat = [1, 1] / sqrt 2, cos = 1 / sqrt 2,
    # x - alpha cos d_hat = [1 - 1/2, -1/2] -> logits [0.5, -0.5]
    x = torch.tensor([[1.0, 0.0]])
    assert_close(_eval(head, x), torch.tensor([[0.5, -0.5]]))
    assert_close(head.fc.head_direction, torch.tensor([1.0, 1.0]))  # eval
    head.alpha = 0.0  # as --cfg-options model.head.alpha=0 would
    assert_close(_eval(head, x), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match='alpha'):
        head.alpha = -1


# ------------------------------------------------------------- posthoc
def test_posthoc_nc_tau_and_logit_adjust(tmp_path):
    head = _build(
        type='LTLinearClsHead',
        num_classes=2,
        in_channels=2,
        posthoc=dict(type='nc_tau', tau=1.0, counts=[4, 1]))
    _set_fc(head, W, torch.tensor([1.0, 1.0]))
    # z = [8, 3]; CDT Eq. 5: z / N^tau = [8 / 4, 3 / 1] = [2, 3]
    assert_close(_eval(head, X), torch.tensor([[2.0, 3.0]]))
    assert 'posthoc.counts' in head.state_dict()
    head.train()
    assert_close(head((X, )), torch.tensor([[8.0, 3.0]]))  # not in training
    path = tmp_path / 'stats.json'
    ClassStats(counts=[4, 1], unit='images').save(path)
    la = _build(
        type='LTLinearClsHead',
        num_classes=2,
        in_channels=2,
        posthoc=dict(type='logit_adjust', tau=1.0, stats_file=str(path)))
    _set_fc(la, W, torch.tensor([1.0, 1.0]))
    # z - tau log N = [8 - ln 4, 3 - 0]
    assert_close(_eval(la, X), torch.tensor([[8 - math.log(4), 3.0]]))


# ------------------------------------------------------------ bad input
def test_bad_input_errors(tmp_path):
    bad = tmp_path / 'stats3.json'
    ClassStats(counts=[5, 3, 1], unit='images').save(bad)
    # a stats file of another length than num_classes
    with pytest.raises(ValueError, match='num_classes=2'):
        _build(
            type='LTLinearClsHead',
            num_classes=2,
            in_channels=2,
            posthoc=dict(type='nc_tau', stats_file=str(bad)))
    with pytest.raises(ValueError, match='num_classes=2'):
        _build(
            type='DisAlignLinearClsHead',
            num_classes=2,
            in_channels=2,
            loss=dict(type='GRWLoss', stats_file=str(bad)))
    # a head / loss that needs counts with none given
    with pytest.raises(ValueError, match='needs per-class training counts'):
        _build(
            type='LTLinearClsHead',
            num_classes=2,
            in_channels=2,
            posthoc=dict(type='logit_adjust', tau=1.0))
    with pytest.raises(ValueError, match='needs per-class training counts'):
        _build(
            type='LTLinearClsHead',
            num_classes=2,
            in_channels=2,
            loss=dict(type='CDTLoss', gamma=0.2))
    with pytest.raises(ValueError, match='posthoc type'):
        _build(
            type='LTLinearClsHead',
            num_classes=2,
            in_channels=2,
            posthoc=dict(type='norm', counts=[1, 2]))
    with pytest.raises(ValueError, match='num_heads'):
        _build(type='CausalNormClsHead', num_classes=2, in_channels=3)


# --------------------------------------------------------------- losses
def test_grw_loss_hand_computed():
    loss = MODELS.build(dict(type='GRWLoss', rho=1.0, counts=[3, 1]))
    # r = [.75, .25]; 1/r = [4/3, 4] normalised to sum 2 -> w = [.5, 1.5]
    # CE0 = log(1 + e^-1) (logits [1, 0], y 0); CE1 = ln 2 (y 1)
    # weighted mean = (.5 CE0 + 1.5 CE1) / (.5 + 1.5)
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    ce0, ce1 = math.log(1 + math.exp(-1)), math.log(2)
    expected = (0.5 * ce0 + 1.5 * ce1) / 2.0
    out = loss(logits, torch.tensor([0, 1]), avg_factor=2)
    assert_close(out, torch.tensor(expected))
    with pytest.raises(ValueError, match='hard labels'):
        loss(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_cdt_loss_epoch_from_message_hub():
    loss = MODELS.build(
        dict(type='CDTLoss', gamma=1.0, counts=[4, 1], start_epoch=2))
    logits = torch.tensor([[2.0, 4.0]])
    y = torch.tensor([1])
    hub = MessageHub.get_instance('test_cdt_loss_epoch')
    # before start_epoch: plain CE = log(1 + e^(2 - 4))
    hub.update_info('epoch', 1)
    assert_close(loss(logits, y), torch.tensor(math.log(1 + math.exp(-2))))
    # from start_epoch: a = (4 / N)^1 = [1, 4]: logits [2, 1]
    # -> CE = log(1 + e^(2 - 1))
    hub.update_info('epoch', 2)
    assert_close(loss(logits, y), torch.tensor(math.log(1 + math.exp(1))))


# ------------------------------------- cached normalised weights (#13)
@pytest.mark.parametrize('cfg', [
    dict(type='TauNormClsHead', tau=0.7),
    dict(type='CosineClsHead', learn_scale=True),
    dict(type='DisAlignCosineClsHead'),
    dict(type='CausalNormClsHead', alpha=1.0),
])
def test_cached_weights_equal_uncached_and_follow_updates(cfg):
    torch.manual_seed(0)
    head = _build(num_classes=3, in_channels=4, **cfg)
    x = torch.randn(5, 4)
    head.train()
    head((torch.rand(6, 4), ))  # TDE: a non-zero head direction

    def both():
        head.eval()
        with torch.no_grad():  # eval + no_grad: the cached path
            cached = head((x, ))
            assert_close(head((x, )), cached)  # served from the cache
        uncached = head((x, )).detach()  # grad enabled: no cache
        assert_close(cached, uncached)
        return cached

    before = both()
    # an optimizer step on every parameter invalidates the cache
    head.train()
    out = head((torch.rand(6, 4), ))
    (out * torch.randn_like(out)).sum().backward()
    torch.optim.SGD(head.parameters(), lr=0.5).step()
    after = both()
    assert not torch.allclose(after, before)
    # load_state_dict (in-place copies) too
    fresh = _build(num_classes=3, in_channels=4, **cfg)
    fresh.load_state_dict(head.state_dict())
    fresh.eval()
    with torch.no_grad():
        fresh((x, ))
        fresh.load_state_dict(
            _build(num_classes=3, in_channels=4, **cfg).state_dict())
        other = fresh((x, ))
    fresh.load_state_dict(head.state_dict())
    with torch.no_grad():
        assert_close(fresh((x, )), after)
    assert not torch.allclose(other, after)


def test_tde_head_checks_the_direction_without_per_batch_sync():
    head = _build(type='CausalNormClsHead', num_classes=2, in_channels=2)
    head.train()
    head((torch.rand(3, 2), ))
    head.eval()
    x = torch.rand(2, 2)
    with torch.no_grad():
        head((x, ))
        key = head.fc._checked_direction
        d = head.fc.head_direction
        assert key == (d.data_ptr(), d._version)
        head((x, ))  # unchanged buffer: no new check
        assert head.fc._checked_direction == key
    head.train()
    head((torch.rand(3, 2), ))  # the direction moves: checked again
    head.eval()
    with torch.no_grad():
        head((x, ))
    assert head.fc._checked_direction != key


def test_disalign_checkpoint_with_the_old_submodule_name_loads():
    head = _build(type='DisAlignLinearClsHead', num_classes=3, in_channels=4)
    state = {
        k.replace('calibration.', 'disalign.'): torch.full_like(v, 0.25)
        for k, v in head.state_dict().items()
    }
    assert 'disalign.logit_scale' in state
    res = head.load_state_dict(state, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    assert torch.all(head.calibration.logit_scale == 0.25)
