"""GRW / CDT box-classification losses and their class counts.

Hand-computed values; bad inputs must fail when the loss is *built*.
"""
import json
import math
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from torch.testing import assert_close

import lt_mm.det  # noqa: F401
from lt_mm.core.stats import ClassStats
from lt_mm.det.counts import lvis_class_stats, resolve_det_counts
from lt_mm.toydata import make_lvis


def _ce(logits, y):
    """-log softmax(logits)[y] for a python list."""
    z = sum(math.exp(v) for v in logits)
    return -(logits[y] - math.log(z))


def test_grw_loss_hand_example():
    # counts n = [3, 1] -> r = [.75, .25]; rho = 1: r^-1 = [4/3, 4],
    # rescaled to sum C = 2: w = [0.5, 1.5]; background weight 1.
    loss = MODELS.build(
        dict(type='GRWLoss', num_classes=2, rho=1.0, counts=[3, 1]))
    assert_close(loss.class_weight, torch.tensor([0.5, 1.5, 1.0]))
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1, 2])
    ce = [_ce(r, y) for r, y in zip(logits.tolist(), labels.tolist())]
    w = [0.5, 1.5, 1.0]
    # weighted mean: sum w_i CE_i / sum w_i
    expected = sum(a * b for a, b in zip(w, ce)) / sum(w)
    assert_close(loss(logits, labels), torch.tensor(expected))
    # mmdet label weights v_i multiply both numerator and denominator
    v = torch.tensor([1.0, 0.0, 2.0])
    expected_v = (0.5 * ce[0] + 2 * ce[2]) / (0.5 + 2.0)
    assert_close(
        loss(logits, labels, v, avg_factor=123.0), torch.tensor(expected_v))
    assert_close(
        loss(logits, labels, reduction_override='sum'),
        torch.tensor(sum(a * b for a, b in zip(w, ce))))
    assert loss(logits, labels, reduction_override='none').shape == (3, )


def test_cdt_loss_hand_example():
    # counts [4, 1], gamma = 0.5: a = (4 / n)^.5 = [1, 2]; bg temperature 1
    loss = MODELS.build(
        dict(type='CDTLoss', num_classes=2, gamma=0.5, counts=[4, 1]))
    assert_close(loss.temperatures, torch.tensor([1.0, 2.0]))
    logits = torch.tensor([[2.0, 4.0, 1.0], [0.0, 2.0, 3.0]])
    labels = torch.tensor([1, 2])
    # scaled logits: [2, 2, 1] and [0, 1, 3]
    ce = [_ce([2.0, 2.0, 1.0], 1), _ce([0.0, 1.0, 3.0], 2)]
    # mmdet 'mean': sum / avg_factor
    assert_close(
        loss(logits, labels, torch.ones(2), avg_factor=4.0),
        torch.tensor(sum(ce) / 4.0))
    assert_close(loss(logits, labels), torch.tensor(sum(ce) / 2))


@pytest.fixture(scope='module')
def tiny_lvis(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('lvis_counts'))
    return make_lvis(
        root, num_classes=5, num_train=8, num_val=2, image_size=32, seed=1)


def test_counts_from_lvis_json_and_cache(tiny_lvis):
    stats = lvis_class_stats(tiny_lvis['train_json'], 'images')
    assert stats.counts == [float(c) for c in tiny_lvis['image_counts']]
    assert stats.splits['rare'] == [
        i for i, f in enumerate(tiny_lvis['frequencies']) if f == 'r'
    ]
    cache = tiny_lvis['train_json'][:-5] + '_class_stats_images.json'
    assert osp.isfile(cache)
    inst = resolve_det_counts(
        train_ann_file=tiny_lvis['train_json'],
        num_classes=5,
        unit='instances')
    assert inst == [float(c) for c in tiny_lvis['instance_counts']]
    loss = MODELS.build(
        dict(
            type='GRWLoss',
            num_classes=5,
            rho=0.0,
            train_ann_file=tiny_lvis['train_json']))
    # rho = 0: every foreground weight 1 (plain cross-entropy)
    assert_close(loss.class_weight, torch.ones(6))


def test_bad_counts_fail_when_the_loss_is_built(tiny_lvis, tmp_path):
    # counts including the background (num_classes + 1 entries)
    with pytest.raises(ValueError, match='num_classes=2'):
        MODELS.build(dict(type='GRWLoss', num_classes=2, counts=[5, 3, 100]))
    with pytest.raises(ValueError, match='background'):
        MODELS.build(dict(type='CDTLoss', num_classes=2, counts=[5, 3, 100]))
    # a statistics file of another vocabulary (5 classes for 8)
    other = osp.join(str(tmp_path), 'other_stats.json')
    ClassStats(counts=[1, 2, 3, 4, 5], unit='images').save(other)
    with pytest.raises(ValueError, match='5 classes'):
        MODELS.build(dict(type='GRWLoss', num_classes=8, stats_file=other))
    # the training json of another dataset (5 categories for 8)
    with pytest.raises(ValueError, match='5 categories'):
        MODELS.build(
            dict(
                type='CDTLoss',
                num_classes=8,
                train_ann_file=tiny_lvis['train_json']))
    # counts in the wrong unit
    with pytest.raises(ValueError, match="'instances'"):
        MODELS.build(
            dict(
                type='CDTLoss',
                num_classes=5,
                count_unit='instances',
                stats_file=_stats(tmp_path, 5)))
    with pytest.raises(ValueError, match='needs per-class training counts'):
        MODELS.build(dict(type='GRWLoss', num_classes=2))
    with pytest.raises(ValueError, match='one source'):
        MODELS.build(
            dict(
                type='GRWLoss',
                num_classes=5,
                counts=[1] * 5,
                train_ann_file=tiny_lvis['train_json']))
    with pytest.raises(ValueError, match='rho'):
        MODELS.build(
            dict(type='GRWLoss', num_classes=2, rho=-1, counts=[1, 2]))
    with pytest.raises(ValueError, match='zero count'):
        MODELS.build(dict(type='GRWLoss', num_classes=2, counts=[0, 2]))
    loss = MODELS.build(dict(type='GRWLoss', num_classes=2, counts=[1, 2]))
    with pytest.raises(ValueError, match='3 columns'):
        loss(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))


def _stats(tmp_path, n):
    path = osp.join(str(tmp_path), f'images_{n}.json')
    ClassStats(counts=list(range(1, n + 1)), unit='images').save(path)
    with open(path) as f:
        assert json.load(f)['unit'] == 'images'
    return path


def test_one_signature_across_toolboxes():
    import inspect

    from lt_mm import cls, det, seg
    grw = [cls.GRWLoss, seg.GRWCrossEntropyLoss, det.GRWLoss]
    cdt = [cls.CDTLoss, seg.CDTCrossEntropyLoss, det.CDTLoss]
    for family in (grw, cdt):
        sigs = [inspect.signature(c).parameters for c in family]
        assert list(sigs[0]) == list(sigs[1]) == list(sigs[2])
        # toolbox defaults: cls/det ignore nothing, mmseg ignores 255
        assert [s['ignore_index'].default for s in sigs] == [None, 255, None]
        assert [s['num_classes'].default for s in sigs] == [None] * 3
        assert 'start_epoch' in sigs[0] or family is grw
    # detection: num_classes is optional (checked when given)
    loss = MODELS.build(dict(type='GRWLoss', rho=1.0, counts=[3, 1]))
    assert loss.num_classes == 2 and loss.num_columns == 3
    assert_close(loss.class_weight, torch.tensor([0.5, 1.5, 1.0]))


def test_det_cdt_start_epoch_and_count_unit_alias(tmp_path):
    from mmengine.logging import MessageHub
    path = osp.join(str(tmp_path), 'inst.json')
    ClassStats(counts=[4, 1], unit='instances').save(path)
    with pytest.warns(DeprecationWarning, match='unit='):
        loss = MODELS.build(
            dict(
                type='CDTLoss',
                gamma=0.5,
                stats_file=path,
                count_unit='instances',
                start_epoch=1))
    # a = [1, 2], bg 1; logits [2, 4, 1] label 1
    logits = torch.tensor([[2.0, 4.0, 1.0]])
    labels = torch.tensor([1])
    hub = MessageHub.get_instance('test_det_cdt_start_epoch')
    hub.update_info('epoch', 0)  # before start_epoch: plain CE
    assert_close(loss(logits, labels), torch.tensor(_ce([2., 4., 1.], 1)))
    hub.update_info('epoch', 1)  # scaled logits [2, 2, 1]
    assert_close(loss(logits, labels), torch.tensor(_ce([2., 2., 1.], 1)))
