"""Every segmentation config parses and builds; stage-2 configs load the
stock mmseg checkpoints' keys; bad statistics fail when the model is built.
"""
import glob
import os.path as osp

import mmseg
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

from lt_mm.seg import (CausalNormConvSeg, DisAlignConvSeg, GRWCrossEntropyLoss,
                       LWSConvSeg, TauNormConvSeg)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ADE = sorted(glob.glob(osp.join(REPO, 'configs', 'ade20k', '*.py')))
QUICK = sorted(
    glob.glob(osp.join(REPO, 'configs', 'quickstart', 'digits_seg_*.py')))
CLASSIFIER = {
    'disalign': DisAlignConvSeg,
    'tde': CausalNormConvSeg,
    'taunorm': TauNormConvSeg,
    'lws': LWSConvSeg
}
STAGE2 = ('disalign', 'lws', 'grw')
# stock mmseg configs (what `mmseg::` resolves to)
MMSEG_CONFIGS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')
STOCK = {
    'fcn_r50': 'fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py',
    'fcn_r101': 'fcn/fcn_r101-d8_4xb4-160k_ade20k-512x512.py',
    'deeplabv3plus_r50':
    'deeplabv3plus/deeplabv3plus_r50-d8_4xb4-160k_ade20k-512x512.py',
    'deeplabv3plus_r101':
    'deeplabv3plus/deeplabv3plus_r101-d8_4xb4-160k_ade20k-512x512.py',
    'upernet_r50': 'upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
}


def _build(cfg):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def _method(path):
    return osp.splitext(osp.basename(path))[0].rsplit('_', 1)[-1]


def test_ade20k_config_list():
    names = {osp.basename(p) for p in ADE}
    assert {
        'fcn_r50_disalign.py', 'fcn_r101_disalign.py',
        'deeplabv3plus_r50_disalign.py', 'deeplabv3plus_r101_disalign.py',
        'fcn_r50_tde.py', 'fcn_r50_cdt.py', 'fcn_r50_taunorm.py',
        'fcn_r50_grw.py'
    } <= names


@pytest.mark.parametrize('path', ADE, ids=osp.basename)
def test_ade20k_configs_build(path):
    cfg = Config.fromfile(path)
    text = open(path).read()
    assert 'Table' in text.split('_base_')[0], 'comment names no table'
    assert cfg.val_evaluator.type == 'HeadBodyTailIoUMetric'
    model = _build(cfg)
    assert model.decode_head.num_classes == 150
    method = _method(path)
    if method in CLASSIFIER:
        assert isinstance(model.decode_head.conv_seg, CLASSIFIER[method])
    if method in STAGE2:
        assert cfg.load_from.startswith(
            'https://download.openmmlab.com/mmsegmentation/')
        assert cfg.custom_hooks[0].type == 'Stage2FreezeHook'
        assert cfg.find_unused_parameters is True  # DDP with frozen params
        assert model.auxiliary_head.loss_decode.loss_weight == 0
        assert cfg.train_cfg.max_iters == 8000
        assert isinstance(model.decode_head.loss_decode, GRWCrossEntropyLoss)
        assert model.decode_head.loss_decode.rho == 0.3
        # the stock checkpoint of the same architecture loads as stage 1
        arch = osp.basename(path).rsplit('_', 1)[0]
        # (built on the meta device: only names and shapes are compared)
        with torch.device('meta'):
            stock = _build(
                Config.fromfile(osp.join(MMSEG_CONFIGS, STOCK[arch])))
        stock = {k: v.shape for k, v in stock.state_dict().items()}
        ours = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: ours.get(k) for k in stock} == stock
        extra = [k for k in ours if k not in stock]
        assert all('.calibration.' in k or '.lws.' in k for k in extra)
        assert bool(extra) == (method != 'grw'), extra  # grw: stock conv_seg


@pytest.mark.parametrize('path', QUICK, ids=osp.basename)
def test_quickstart_seg_configs_build(path, seg_stats, data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(path)
    model = _build(cfg)
    assert model.decode_head.num_classes == 10
    method = _method(path)
    if method in CLASSIFIER:
        assert isinstance(model.decode_head.conv_seg, CLASSIFIER[method])
    if method in STAGE2:
        assert cfg.load_from is None  # given by the caller
        assert cfg.custom_hooks[0].type == 'Stage2FreezeHook'


def test_wrong_stats_fail_when_the_model_is_built(seg_stats, data_root,
                                                  monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    path = osp.join(REPO, 'configs', 'quickstart', 'digits_seg_disalign.py')
    cfg = Config.fromfile(path)
    cfg.model.decode_head.loss_decode.stats_file = 'builtin:ade20k'
    with pytest.raises(ValueError, match='150 classes'):
        _build(cfg)
    cfg.model.decode_head.loss_decode.stats_file = seg_stats['path']
    cfg.model.decode_head.loss_decode.rho = -0.5
    with pytest.raises(ValueError, match='rho=-0.5'):
        _build(cfg)
