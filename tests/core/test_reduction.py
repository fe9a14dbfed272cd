"""Tests for lt_mm.core.reduction (the reductions of GRW and CDT)."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lt_mm.core.cdt import CDTCrossEntropy
from lt_mm.core.grw import GRWCrossEntropy
from lt_mm.core.reduction import (LongTailCrossEntropy, reduced_cross_entropy,
                                  with_defaults)

LN2, LN3 = math.log(2.0), math.log(3.0)
# 4 elements, C = 2:
#   row 0: logits [0, 0],      label 0 -> CE = ln 2
#   row 1: logits [0, ln 2],   label 1 -> p = 2/3, CE = ln 3 - ln 2
#   row 2: logits [ln 2, 0],   label 1 -> p = 1/3, CE = ln 3
#   row 3: logits [9, -9],     label 255 (ignored)
LOGITS = torch.tensor([[0.0, 0.0], [0.0, LN2], [LN2, 0.0], [9.0, -9.0]])
LABELS = torch.tensor([0, 1, 1, 255])
CE = [LN2, LN3 - LN2, LN3]
W = torch.tensor([2.0, 0.5])  # class weights: w_i = [2, .5, .5]
V = torch.tensor([1.0, 2.0, 0.0, 7.0])  # element weights (7: ignored row)


def _red(reduction, **kw):
    return reduced_cross_entropy(
        LOGITS, LABELS, W, reduction, ignore_index=255, **kw)


def test_reductions_hand_computed():
    # v_i w_i = [1 * 2, 2 * .5, 0 * .5] = [2, 1, 0]
    total = 2 * CE[0] + 1 * CE[1] + 0 * CE[2]
    assert_close(_red('sum', weight=V), torch.tensor(total))
    # weighted mean: / sum v_i w_i = 3; avg_factor does not change it
    assert_close(_red('weighted_mean', weight=V), torch.tensor(total / 3))
    assert_close(
        _red('weighted_mean', weight=V, avg_factor=100.0),
        torch.tensor(total / 3))
    # mean: / M = 4 (all elements), / 3 non-ignored, / avg_factor
    assert_close(_red('mean', weight=V), torch.tensor(total / 4))
    assert_close(
        _red('mean', weight=V, avg_non_ignore=True), torch.tensor(total / 3))
    assert_close(
        _red('mean', weight=V, avg_factor=5.0), torch.tensor(total / 5))
    # none: per element, 0 at the ignored one
    assert_close(
        _red('none', weight=V), torch.tensor([2 * CE[0], CE[1], 0.0, 0.0]))
    # no class weights, no element weights: plain CE
    plain = reduced_cross_entropy(LOGITS[:3], LABELS[:3], reduction='mean')
    assert_close(plain, torch.tensor(sum(CE) / 3))


def test_ignore_index_none_ignores_nothing_and_empty_is_zero():
    # ignore_index=None: label 255 is a real label -> out of range, named
    with pytest.raises(ValueError, match=r'labels \[255\] are outside'):
        reduced_cross_entropy(LOGITS, LABELS, W, 'sum')
    labels = torch.full((4, ), 255)
    logits = LOGITS.clone().requires_grad_()
    for red in ('weighted_mean', 'mean', 'sum'):
        out = reduced_cross_entropy(
            logits, labels, W, red, ignore_index=255, avg_non_ignore=True)
        assert out.item() == 0.0
    out.backward()
    assert_close(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize('bad', [-100, -1, 2])
def test_out_of_range_label_is_refused_not_ignored(bad):
    # -100 is F.cross_entropy's own default ignore label: it used to give a
    # zero loss while w[-100] still entered the weighted-mean denominator
    labels = torch.tensor([0, 1, bad, 1])
    for red in ('weighted_mean', 'mean', 'sum', 'none'):
        with pytest.raises(
                ValueError, match=rf'\[{bad}\] are outside \[0, 2\)'):
            reduced_cross_entropy(LOGITS[:, :2], labels, W[:2], red)
    # the same label as the ignore label is ignored
    out = reduced_cross_entropy(
        LOGITS[:, :2], labels, W[:2], 'weighted_mean', ignore_index=bad)
    keep = torch.tensor([0, 1, 3])
    ref = F.cross_entropy(LOGITS[keep, :2], labels[keep], weight=W[:2])
    assert_close(out, ref)


def test_bad_inputs():
    with pytest.raises(ValueError, match='reduction'):
        _red('avg')
    with pytest.raises(ValueError, match='hard labels'):
        reduced_cross_entropy(LOGITS, torch.zeros(4, 2))
    with pytest.raises(ValueError, match='background=True'):
        reduced_cross_entropy(LOGITS, LABELS, torch.ones(3), 'sum', 255)


def test_module_columns_weights_and_override():
    # counts [1, 3], rho 1: r^-1 = [4, 4/3] -> sum 2 -> w = [1.5, 0.5]
    loss = GRWCrossEntropy([1, 3], 1.0, ignore_index=255, loss_weight=2.0)
    assert loss.num_classes == 2 and loss.num_columns == 2
    # weighted mean over rows 0-2: w = [1.5, .5, .5]
    expected = (1.5 * CE[0] + 0.5 * CE[1] + 0.5 * CE[2]) / 2.5
    assert_close(loss(LOGITS, LABELS), torch.tensor(2 * expected))
    # per-call override of reduction and ignore label
    assert_close(
        loss(
            LOGITS[:3], LABELS[:3], reduction_override='sum', ignore_index=-1),
        torch.tensor(2 * 2.5 * expected))
    with pytest.warns(DeprecationWarning, match='reduction_override'):
        out = loss(LOGITS, LABELS, reduction='sum')
    assert_close(out, torch.tensor(2 * 2.5 * expected))
    with pytest.raises(ValueError, match='3 columns'):
        GRWCrossEntropy([1, 3], 1.0, background=True)(LOGITS, LABELS)
    with pytest.raises(ValueError, match='loss_name'):
        GRWCrossEntropy([1, 3], 1.0, loss_name='grw')
    with pytest.raises(ValueError, match='num_classes=3'):
        CDTCrossEntropy([1, 3], 1.0, num_classes=3)
    with pytest.raises(ValueError, match='train_ann_file'):
        CDTCrossEntropy(None, 1.0, train_ann_file='train.txt')


def test_with_defaults_keeps_one_signature():

    class Loss(GRWCrossEntropy):
        __init__ = with_defaults(
            GRWCrossEntropy.__init__, counts=None, rho=0.5, unit='pixels')

    core = inspect.signature(GRWCrossEntropy)
    sig = inspect.signature(Loss)
    assert list(sig.parameters) == list(core.parameters)
    assert sig.parameters['rho'].default == 0.5
    assert sig.parameters['unit'].default == 'pixels'
    assert GRWCrossEntropy.__init__.__kwdefaults__['unit'] == 'images'
    # rho = 0.5, counts [1, 4]: r = [.2, .8], r^-.5 = [5^.5, 1.25^.5]
    w = torch.tensor([5**0.5, 1.25**0.5])
    assert_close(Loss(counts=[1, 4]).class_weight, w * 2 / w.sum())
    with pytest.raises(ValueError, match="'rhoo'"):
        with_defaults(GRWCrossEntropy.__init__, rhoo=1.0)
    # counts gets a default: gamma after it needs one too
    with pytest.raises(ValueError, match='gamma'):
        with_defaults(CDTCrossEntropy.__init__, counts=None)


def test_grw_and_cdt_share_one_signature():
    grw = list(inspect.signature(GRWCrossEntropy).parameters)
    cdt = list(inspect.signature(CDTCrossEntropy).parameters)
    base = list(inspect.signature(LongTailCrossEntropy).parameters)
    assert grw == ['counts', 'rho'] + base[1:]
    assert cdt == ['counts', 'gamma', 'start_epoch'] + base[1:]


def test_a_new_loss_is_one_core_class(monkeypatch):
    # docs/architecture.md "Add a loss": declare it in core, the adapters'
    # shared wrapper (toolbox_losses) makes the toolbox class.
    from lt_mm.core import reduction

    monkeypatch.setattr(reduction, 'TOOLBOX_LOSSES', {})

    @reduction.toolbox_loss('ShiftLoss', cls=dict(tau=2.0))
    class ShiftCrossEntropy(LongTailCrossEntropy):
        """CE on z_c + tau * log(n_c / n_max) (logit-adjusted loss)."""

        def __init__(self, counts, tau, **kwargs):
            super().__init__(counts, **kwargs)
            n = torch.tensor(self.counts)
            self.shift = tau * (n / n.max()).log()

        def scaled_logits(self, logits):
            return logits + self.shift

    def epoch(self):
        return 7

    made = reduction.toolbox_losses(
        'cls', __name__, current_epoch=epoch, reduction='sum')
    assert list(made) == ['ShiftLoss']
    loss = made['ShiftLoss'](counts=[4, 1])
    assert loss.current_epoch() == 7 and loss.reduction == 'sum'
    # counts [4, 1], tau 2: shift = [0, 2 ln(1/4)]; logits [0, 2 ln 4],
    # label 1 -> shifted [0, 0] -> CE = ln 2
    out = loss(torch.tensor([[0.0, 2 * math.log(4.0)]]), torch.tensor([1]))
    assert_close(out, torch.tensor(LN2))
