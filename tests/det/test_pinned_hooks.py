"""Pinned behaviour of lt_mm.det.hooks (NCMCentroidHook's loader config,
its argument checks and the NCM layer lookup) from a mutation audit."""
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

import lt_mm.det  # noqa: F401
from lt_mm.det.decoupling import NCMLinear
from lt_mm.det.hooks import NCMCentroidHook, gt_box_dataloader_cfg, ncm_layers

_TEST_PIPE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs'),
]
_TRAIN_PIPE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]


def _cfg(**kw):
    inner = dict(type='CocoDataset', ann_file='a.json', pipeline=_TRAIN_PIPE)
    cfg = dict(
        train_dataloader=dict(
            batch_size=8,
            num_workers=2,
            persistent_workers=True,
            sampler=dict(type='InfiniteSampler'),
            batch_sampler=dict(type='AspectRatioBatchSampler'),
            dataset=dict(
                type='ClassBalancedDataset',
                oversample_thr=1e-3,
                dataset=dict(type='RepeatDataset', times=2, dataset=inner))),
        test_dataloader=dict(
            batch_size=3,
            dataset=dict(type='CocoDataset', pipeline=_TEST_PIPE)))
    cfg.update(kw)
    return Config(cfg)


def test_loader_unwraps_and_loads_boxes_right_after_the_image():
    loader = gt_box_dataloader_cfg(_cfg())
    ds = loader['dataset']
    # ClassBalancedDataset(RepeatDataset(CocoDataset)) -> CocoDataset
    assert ds['type'] == 'CocoDataset' and ds['ann_file'] == 'a.json'
    # the test pipeline, its LoadAnnotations moved to index 1, bbox only
    assert ds['pipeline'] == [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
        dict(type='Resize', scale=(64, 64)),
        dict(type='PackDetInputs'),
    ]
    assert loader['sampler'] == dict(type='DefaultSampler', shuffle=False)
    assert 'batch_sampler' not in loader
    assert loader['batch_size'] == 3  # the test batch size
    assert loader['persistent_workers'] is False
    assert loader['num_workers'] == 2


def test_loader_falls_back_to_val_then_to_the_train_pipeline():
    cfg = _cfg(
        test_dataloader=None,
        val_dataloader=dict(batch_size=5, dataset=dict(pipeline=_TEST_PIPE)))
    loader = gt_box_dataloader_cfg(cfg)
    assert loader['batch_size'] == 5
    assert [t['type'] for t in loader['dataset']['pipeline']] == [
        'LoadImageFromFile', 'LoadAnnotations', 'Resize', 'PackDetInputs'
    ]
    # no test / val loader: the train pipeline without its flip, and the
    # train batch size
    cfg = _cfg(test_dataloader=None)
    loader = gt_box_dataloader_cfg(cfg)
    assert loader['batch_size'] == 8
    assert loader['dataset']['pipeline'] == [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
        dict(type='PackDetInputs'),
    ]


def test_loader_errors_named():
    with pytest.raises(ValueError, match='no train_dataloader'):
        gt_box_dataloader_cfg(Config(dict(test_dataloader=dict())))
    cfg = _cfg(
        test_dataloader=dict(
            dataset=dict(pipeline=[dict(type='Resize', scale=(8, 8))])))
    with pytest.raises(ValueError, match='no image loading step'):
        gt_box_dataloader_cfg(cfg)


@pytest.mark.parametrize('bad', [0, -3, True])
def test_hook_cap_refused_naming_the_value(bad):
    with pytest.raises(ValueError, match=f'max_per_class={bad!r}'):
        NCMCentroidHook(max_per_class=bad)


def test_hook_cap_accepted_values():
    assert NCMCentroidHook(max_per_class=1).max_per_class == 1
    assert NCMCentroidHook(max_per_class='2').max_per_class == 2
    assert NCMCentroidHook().max_per_class is None
    hook = NCMCentroidHook(max_per_class=1)
    # labels 2, 0, 2, 0, 1 -> first of each class: indices 0, 1, 4
    assert hook._cap(torch.tensor([2, 0, 2, 0, 1])).tolist() == [0, 1, 4]


def _bbox_head(**kw):
    return MODELS.build(
        dict(
            type='Shared2FCBBoxHead',
            in_channels=2,
            fc_out_channels=4,
            roi_feat_size=1,
            num_classes=2,
            **kw))


def test_ncm_layers_found_by_name_in_a_real_head():
    head = _bbox_head(cls_predictor_cfg=dict(type='NCMLinear'))
    layers = ncm_layers(head)
    assert list(layers) == ['fc_cls'] and isinstance(layers['fc_cls'],
                                                     NCMLinear)
    assert ncm_layers(_bbox_head()) == {}
