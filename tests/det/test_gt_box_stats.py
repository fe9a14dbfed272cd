"""lt_mm.det.gt_box_stats: per-class AUC, top-1 and group means by hand."""
import json
import math

import pytest
import torch

from lt_mm.det.gt_box_stats import (class_aucs, class_top1, frequency_groups,
                                    group_means)

# 4 boxes, 3 classes (class 2 has no box)
SCORES = torch.tensor([[0.9, 0.5, 0.0], [0.5, 0.5, 0.0], [0.3, 0.2, 0.0],
                       [0.1, 0.5, 0.0]])
LABELS = torch.tensor([0, 1, 0, 1])


def test_class_aucs_by_hand():
    # class 0: its boxes score 0.9, 0.3; the others 0.5, 0.1 -> of the 4
    # (own, other) pairs 3 are ordered right: 0.75. Class 1: its boxes
    # 0.5, 0.5; the others 0.5, 0.2 -> ties count 1/2: (0.5 + 1 + 0.5 + 1)
    # / 4 = 0.75. Class 2 has no box: nan.
    aucs = class_aucs(SCORES, LABELS)
    assert aucs[:2] == [0.75, 0.75] and math.isnan(aucs[2])
    # a monotone map of a column leaves its AUC unchanged
    assert class_aucs(SCORES.exp() * 3, LABELS)[:2] == [0.75, 0.75]
    # perfect and reversed orders
    assert class_aucs(torch.tensor([[1.], [0.]]), torch.tensor([0,
                                                                1])) == [1.0]
    assert class_aucs(torch.tensor([[0.], [1.]]), torch.tensor([0,
                                                                1])) == [0.0]
    # every box of one class: no other box to compare with
    assert math.isnan(class_aucs(SCORES[:, :1], torch.zeros(4).long())[0])


def test_class_aucs_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r'\(M, C\).*\(M,\)'):
        class_aucs(SCORES, LABELS[:3])


def test_class_top1_by_hand():
    # argmax per box: 0, 0 (tie -> first), 0, 1 -> class 0: 2/2, class 1:
    # 1/2, class 2: nan
    top1 = class_top1(SCORES, LABELS)
    assert top1[:2] == [1.0, 0.5] and math.isnan(top1[2])


def test_group_means_by_hand():
    per_class = {'AUC': [0.75, 0.25, math.nan], 'top1': [1.0, 0.5, 0.0]}
    # f: classes 0 and 1; r: class 2 (nan AUC left out)
    assert group_means(per_class, ['f', 'f', 'r']) == {
        'AUC f': 0.5,
        'top1 f': 0.75,
        'top1 r': 0.0
    }
    with pytest.raises(ValueError, match='AUC: 3 values for 2 classes'):
        group_means(per_class, ['f', 'r'])


def test_frequency_groups_in_label_order(tmp_path):
    ann = tmp_path / 'lvis.json'
    ann.write_text(
        json.dumps({
            'categories': [
                dict(id=3, frequency='r'),
                dict(id=1, frequency='f'),
                dict(id=2, frequency='c')
            ]
        }))
    assert frequency_groups(str(ann), [1, 2, 3]) == ['f', 'c', 'r']
    ann.write_text(json.dumps({'categories': [dict(id=1), dict(id=2)]}))
    with pytest.raises(ValueError, match=r"categories \[1, 2\] have no LVIS"):
        frequency_groups(str(ann), [1, 2])
