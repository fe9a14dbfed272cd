"""Pins of LTLVISMetric behaviour that the other tests leave open (found
by mutation testing of lt_mm/det/metrics.py): the accepted ``max_dets``,
``dataset_meta`` without classes and the range check of the predicted
labels at both ends."""
import json
import math
import os.path as osp

import pytest
import torch
from mmdet.registry import METRICS

import lt_mm.det  # noqa: F401
from tests.det.test_metrics import _evaluate, _gt_samples


@pytest.fixture(scope='module')
def val_json(data_root):
    return osp.join(data_root, 'det', 'annotations', 'lvis_v1_val.json')


def _build(val_json, **kw):
    return METRICS.build(
        dict(type='LTLVISMetric', ann_file=val_json, metric='bbox', **kw))


@pytest.mark.parametrize('max_dets', [1, -1])
def test_max_dets_one_and_no_limit_are_valid(val_json, max_dets):
    # detections = ground truth, one per object: with no limit AP is 1;
    # with one detection per image every image keeps exactly one object
    metric = _build(val_json, max_dets=max_dets)
    assert metric.max_dets == max_dets
    samples, doc = _gt_samples(val_json)
    res = _evaluate(metric, samples)
    if max_dets == -1:
        assert res['lvis/bbox_AP'] == 1.0
    else:
        per_img = {}
        for a in doc['annotations']:
            per_img[a['image_id']] = per_img.get(a['image_id'], 0) + 1
        # some image has more than one object: AP drops below 1
        assert max(per_img.values()) > 1
        assert res['lvis/bbox_AP'] < 1.0


@pytest.mark.parametrize('max_dets', [0, -2, True, 1.5, '300'])
def test_bad_max_dets_is_named(val_json, max_dets):
    with pytest.raises(ValueError, match=f'max_dets={max_dets!r}'):
        _build(val_json, max_dets=max_dets)


def test_dataset_meta_without_classes(val_json):
    metric = _build(val_json)
    metric.dataset_meta = None
    assert metric.dataset_meta is None
    metric.dataset_meta = dict(palette=[(0, 0, 0)])
    assert metric.dataset_meta == dict(palette=[(0, 0, 0)])


def test_negative_predicted_label_is_refused(val_json):
    with open(val_json) as f:
        num = len(json.load(f)['categories'])
    metric = _build(val_json)
    for labels, bad in (([0, -1], -1), ([num, 0], num)):
        sample = dict(
            img_id=1, pred_instances=dict(labels=torch.tensor(labels)))
        with pytest.raises(
                ValueError,
                match=rf'predicted label {bad} \(image id 1\) '
                rf'is outside \[0, {num}\)'):
            metric.process({}, [sample])


def test_classwise_ap_is_over_all_areas(tmp_path):
    # category 'a': a small (10 x 10), a medium (40 x 40) and a large
    # (100 x 100) object; only the large one is detected: recall 1/3 at
    # precision 1 -> the 34 recall thresholds 0.00..0.33 score 1:
    # AP = 34 / 101 = 0.33663 -> 0.337 (area 'all'; small and medium 0,
    # large 1). Category 'b' has no ground truth: NaN, not -1.
    def ann(i, box):
        x, y, w, h = box
        return dict(
            id=i,
            image_id=1,
            category_id=1,
            bbox=box,
            area=w * h,
            segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]],
            iscrowd=0)

    gt = dict(
        images=[
            dict(
                id=1,
                height=200,
                width=200,
                neg_category_ids=[2],
                not_exhaustive_category_ids=[],
                coco_url='http://images.cocodataset.org/val2017/1.jpg')
        ],
        annotations=[
            ann(1, [0, 0, 10, 10]),
            ann(2, [0, 150, 40, 40]),
            ann(3, [50, 50, 100, 100])
        ],
        categories=[
            dict(id=1, name='a', frequency='f', image_count=200),
            dict(id=2, name='b', frequency='r', image_count=2)
        ])
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(gt))
    metric = _build(str(path), classwise=True)
    sample = dict(
        img_id=1,
        ori_shape=(200, 200),
        pred_instances=dict(
            bboxes=torch.tensor([[50., 50., 150., 150.]]),
            scores=torch.tensor([0.9]),
            labels=torch.tensor([0])))
    res = _evaluate(metric, [sample])
    assert res['lvis/bbox_a_precision'] == round(34 / 101, 3) == 0.337
    assert math.isnan(res['lvis/bbox_b_precision'])
    assert res['lvis/bbox_AP'] == res['lvis/bbox_APf'] == 0.337
    assert res['lvis/bbox_APs'] == res['lvis/bbox_APm'] == 0.0
    assert res['lvis/bbox_APl'] == 1.0
    assert res['lvis/bbox_APr'] == res['lvis/bbox_APc'] == -1.0
