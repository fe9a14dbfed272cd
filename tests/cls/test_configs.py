"""Every ImageNet-LT config parses and builds its model; every quickstart
classification config builds its model on the tiny data."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import lt_mm.cls  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IMAGENET_LT = sorted(
    glob.glob(osp.join(REPO, 'configs', 'imagenet_lt', '*.py')))
QUICKSTART = sorted(
    glob.glob(osp.join(REPO, 'configs', 'quickstart', 'digits_cls_*.py')))
SOURCES = ('train_ann_file', 'stats_file')

# count consumers that name no source take the training set's counts
# (lt_mm.engine.counts, at runner build): data-free, they get counts too
CONSUMERS = ('GRWLoss', 'CDTLoss')


def _data_free(obj, num_classes, posthoc=False):
    """Replace count sources that need data/imagenet_lt by counts of the
    right length (ImageNet-LT-like: 1280 down to 5), recursively."""
    if isinstance(obj, dict):
        consumer = posthoc or obj.get('type') in CONSUMERS
        if any(k in obj
               for k in SOURCES) or (consumer and 'counts' not in obj):
            for k in SOURCES:
                obj.pop(k, None)
            obj['counts'] = [
                max(5, 1280 - i * 1.275) for i in range(num_classes)
            ]
        for k, v in obj.items():
            _data_free(v, num_classes, k == 'posthoc')
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _data_free(v, num_classes)


def _build_model(cfg):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_all_paper_configs_exist():
    names = {osp.basename(p) for p in IMAGENET_LT}
    for key in ('stage1_90e', 'stage1-cb', 'stage1-sqrt', 'stage1-pb',
                'disalign-linear', 'disalign-cosine', 'tde', 'crt', 'lws',
                'taunorm', 'ncm', 'cdt', 'posthoc-nctau', 'posthoc-la'):
        assert any(key in n for n in names), key


@pytest.mark.parametrize('path', IMAGENET_LT, ids=osp.basename)
def test_imagenet_lt_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'Table' in open(path).read()  # names the paper table
    assert cfg.train_dataloader.dataset.type == 'ImageNetLTDataset'
    assert cfg.test_evaluator.type == 'LongTailAccuracy'
    stage2 = any(
        h.get('type') == 'Stage2FreezeHook'
        for h in cfg.get('custom_hooks', []))
    if stage2:
        assert cfg.load_from is None  # given on the command line
    _data_free(cfg.model, 1000)
    model = _build_model(cfg)
    assert type(model.backbone).__name__ == 'ResNeXt'
    assert model.head.num_classes == 1000
    if stage2:
        names = model.head.stage2_parameter_names()
        params = dict(model.named_parameters())
        assert all(
            any(p == n or p.startswith('head.' + n + '.') or p == 'head.' + n
                for p in params) for n in names), names


@pytest.mark.parametrize('path', QUICKSTART, ids=osp.basename)
def test_quickstart_config_builds(path, data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(path)
    assert data_root in cfg.train_dataloader.dataset.data_root
    from lt_mm.engine.counts import fill_class_counts
    fill_class_counts(cfg)  # as build_runner does
    model = _build_model(cfg)
    assert model.head.num_classes == 10
