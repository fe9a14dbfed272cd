"""Build-time checks of the detection adapter against mmdet's own objects.

* lt_mm's box classifiers need ``num_classes + 1`` softmax columns with the
  background last: a box head whose ``loss_cls`` has custom classification
  channels (mmdet ``SeesawLoss``: C class logits then two objectness
  logits) is refused when the head is built;
* a ``GRWLoss`` / ``CDTLoss`` counting another number of classes than the
  box head that builds it is refused then, not at the first loss call;
* ``LTLVISMetric`` refuses a predicted label outside the categories of its
  annotation file in ``process`` (the first batch), not in ``evaluate``;
* the counts read from an LVIS / COCO json follow mmdet's label order (the
  file's category order), also for a json not sorted by category id;
* counts read through the dataset refuse ``metainfo`` classes that list the
  file's categories in another order (mmdet labels in the file's order, so
  the names would be swapped); other names (LVIS) are left alone.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.registry import METRICS, MODELS

import lt_mm.det  # noqa: F401
from lt_mm.det.counts import (build_det_dataset, lvis_class_stats,
                              read_det_counts)
from lt_mm.toydata import make_lvis

C = 5
COUNTS = [100, 50, 20, 5, 1]
CLASSIFIERS = [
    dict(type='DisAlignLinear'),
    dict(type='DisAlignCosineLinear'),
    dict(type='CosineLinear'),
    dict(type='TauNormLinear'),
    dict(type='CausalNormLinear'),
    dict(type='LWSLinear'),
    dict(type='CRTLinear'),
    dict(type='NCMLinear'),
    dict(
        type='PosthocLinear', posthoc=dict(type='logit_adjust',
                                           counts=COUNTS)),
]


def _head(cls_predictor_cfg=None, loss_cls=None, num_classes=C):
    cfg = dict(
        type='Shared2FCBBoxHead',
        in_channels=4,
        fc_out_channels=8,
        roi_feat_size=1,
        num_classes=num_classes)
    if cls_predictor_cfg is not None:
        cfg['cls_predictor_cfg'] = cls_predictor_cfg
    if loss_cls is not None:
        cfg['loss_cls'] = loss_cls
    return MODELS.build(cfg)


# ------------------------------------------- custom classification channels
@pytest.mark.parametrize('clf', CLASSIFIERS, ids=lambda c: c['type'])
def test_seesaw_custom_channels_refused_at_build(clf):
    seesaw = dict(type='SeesawLoss', num_classes=C, loss_weight=1.0)
    with pytest.raises(ValueError) as e:
        _head(clf, seesaw)
    msg = str(e.value)
    assert f'{clf["type"]} in Shared2FCBBoxHead (num_classes={C})' in msg
    assert 'SeesawLoss' in msg and 'custom classification channels' in msg
    # C + 2 columns asked for, C + 1 needed; the fix is named
    assert f'get_cls_channels({C}) = {C + 2}' in msg
    assert f'num_classes + 1 = {C + 1}' in msg
    assert "cls_predictor_cfg=dict(type='Linear')" in msg
    # the same layer with a softmax loss builds (C + 1 columns)
    head = _head(clf)
    assert head.fc_cls.out_features == C + 1


def test_stock_linear_with_seesaw_and_standalone_layers_still_build():
    head = _head(None, dict(type='SeesawLoss', num_classes=C))
    assert head.fc_cls.out_features == C + 2  # mmdet's own layout
    # built on its own (no head): only out_features >= 2 is checked
    layer = MODELS.build(
        dict(type='DisAlignLinear', in_features=4, out_features=C + 2))
    assert layer.out_features == C + 2


# ------------------------------------------------ loss counts vs the head
@pytest.mark.parametrize('loss', ['GRWLoss', 'CDTLoss'])
def test_loss_counts_must_match_the_box_head(loss):
    eight = [100, 50, 30, 20, 10, 5, 2, 1]
    with pytest.raises(ValueError) as e:
        _head(loss_cls=dict(type=loss, counts=eight))
    msg = str(e.value)
    assert f'{loss} has class counts for 8 classes' in msg
    assert 'Shared2FCBBoxHead has num_classes=5' in msg
    assert 'tools/class_stats.py' in msg
    # the loss's own num_classes agrees with its counts: still refused
    with pytest.raises(ValueError, match='num_classes=5'):
        _head(loss_cls=dict(type=loss, num_classes=8, counts=eight))
    head = _head(loss_cls=dict(type=loss, counts=COUNTS))
    assert head.loss_cls.num_classes == C
    # cls_score (N, C + 1) goes through the loss
    out = head.loss(
        torch.randn(4, C + 1), torch.randn(4, 4 * C), torch.zeros(4, 5),
        torch.tensor([0, 1, C, C]), torch.ones(4), torch.zeros(4, 4),
        torch.ones(4, 4))
    assert torch.isfinite(out['loss_cls'])


def test_cascade_stage_loss_counts_are_checked():
    stage = dict(
        type='Shared2FCBBoxHead',
        in_channels=4,
        fc_out_channels=8,
        roi_feat_size=1,
        num_classes=C,
        loss_cls=dict(type='GRWLoss', counts=COUNTS))
    bad = dict(stage, loss_cls=dict(type='GRWLoss', counts=COUNTS + [1]))
    cfg = dict(
        type='CascadeRoIHead',
        num_stages=2,
        stage_loss_weights=[1, 0.5],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=1, sampling_ratio=0),
            out_channels=4,
            featmap_strides=[4]),
        bbox_head=[stage, bad])
    with pytest.raises(ValueError, match='counts for 6 classes'):
        MODELS.build(cfg)
    cfg['bbox_head'] = [stage, stage]
    assert len(MODELS.build(cfg).bbox_head) == 2


# --------------------------------------------------- metric label range
@pytest.fixture(scope='module')
def tiny_lvis(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('lvis_checks'))
    return make_lvis(
        root, num_classes=C, num_train=8, num_val=2, image_size=32, seed=1)


def _pred_sample(img_id, labels):
    n = len(labels)
    return dict(
        img_id=img_id,
        ori_shape=(32, 32),
        pred_instances=dict(
            bboxes=torch.tensor([[1., 1., 20., 20.]] * n).reshape(-1, 4),
            scores=torch.full((n, ), 0.9),
            labels=torch.tensor(labels, dtype=torch.long)))


def test_metric_refuses_out_of_range_labels_in_process(tiny_lvis):
    metric = METRICS.build(
        dict(type='LTLVISMetric', ann_file=tiny_lvis['val_json']))
    img_id = metric._lvis_api.get_img_ids()[0]
    for label in (C + 7, -1):
        with pytest.raises(ValueError) as e:
            metric.process({}, [_pred_sample(img_id, [0, label])])
        msg = str(e.value)
        assert f'predicted label {label} (image id {img_id})' in msg
        assert f'outside [0, {C})' in msg and 'num_classes=5' in msg
        assert tiny_lvis['val_json'] in msg
    assert metric.results == []  # nothing half-collected
    metric.process(
        {}, [_pred_sample(img_id, [0, C - 1]),
             _pred_sample(img_id, [])])
    assert len(metric.results) == 2


# ------------------------------------------ counts in mmdet's label order
def _labels_per_class(dataset_cfg, num_classes):
    ds = build_det_dataset(dataset_cfg)
    ds.full_init()
    inst = np.zeros(num_classes, np.int64)
    imgs = np.zeros(num_classes, np.int64)
    for i in range(len(ds)):
        labels = [
            int(x['bbox_label']) for x in ds.get_data_info(i)['instances']
            if not x.get('ignore_flag', 0)
        ]
        hist = np.bincount(labels, minlength=num_classes)
        inst += hist
        imgs += hist > 0
    return ds, inst.tolist(), imgs.tolist()


@pytest.mark.parametrize('ds_type', ['LVISV1Dataset', 'CocoDataset'])
def test_json_counts_follow_mmdet_labels_for_unsorted_categories(
        tiny_lvis, tmp_path, ds_type):
    with open(tiny_lvis['train_json']) as f:
        doc = json.load(f)
    doc['categories'] = doc['categories'][::-1]  # ids C, C - 1, ..., 1
    path = str(tmp_path / 'train_reversed.json')
    with open(path, 'w') as f:
        json.dump(doc, f)
    names = [c['name'] for c in doc['categories']]
    root = osp.dirname(osp.dirname(tiny_lvis['train_json']))
    ds, inst, imgs = _labels_per_class(
        dict(
            type=ds_type,
            data_root=root,
            ann_file=path,
            data_prefix=dict(img=''),
            # class names sorted by id: mmdet still labels in file order
            metainfo=dict(classes=tuple(sorted(names))),
            pipeline=[]),
        C)
    assert list(ds.cat_ids) == [c['id'] for c in doc['categories']]
    st_i = lvis_class_stats(path, 'instances', cache_file=False)
    st_img = lvis_class_stats(path, 'images', cache_file=False)
    assert st_i.counts == [float(v) for v in inst]
    assert st_img.counts == [float(v) for v in imgs]
    assert st_img.names == names
    assert st_img.extra['category_ids'] == list(ds.cat_ids)
    # the long tail is reversed with the categories (not re-sorted by id)
    assert st_img.counts == [float(v) for v in tiny_lvis['image_counts'][::-1]]


def _dataset_cfg(tiny_lvis, ds_type, classes):
    return dict(
        type=ds_type,
        data_root=osp.dirname(osp.dirname(tiny_lvis['train_json'])),
        ann_file=tiny_lvis['train_json'],
        data_prefix=dict(img=''),
        metainfo=dict(classes=tuple(classes)),
        pipeline=[])


@pytest.mark.parametrize('ds_type', ['LVISV1Dataset', 'CocoDataset'])
def test_dataset_counts_refuse_classes_in_another_order(tiny_lvis, ds_type):
    with open(tiny_lvis['train_json']) as f:
        names = [c['name'] for c in json.load(f)['categories']]
    cfg = _dataset_cfg(tiny_lvis, ds_type, names[::-1])
    with pytest.raises(ValueError) as err:
        read_det_counts(cfg, 'images', C, cache_file=False, source='dataset')
    msg = str(err.value)
    # label 0 is the file's first category; reversed, it is named the last
    assert f'label 0 is {names[0]!r} but would be named {names[-1]!r}' in msg
    assert f'classes={tuple(names)!r}' in msg
    assert tiny_lvis['train_json'] in msg
    # in the file's order: the file's names and counts
    cfg['metainfo'] = dict(classes=tuple(names))
    st = read_det_counts(cfg, 'images', C, cache_file=False, source='dataset')
    assert st.names == names
    assert st.counts == [float(v) for v in tiny_lvis['image_counts']]


def test_dataset_counts_cached_before_the_order_check_recomputed(
        tiny_lvis, tmp_path):
    # a cache of the reversed classes written without the check (its key
    # lacks the check's mark) is not a hit: the order is checked
    from lt_mm.core.stats import ClassStats, cached_class_stats
    from lt_mm.engine.counts import without_pipelines
    with open(tiny_lvis['train_json']) as f:
        names = [c['name'] for c in json.load(f)['categories']]
    cfg = _dataset_cfg(tiny_lvis, 'CocoDataset', names[::-1])
    cache = str(tmp_path / 'stats.json')
    old_key = dict(
        reader='det.dataset',
        unit='images',
        config=json.dumps(without_pipelines(cfg), sort_keys=True, default=str))
    cached_class_stats(
        tiny_lvis['train_json'], old_key,
        lambda: ClassStats(counts=[1] * C, unit='images', names=names[::-1]),
        cache, cache)
    with pytest.raises(ValueError, match='label 0 is'):
        read_det_counts(cfg, 'images', C, cache_file=cache, source='dataset')


def test_lvis_dataset_names_other_than_the_files_left_alone(tiny_lvis):
    # LVIS labels every category of the file by position whatever the
    # names (as LTLVISMetric, which logs differing names): no reordering
    # to detect, the counts carry the config's names
    renamed = [f'x{i}' for i in range(C)]
    st = read_det_counts(
        _dataset_cfg(tiny_lvis, 'LVISV1Dataset', renamed),
        'images',
        C,
        cache_file=False,
        source='dataset')
    assert st.names == renamed
    assert st.counts == [float(v) for v in tiny_lvis['image_counts']]
