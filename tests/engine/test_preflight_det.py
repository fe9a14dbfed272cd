"""Preflight (:func:`lt_mm.engine.preflight.check_config`) of detection
configs: the box / mask heads' ``num_classes`` against the dataset's
classes and against each other, on the shipped quickstart configs.

Preflight reads the config and checks that the files it names exist; empty
annotation files in the quickstart layout are enough here.
"""
import os.path as osp

import pytest
from mmengine.config import Config

from lt_mm.engine.preflight import ConfigCheckError, check_config
from tests.conftest import QUICKSTART

DET_QS = osp.join(QUICKSTART, 'digits_det_disalign.py')
CASCADE_QS = osp.join(QUICKSTART, 'digits_det_cascade_tde.py')


@pytest.fixture
def det_root(tmp_path, monkeypatch):
    ann = tmp_path / 'det' / 'annotations'
    ann.mkdir(parents=True)
    for split in ('train', 'val'):
        (ann / f'lvis_v1_{split}.json').write_text('{}')
    monkeypatch.setenv('LT_MM_DATA_ROOT', str(tmp_path))
    return str(tmp_path)


def _error(path, options, mode='train'):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options)
    with pytest.raises(ConfigCheckError) as e:
        check_config(cfg, mode=mode)
    return str(e.value)


@pytest.mark.parametrize('n', [6, 20])
def test_bbox_head_num_classes_vs_dataset(det_root, n):
    msg = _error(
        DET_QS, {
            'model.roi_head.bbox_head.num_classes': n,
            'model.roi_head.mask_head.num_classes': n
        })
    assert 'train_dataloader.dataset has 8 classes' in msg
    assert f'model.roi_head.bbox_head.num_classes={n}' in msg
    assert 'set model.roi_head.bbox_head.num_classes=8' in msg


def test_mask_head_num_classes_vs_dataset(det_root):
    msg = _error(
        DET_QS, {'model.roi_head.mask_head.num_classes': 6}, mode='test')
    assert 'test_dataloader.dataset has 8 classes' in msg
    assert 'model.roi_head.mask_head.num_classes=6' in msg


def test_cascade_stage_num_classes(det_root):
    cfg = Config.fromfile(CASCADE_QS)
    cfg.model.roi_head.bbox_head[1].num_classes = 6
    with pytest.raises(ConfigCheckError) as e:
        check_config(cfg, mode='train')
    msg = str(e.value)
    assert 'train_dataloader.dataset has 8 classes' in msg
    assert 'model.roi_head.bbox_head.1.num_classes=6' in msg


def test_heads_disagree_without_dataset_classes(det_root):
    # no metainfo classes (as the LVIS configs): the heads must still agree
    cfg = Config.fromfile(DET_QS)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.pop('metainfo')
    cfg.model.roi_head.mask_head.num_classes = 1230
    cfg.model.roi_head.bbox_head.num_classes = 1203
    with pytest.raises(ConfigCheckError) as e:
        check_config(cfg, mode='train')
    assert str(e.value).startswith(
        'model.roi_head.bbox_head.num_classes=1203 but '
        'model.roi_head.mask_head.num_classes=1230')
    cfg.model.roi_head.mask_head.num_classes = 1203
    check_config(cfg, mode='train')
    # a class-agnostic mask head has one channel: not compared
    cfg.model.roi_head.mask_head.num_classes = 1230
    cfg.model.roi_head.mask_head.class_agnostic = True
    check_config(cfg, mode='train')


def test_shipped_det_quickstart_configs_pass(det_root):
    for name in ('mask_rcnn_stage1', 'disalign', 'cascade_tde', 'tde',
                 'posthoc_logit_adjust', 'ncm'):
        cfg = Config.fromfile(osp.join(QUICKSTART, f'digits_det_{name}.py'))
        for mode in ('train', 'test', 'all'):
            check_config(cfg, mode=mode)
