"""Pinned behaviour of lt_mm.det.decoupling found unguarded by a mutation
audit (hand-computed values in the comments)."""
import logging

import pytest
import torch
from mmengine.logging import MMLogger
from torch.testing import assert_close

import lt_mm.det  # noqa: F401
from lt_mm.det.decoupling import CRTLinear, NCMLinear


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_crt_forward_is_the_linear_layer_in_train_and_eval():
    layer = CRTLinear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.]]))
        layer.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.tensor([[2.0, 3.0]])
    # W x + b = [2 + .5, 3 - 1, 5 + 2]
    assert_close(layer.eval()(x), torch.tensor([[2.5, 2.0, 7.0]]))
    assert int(layer.crt_retrained) == 0  # eval does not mark it
    assert_close(layer.train()(x), torch.tensor([[2.5, 2.0, 7.0]]))
    assert int(layer.crt_retrained) == 1


def test_crt_logs_the_reinitialisation_of_a_stage1_classifier_only():
    logger = MMLogger.get_current_instance()
    rec = _Records()
    logger.addHandler(rec)
    try:
        stage1 = {'weight': torch.ones(3, 2), 'bias': torch.ones(3)}
        CRTLinear(2, 3).load_state_dict(dict(stage1))
        assert any('re-initialised for cRT' in m for m in rec.messages)
        rec.messages.clear()
        CRTLinear(2, 3).load_state_dict(
            dict(stage1, crt_retrained=torch.tensor(1)))
        assert not any('re-initialised' in m for m in rec.messages)
    finally:
        logger.removeHandler(rec)


def test_ncm_without_any_training_feature_refused():
    with pytest.raises(ValueError, match='no training feature'):
        NCMLinear(2, 3).set_centroids(
            torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_ncm_defaults_cl2n_l2_scale_one():
    layer = NCMLinear(2, 3)
    assert (layer.feat_type, layer.dist, layer.scale) == ('cl2n', 'l2', 1.0)
    layer.set_centroids(
        torch.tensor([[2., 0.], [0., 2.], [4., 0.]]), torch.tensor([0, 1, 0]))
    # global mean (2, 2/3); cl2n: centre then unit length.
    # class 0: (0, -2/3) -> (0, -1) and (2, -2/3) -> (3, -1)/sqrt 10,
    # class 1: (-2, 4/3) -> (-3, 2)/sqrt 13; x = (2, 2/3) centres to 0
    # and stays 0 (normalising a zero vector keeps it zero), so
    # -||x - c||^2 = -||c||^2 with the scale 1
    c0 = (torch.tensor([0., -1.]) + torch.tensor([3., -1.]) / 10**0.5) / 2
    c1 = torch.tensor([-3., 2.]) / 13**0.5
    expected = -torch.stack([c0.pow(2).sum(), c1.pow(2).sum()])
    assert_close(layer.fg_scores(torch.tensor([[2.0, 2 / 3]])), expected[None])


def test_ncm_one_training_box():
    # one foreground class, one box: its feature is the class mean and the
    # global mean (the mean divides by M = 1)
    layer = NCMLinear(2, 2, feat_type='un')
    layer.set_centroids(torch.tensor([[3.0, -1.0]]), torch.tensor([0]))
    assert_close(layer.global_mean, torch.tensor([3.0, -1.0]))
    assert_close(layer.centroids, torch.tensor([[3.0, -1.0]]))
