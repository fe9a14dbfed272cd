"""Pinned behaviour of lt_mm.det._head_context found unguarded by a
mutation audit: a loss with a custom activation only (mmdet still gives
C + 1 columns) or custom channels of C + 1 columns is refused and named;
the message names the head's loss class; a module with ``num_classes``
that is not a box head is not taken for one.
"""
import pytest
import torch.nn as nn
from mmdet.models.losses import CrossEntropyLoss
from mmdet.registry import MODELS

import lt_mm.det  # noqa: F401

C = 3


@MODELS.register_module(force=True)
class PinnedActivationOnlyLoss(CrossEntropyLoss):
    """A softmax CE with mmdet's custom_activation flag only: mmdet's
    BBoxHead then builds fc_cls with the ordinary C + 1 columns."""
    custom_activation = True

    def get_activation(self, cls_score):
        return cls_score.softmax(-1)


@MODELS.register_module(force=True)
class PinnedChannelsOnlyLoss(CrossEntropyLoss):
    """custom_cls_channels with C + 1 columns (no custom activation)."""
    custom_cls_channels = True

    def get_cls_channels(self, num_classes):
        return num_classes + 1


def _head(loss_type, clf='DisAlignLinear', **loss_kw):
    return MODELS.build(
        dict(
            type='Shared2FCBBoxHead',
            in_channels=4,
            fc_out_channels=8,
            roi_feat_size=1,
            num_classes=C,
            loss_cls=dict(type=loss_type, **loss_kw),
            cls_predictor_cfg=dict(type=clf)))


def test_custom_activation_alone_is_refused_and_named():
    # out_features = C + 1 = 4 is right, the activation is not softmax
    with pytest.raises(ValueError) as e:
        _head('PinnedActivationOnlyLoss')
    msg = str(e.value)
    assert 'its loss_cls PinnedActivationOnlyLoss uses custom' in msg
    assert 'custom_cls_channels=False' in msg
    assert 'custom_activation=True' in msg
    assert 'keep PinnedActivationOnlyLoss with the stock' in msg


def test_custom_channels_alone_are_refused_even_with_c_plus_one():
    with pytest.raises(ValueError) as e:
        _head('PinnedChannelsOnlyLoss', 'TauNormLinear')
    msg = str(e.value)
    assert 'its loss_cls PinnedChannelsOnlyLoss uses custom' in msg
    assert 'custom_cls_channels=True' in msg
    assert f'get_cls_channels({C}) = {C + 1} columns' in msg


def test_seesaw_message_names_the_loss_class():
    with pytest.raises(ValueError) as e:
        _head('SeesawLoss', 'CosineLinear', num_classes=C)
    msg = str(e.value)
    assert 'its loss_cls SeesawLoss uses custom' in msg
    assert 'keep SeesawLoss with the stock' in msg


class _NotABoxHead(nn.Module):
    """Any module with num_classes that builds a box classifier."""

    def __init__(self):
        super().__init__()
        self.num_classes = 7  # not this layer's C
        self.fc = MODELS.build(
            dict(type='DisAlignLinear', in_features=4, out_features=3))


def test_a_module_with_num_classes_is_not_taken_for_a_box_head():
    # only mmdet BBoxHeads are checked; a layer built elsewhere keeps
    # its own out_features (only >= 2 checked)
    assert _NotABoxHead().fc.out_features == 3
