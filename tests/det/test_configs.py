"""Every LVIS config parses and builds its model (no data, no weights).

Class-count files of the paper configs (written once per dataset by
``tools/lvis_counts.py``) do not exist here; they are replaced by
explicit counts of the right length so that the losses build.
"""
import glob
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

import lt_mm.det  # noqa: F401
from lt_mm.det.classifiers import (CausalNormLinear, CosineLinear,
                                   DisAlignCosineLinear, DisAlignLinear,
                                   TauNormLinear)
from lt_mm.det.decoupling import CRTLinear, LWSLinear, NCMLinear, PosthocLinear
from lt_mm.det.losses import CDTLoss, GRWLoss

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LVIS_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'lvis', '*.py')))
QUICKSTART_DET = sorted(
    glob.glob(osp.join(REPO, 'configs', 'quickstart', 'digits_det_*.py')))


def _replace_stats_files(node, num_classes=None):
    """stats_file=PATH -> counts=[1, 2, ..., C] (C from the nearest
    num_classes, e.g. the box head's for a classifier's posthoc)."""
    if isinstance(node, dict):
        num_classes = node.get('num_classes', num_classes)
        if node.get('stats_file') is not None:
            node['counts'] = list(range(1, num_classes + 1))
            node['stats_file'] = None
        for v in node.values():
            _replace_stats_files(v, num_classes)
    elif isinstance(node, list):
        for v in node:
            _replace_stats_files(v, num_classes)


def _heads(model):
    heads = model.roi_head.bbox_head
    return list(heads) if hasattr(heads, '__len__') else [heads]


EXPECTED_CLASSIFIER = {
    'disalign-cosine': DisAlignCosineLinear,
    'disalign': DisAlignLinear,
    'cosine': CosineLinear,
    'tde': CausalNormLinear,
    'taunorm': TauNormLinear,
    'lws': LWSLinear,
    'crt': CRTLinear,
    'ncm': NCMLinear,
    'posthoc-la': PosthocLinear,
    'posthoc-nctau': PosthocLinear,
}


def test_there_are_lvis_configs():
    names = [osp.basename(p) for p in LVIS_CONFIGS]
    for version in ('lvis-v1', 'lvis-v0.5'):
        for method in ('disalign_', 'disalign-cosine_', 'tde_', 'taunorm',
                       'cdt_', 'grw_'):
            assert any(method in n and version in n
                       for n in names), (method, version)
        assert any(
            n.startswith('cascade') and 'disalign' in n and version in n
            for n in names)
        assert any(
            n.startswith('cascade') and 'tde' in n and version in n
            for n in names)


@pytest.mark.parametrize(
    'path', LVIS_CONFIGS, ids=[osp.basename(p) for p in LVIS_CONFIGS])
def test_lvis_config_builds(path):
    cfg = Config.fromfile(path)
    with open(path) as f:
        assert 'Table' in f.read(), 'a comment must name the paper table'
    assert cfg.val_evaluator.type == 'LTLVISMetric'
    assert cfg.model.test_cfg.rcnn.max_per_img == 300
    _replace_stats_files(cfg.model)
    # 'meta' tensors: the modules are built and checked, no weights are
    # allocated or initialised (cheap)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    name = osp.basename(path)
    num_classes = 1230 if 'v0.5' in name else 1203
    heads = _heads(model)
    assert len(heads) == (3 if name.startswith('cascade') else 1)
    for head in heads:
        assert head.num_classes == num_classes
        assert head.fc_cls.out_features == num_classes + 1
        for key, cls in EXPECTED_CLASSIFIER.items():
            if f'_{key}_' in name:
                assert type(head.fc_cls) is cls, (name, type(head.fc_cls))
                break
        else:
            assert type(head.fc_cls).__name__ == 'Linear'
        if '_grw_' in name or '_disalign' in name:
            assert isinstance(head.loss_cls, GRWLoss)
            assert head.loss_cls.rho == 0.8
        if '_cdt_' in name:
            assert isinstance(head.loss_cls, CDTLoss)
        if '_tde_' in name:
            assert head.fc_cls.alpha == 1.5 and head.fc_cls.num_heads == 2
            assert head.fc_cls.background_exempt
    if '_disalign' in name:
        assert [h.type for h in cfg.custom_hooks] == ['Stage2FreezeHook']
        assert cfg.train_cfg.max_iters == (4500 if 'v0.5' in name else 9000)
        assert cfg.param_scheduler[-1].milestones == [
            4000 if 'v0.5' in name else 8000
        ]
        assert cfg.optim_wrapper.optimizer.lr == 0.02
    if '_tde_' in name:
        assert cfg.model.test_cfg.rcnn.score_thr == 1e-5


@pytest.mark.parametrize(
    'path', QUICKSTART_DET, ids=[osp.basename(p) for p in QUICKSTART_DET])
def test_quickstart_det_config_builds(path, data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(path)
    from lt_mm.engine.counts import fill_class_counts
    fill_class_counts(cfg)  # as build_runner does
    model = MODELS.build(cfg.model)
    assert all(h.num_classes == 8 for h in _heads(model))
