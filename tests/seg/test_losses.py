"""GRW and CDT pixel losses (mmseg MODELS) against hand-computed values."""
import math

import pytest
import torch
from torch.testing import assert_close

from lt_mm.core.stats import ClassStats
from lt_mm.seg import CDTCrossEntropyLoss, GRWCrossEntropyLoss

LN2 = math.log(2.0)


def _grw_batch():
    # 1 image, C=2, H=1, W=3
    # pixel 0: logits [0, 0],     label 0 -> CE = ln 2
    # pixel 1: logits [ln 3, 0],  label 1 -> p = 1 / 4, CE = ln 4 = 2 ln 2
    # pixel 2: logits [5, -5],    label 255 (ignored)
    logits = torch.tensor([[0.0, math.log(3.0), 5.0],
                           [0.0, 0.0, -5.0]]).reshape(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    return logits, labels


def test_grw_pixel_loss_hand_computed():
    # counts [3, 1], rho = 1: r = [3/4, 1/4], r^-1 = [4/3, 4], sum = 16/3,
    # w = r^-1 * C / sum = [0.5, 1.5]
    # sum_i w_i CE_i = 0.5 ln2 + 1.5 * 2 ln2 = 3.5 ln2
    logits, labels = _grw_batch()
    loss = GRWCrossEntropyLoss(rho=1.0, counts=[3, 1])
    assert loss.loss_name == 'loss_ce'
    assert_close(loss.class_weight, torch.tensor([0.5, 1.5]))
    # default 'mean': over all M = 3 pixels, the ignored one counts 0
    assert_close(
        loss(logits, labels, ignore_index=255), torch.tensor(3.5 * LN2 / 3))
    # avg_non_ignore: over the 2 valid pixels
    loss_ni = GRWCrossEntropyLoss(rho=1.0, counts=[3, 1], avg_non_ignore=True)
    assert_close(
        loss_ni(logits, labels, ignore_index=255), torch.tensor(3.5 * LN2 / 2))
    # weighted mean (cls/det reference): / (0.5 + 1.5)
    loss_wm = GRWCrossEntropyLoss(
        rho=1.0, counts=[3, 1], reduction='weighted_mean', loss_weight=2.0)
    assert_close(
        loss_wm(logits, labels, ignore_index=255),
        torch.tensor(2.0 * 3.5 * LN2 / 2.0))
    # pixel-sampler weights [2, 1, 5]: (2 * 0.5 ln2 + 1 * 1.5 * 2 ln2) / 3
    assert_close(
        loss(
            logits,
            labels,
            weight=torch.tensor([[[2.0, 1.0, 5.0]]]),
            ignore_index=255), torch.tensor(4 * LN2 / 3))
    # rho = 0 is plain CE with mmseg's default mean: (ln2 + 2 ln2) / 3
    plain = GRWCrossEntropyLoss(rho=0.0, counts=[3, 1])
    assert_close(plain(logits, labels, ignore_index=255), torch.tensor(LN2))


def test_grw_ignore_masked_before_gather_all_ignored():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    loss = GRWCrossEntropyLoss(rho=0.3, counts=[5, 3, 1])
    out = loss(logits, labels, ignore_index=255)
    assert_close(out, torch.tensor(0.0))
    out.backward()  # no crash, zero gradient
    assert_close(logits.grad, torch.zeros_like(logits))


def test_cdt_pixel_loss_hand_computed():
    # counts [4, 1], gamma 0.5: a = [(4/4)^.5, (4/1)^.5] = [1, 2]
    # pixel 0: z = [2, 2], y = 1 -> z / a = [2, 1], CE = log(1 + e)
    # pixel 1: z = [0, 4], y = 0 -> z / a = [0, 2], CE = log(1 + e^2)
    # pixel 2: ignored
    logits = torch.tensor([[2.0, 0.0, 1.0], [2.0, 4.0,
                                             1.0]]).reshape(1, 2, 1, 3)
    labels = torch.tensor([[[1, 0, 255]]])
    ce = math.log(1 + math.e) + math.log(1 + math.e**2)
    loss = CDTCrossEntropyLoss(gamma=0.5, counts=[4, 1])
    assert loss.loss_name == 'loss_ce'
    assert_close(loss.temperatures, torch.tensor([1.0, 2.0]))
    assert_close(loss(logits, labels, ignore_index=255), torch.tensor(ce / 3))
    loss_ni = CDTCrossEntropyLoss(
        gamma=0.5, counts=[4, 1], avg_non_ignore=True, loss_name='loss_cdt')
    assert loss_ni.loss_name == 'loss_cdt'
    assert_close(
        loss_ni(logits, labels, ignore_index=255), torch.tensor(ce / 2))


def test_losses_read_pixel_stats_files(tmp_path):
    pix = str(tmp_path / 'pixels.json')
    ClassStats(counts=[3, 1], unit='pixels').save(pix)
    loss = GRWCrossEntropyLoss(rho=1.0, stats_file=pix, num_classes=2)
    assert_close(loss.class_weight, torch.tensor([0.5, 1.5]))
    cdt = CDTCrossEntropyLoss(gamma=0.5, stats_file=pix)
    assert_close(cdt.temperatures, torch.tensor([1.0, 3.0**0.5]))
    ade = GRWCrossEntropyLoss(rho=0.3, stats_file='builtin:ade20k')
    assert ade.num_classes == 150


def test_losses_bad_input(tmp_path):
    img = str(tmp_path / 'images.json')
    ClassStats(counts=[3, 1], unit='images').save(img)
    for cls in (GRWCrossEntropyLoss, CDTCrossEntropyLoss):
        with pytest.raises(ValueError, match="'pixels'"):
            cls(stats_file=img)
        with pytest.raises(ValueError, match='num_classes=3'):
            cls(counts=[3, 1], num_classes=3)
        with pytest.raises(ValueError, match='ade20k'):
            cls(stats_file='builtin:ade20k', num_classes=10)
        with pytest.raises(ValueError, match='counts'):
            cls()
    with pytest.raises(ValueError, match='rho=-0.1'):
        GRWCrossEntropyLoss(rho=-0.1, counts=[3, 1])
    with pytest.raises(ValueError, match='gamma=-1'):
        CDTCrossEntropyLoss(gamma=-1, counts=[3, 1])
    with pytest.raises(ValueError, match='zero count'):
        GRWCrossEntropyLoss(counts=[3, 0])


def test_one_name_registered_and_picklable():
    import pickle

    from mmseg.registry import MODELS

    # mmseg knows the losses as GRWLoss / CDTLoss (one name across the
    # toolboxes) and by their first names
    for new, old in ((GRWCrossEntropyLoss, 'GRWLoss'), (CDTCrossEntropyLoss,
                                                        'CDTLoss')):
        assert MODELS.get(old) is new
        assert MODELS.get(old.replace('Loss', 'CrossEntropyLoss')) is new
    loss = MODELS.build(dict(type='GRWLoss', rho=1.0, counts=[3, 1]))
    assert (loss.reduction, loss.ignore_index, loss.rho) == ('mean', 255, 1.0)
    copy = pickle.loads(pickle.dumps(loss))
    assert type(copy) is GRWCrossEntropyLoss
    assert_close(copy.class_weight, torch.tensor([0.5, 1.5]))


def test_readme_three_line_config_builds(tmp_path):
    """The README's "three lines": only ``type`` of mmseg's stock loss is
    changed, so mmengine merges ``use_sigmoid=False, loss_weight=1.0`` into
    it; the loss takes them (``use_sigmoid=True`` is refused)."""
    import re

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from tests.conftest import REPO
    with open(f'{REPO}/README.md') as f:
        text = f.read()
    section = text.split('## Use lt_mm in an existing config')[1]
    snippet = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    path = tmp_path / 'three_lines.py'
    path.write_text(snippet)
    cfg = Config.fromfile(str(path))
    loss_cfg = cfg.model.decode_head.loss_decode
    assert loss_cfg.use_sigmoid is False and loss_cfg.loss_weight == 1.0
    init_default_scope('mmseg')
    loss = MODELS.build(loss_cfg)
    assert isinstance(loss, GRWCrossEntropyLoss) and loss.rho == 0.3
    with pytest.raises(ValueError, match='use_sigmoid=True.*_delete_'):
        MODELS.build(dict(loss_cfg, use_sigmoid=True))
