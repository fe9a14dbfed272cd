"""LTLVISMetric: mmdet's LVIS metric evaluated on numpy 2.

Detections made from the ground truth of the tiny LVIS val json give known
APs (1 for every evaluated group; 0 for the rare group once its detections
are removed), through mmdet's ``process`` / ``results2json`` path.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.registry import METRICS
from pycocotools import mask as mask_utils

import lt_mm.det  # noqa: F401
from lt_mm.det.lvis_eval import LVIS_METRIC_KEYS


def _gt_samples(val_json, drop_cats=()):
    """One data sample per val image with the ground truth as predictions
    (score 1), skipping the category ids in ``drop_cats``."""
    with open(val_json) as f:
        doc = json.load(f)
    cat_ids = sorted(c['id'] for c in doc['categories'])
    samples = []
    for img in doc['images']:
        h, w = img['height'], img['width']
        anns = [
            a for a in doc['annotations']
            if a['image_id'] == img['id'] and a['category_id'] not in drop_cats
        ]
        boxes, labels, masks = [], [], []
        for a in anns:
            x, y, bw, bh = a['bbox']
            boxes.append([x, y, x + bw, y + bh])
            labels.append(cat_ids.index(a['category_id']))
            rle = mask_utils.merge(
                mask_utils.frPyObjects(a['segmentation'], h, w))
            masks.append(mask_utils.decode(rle).astype(bool))
        pred = dict(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.ones(len(anns)),
            labels=torch.tensor(labels, dtype=torch.long),
            masks=torch.from_numpy(
                np.stack(masks) if masks else np.zeros((0, h, w), bool)))
        samples.append(
            dict(img_id=img['id'], ori_shape=(h, w), pred_instances=pred))
    return samples, doc


def _evaluate(metric, samples):
    metric.process({}, samples)
    return metric.evaluate(len(samples))


@pytest.fixture(scope='module')
def val_json(data_root):
    return osp.join(data_root, 'det', 'annotations', 'lvis_v1_val.json')


@pytest.mark.parametrize('backend', ['fast', 'official'])
def test_perfect_detections_give_ap_one(val_json, backend):
    metric = METRICS.build(
        dict(
            type='LTLVISMetric',
            ann_file=val_json,
            metric=['bbox', 'segm'],
            backend=backend))
    assert metric.backend == backend
    samples, _ = _gt_samples(val_json)
    res = _evaluate(metric, samples)
    for iou_type in ('bbox', 'segm'):
        for key in LVIS_METRIC_KEYS:
            assert f'lvis/{iou_type}_{key}' in res
        for key in ('AP', 'AP50', 'AP75', 'APr', 'APc', 'APf'):
            assert res[f'lvis/{iou_type}_{key}'] == 1.0, (iou_type, key)


def test_backends_agree_on_imperfect_detections(val_json):
    """Boxes shifted by 0..5 px, scores on a 0.1 grid (ties), a spurious
    copy of every detection in the next category: both backends give the
    same rounded metrics and per-category APs, and no lvis 'Assuming user
    provided the results in correct format' warning is printed."""
    samples, doc = _gt_samples(val_json)
    rng = np.random.default_rng(0)
    num_classes = len(doc['categories'])
    noisy = []
    for s in samples:
        p = s['pred_instances']
        n = len(p['labels'])
        shift = torch.from_numpy(rng.integers(0, 6, size=(n, 4))).float()
        bboxes = torch.cat([p['bboxes'] + shift, p['bboxes']])
        labels = torch.cat([p['labels'], (p['labels'] + 1) % num_classes])
        scores = torch.from_numpy(rng.integers(1, 10, size=2 * n) / 10).float()
        noisy.append(
            dict(
                s,
                pred_instances=dict(
                    bboxes=bboxes, labels=labels, scores=scores)))
    out = {}
    for backend in ('fast', 'official'):
        metric = METRICS.build(
            dict(
                type='LTLVISMetric',
                ann_file=val_json,
                metric='bbox',
                classwise=True,
                backend=backend))
        out[backend] = _evaluate(metric, noisy)
    assert out['fast'] == out['official']
    assert 0 < out['fast']['lvis/bbox_AP'] < 1


def test_no_assuming_format_warning(val_json, capfd, caplog):
    samples, _ = _gt_samples(val_json)
    for backend in ('fast', 'official'):
        metric = METRICS.build(
            dict(
                type='LTLVISMetric',
                ann_file=val_json,
                metric='bbox',
                backend=backend))
        _evaluate(metric, samples)
    out = capfd.readouterr()
    text = out.out + out.err + caplog.text
    assert 'Assuming user provided' not in text


def test_rare_group_without_detections(val_json):
    samples, doc = _gt_samples(val_json)
    rare = {c['id'] for c in doc['categories'] if c['frequency'] == 'r'}
    assert rare, 'the tiny LVIS set must have rare categories'
    samples, _ = _gt_samples(val_json, drop_cats=rare)
    metric = METRICS.build(
        dict(
            type='LTLVISMetric',
            ann_file=val_json,
            metric='bbox',
            metric_items=['AP', 'APr', 'APc', 'APf']))
    res = _evaluate(metric, samples)
    assert set(res) == {
        'lvis/bbox_AP', 'lvis/bbox_APr', 'lvis/bbox_APc', 'lvis/bbox_APf'
    }
    # rare categories: no detection -> AP 0; the others are perfect
    assert res['lvis/bbox_APr'] == 0.0
    assert res['lvis/bbox_APc'] == 1.0 and res['lvis/bbox_APf'] == 1.0
    # AP = mean over the C categories = (C - #rare) / C
    num = len(doc['categories'])
    assert res['lvis/bbox_AP'] == round((num - len(rare)) / num, 3)


def test_classwise_and_empty_results(val_json):
    samples, doc = _gt_samples(val_json)
    metric = METRICS.build(
        dict(
            type='LTLVISMetric',
            ann_file=val_json,
            metric='bbox',
            classwise=True))
    res = _evaluate(metric, samples)
    names = [c['name'] for c in doc['categories']]
    assert all(res[f'lvis/bbox_{n}_precision'] == 1.0 for n in names)
    empty, _ = _gt_samples(
        val_json, drop_cats={c['id']
                             for c in doc['categories']})
    metric = METRICS.build(
        dict(type='LTLVISMetric', ann_file=val_json, metric='bbox'))
    res = _evaluate(metric, empty)
    assert res['lvis/bbox_AP'] == 0.0 and res['lvis/bbox_APr'] == 0.0


def test_stock_lvis_metric_fails_on_numpy2(val_json):
    """Why LTLVISMetric exists: mmdet's LVISMetric builds with lvis 0.5.3
    but its evaluator calls ``np.float``, removed in numpy 1.24."""
    assert not hasattr(np, 'float')
    metric = METRICS.build(
        dict(type='LVISMetric', ann_file=val_json, metric='bbox'))
    samples, _ = _gt_samples(val_json)
    with pytest.raises(AttributeError, match='float'):
        _evaluate(metric, samples)


def test_bad_metric_arguments(val_json):
    with pytest.raises(ValueError, match='ann_file'):
        METRICS.build(dict(type='LTLVISMetric', metric='bbox'))
    with pytest.raises(ValueError, match='proposal_fast'):
        METRICS.build(
            dict(type='LTLVISMetric', ann_file=val_json, metric='proposal'))
    with pytest.raises(ValueError, match='APx'):
        METRICS.build(
            dict(type='LTLVISMetric', ann_file=val_json, metric_items=['APx']))
    with pytest.raises(ValueError, match='max_dets'):
        METRICS.build(dict(type='LTLVISMetric', ann_file=val_json, max_dets=0))
    with pytest.raises(ValueError, match="backend='cpp'"):
        METRICS.build(
            dict(type='LTLVISMetric', ann_file=val_json, backend='cpp'))


def test_images_never_inferred_are_refused(val_json, tmp_path):
    """The objects of an image that was not inferred would count as missed
    (AP 0.5 for perfect detections on half the images): refused, naming
    the images; the predictions are kept when outfile_prefix is set."""
    samples, doc = _gt_samples(val_json)
    annotated = sorted({a['image_id'] for a in doc['annotations']})
    half = [s for s in samples if s['img_id'] not in annotated[::2]]
    metric = METRICS.build(
        dict(
            type='LTLVISMetric',
            ann_file=val_json,
            metric='bbox',
            outfile_prefix=str(tmp_path / 'preds')))
    n = len(annotated[::2])
    with pytest.raises(
            ValueError,
            match=f'{n} of the {len(annotated)} images with '
            f'objects .* were not inferred .*ids '
            rf'\[{annotated[0]}, .*saved under'):
        _evaluate(metric, half)
    assert osp.isfile(tmp_path / 'preds.bbox.json')
    # images without objects may be left out (mmdet's filter_empty_gt)
    empty_img = max(im['id'] for im in doc['images']) + 1
    doc['images'].append(dict(doc['images'][0], id=empty_img))
    path = tmp_path / 'with_empty.json'
    path.write_text(json.dumps(doc))
    metric = METRICS.build(
        dict(type='LTLVISMetric', ann_file=str(path), metric='bbox'))
    assert _evaluate(metric, samples)['lvis/bbox_AP'] == 1.0
