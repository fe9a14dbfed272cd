"""Both LVIS backends must reproduce the official lvis 0.5.3 evaluator.

The official ``lvis.LVISEval.accumulate`` uses ``np.float`` (removed in
numpy 1.24). The tests run it under a *test-only* shim that sets
``np.float = float`` and removes it again, and compare every metric and
the full precision / recall tables with ``backend='official'``
(bit-identical) and ``backend='fast'`` (faster-coco-eval's compiled LVIS
mode with the protocol around it: equal to 1e-12; the compiled
accumulation rounds differently in the last bit).
"""
import contextlib
import copy
import json
import logging

import numpy as np
import pytest
from lvis import LVIS, LVISEval, LVISResults
from pycocotools import mask as mask_utils

from lt_mm.det.lvis_eval import (LVIS_METRIC_KEYS, LVISEvalNumpy2,
                                 evaluate_lvis, keep_top_per_image,
                                 run_lvis_eval)
from lt_mm.toydata import make_lvis


def assert_close(actual, expected, rtol=0, atol=1e-12):
    """Float comparison (numbers only; keeps this test free of torch)."""
    assert abs(actual - expected) <= atol + rtol * abs(expected), (actual,
                                                                   expected)


@contextlib.contextmanager
def numpy_float_alias():
    """Temporarily restore the alias ``np.float = float`` (tests only)."""
    assert not hasattr(np, 'float'), 'numpy already has np.float'
    np.float = float
    try:
        yield
    finally:
        del np.float


def _official(gt_path, dets, iou_type, max_dets=300):
    gt = LVIS(gt_path)
    dt = LVISResults(gt, copy.deepcopy(dets), max_dets=max_dets)
    ev = LVISEval(gt, dt, iou_type)
    ev.params.max_dets = max_dets
    with numpy_float_alias():
        ev.run()
    assert not hasattr(np, 'float')
    return ev


def _ours(gt_path, dets, iou_type, max_dets=300):
    gt = LVIS(gt_path)
    dt = LVISResults(gt, copy.deepcopy(dets), max_dets=max_dets)
    ev = LVISEvalNumpy2(gt, dt, iou_type)
    ev.params.max_dets = max_dets
    ev.run()
    return ev


# ------------------------------------------------------- synthetic dataset
@pytest.fixture(scope='module')
def val_json(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('lvis_eval'))
    # 288 px canvases with digits of 0.1..0.55 of the side: small, medium
    # and large objects all occur
    out = make_lvis(
        root,
        num_train=24,
        num_val=12,
        image_size=288,
        instance_size=(0.1, 0.55),
        seed=1)
    return out['val_json']


def _jitter_box(box, rng, scale):
    x, y, w, h = box
    dx, dy, dw, dh = rng.normal(0, scale, size=4) * np.array([w, h, w, h])
    return [
        float(x + dx),
        float(y + dy),
        float(max(1.0, w + dw)),
        float(max(1.0, h + dh))
    ]


def _box_rle(box, h, w):
    x, y, bw, bh = box
    m = np.zeros((h, w), dtype=np.uint8, order='F')
    m[int(y):int(y + bh), int(x):int(x + bw)] = 1
    return mask_utils.encode(m)


def _detections(gt_path, seed=0):
    """Jittered GT with random (often tied) scores, duplicates, misses,
    and false positives of present / negative / not-exhaustive /
    unknown-status categories; both box and RLE-mask results."""
    rng = np.random.default_rng(seed)
    gt = LVIS(gt_path)
    cat_ids = sorted(gt.get_cat_ids())
    boxes, segms = [], []

    def score():
        # one decimal: many ties, so the stable ranking of tied scores
        # (mergesort over images in id order) matters
        return round(float(rng.random()), 1)

    def add(img, cat, box, mask, score):
        base = dict(image_id=img['id'], category_id=cat, score=score)
        boxes.append(dict(base, bbox=box))
        segms.append(dict(base, segmentation=mask))

    for img in gt.dataset['images']:
        h, w = img['height'], img['width']
        anns = gt.img_ann_map[img['id']]
        for ann in anns:
            if rng.random() < 0.15:
                continue  # missed
            m = gt.ann_to_mask(ann)
            for _ in range(1 + int(rng.random() < 0.3)):  # + duplicate
                dx, dy = rng.integers(-3, 4, size=2)
                shifted = np.roll(np.roll(m, dy, axis=0), dx, axis=1)
                add(img, ann['category_id'],
                    _jitter_box(ann['bbox'], rng, 0.08),
                    mask_utils.encode(np.asfortranarray(shifted)), score())
        present = sorted({a['category_id'] for a in anns})
        unknown = [
            c for c in cat_ids
            if c not in present and c not in img['neg_category_ids']
        ]
        fp_cats = (
            present + img['neg_category_ids'] +
            img['not_exhaustive_category_ids'] + unknown[:1])
        for cat in fp_cats:
            for _ in range(2):
                bw, bh = rng.uniform(8, 0.6 * w, size=2)
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                box = [float(x), float(y), float(bw), float(bh)]
                add(img, cat, box, _box_rle(box, h, w), 0.8 * score())
    return boxes, segms


@pytest.fixture(scope='module')
def dets(val_json):
    return _detections(val_json)


# ------------------------------------------------------------------ tests
def test_official_evaluator_breaks_on_numpy2(val_json, dets):
    """Documents the breakage that LVISEvalNumpy2 fixes."""
    gt = LVIS(val_json)
    ev = LVISEval(gt, LVISResults(gt, copy.deepcopy(dets[0])), 'bbox')
    assert not hasattr(np, 'float')
    with pytest.raises(AttributeError, match='float'):
        ev.run()


def test_numpy_is_left_untouched(val_json, dets):
    evaluate_lvis(val_json, dets[0], 'bbox')
    assert not hasattr(np, 'float')


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
@pytest.mark.parametrize('max_dets', [300, 3])
def test_matches_official_evaluator(val_json, dets, iou_type, max_dets):
    results = dets[0] if iou_type == 'bbox' else dets[1]
    official = _official(val_json, results, iou_type, max_dets)
    assert not hasattr(np, 'float')  # the shim is gone
    ours = _ours(val_json, results, iou_type, max_dets)

    # the full tables are bit-identical, not just the means
    np.testing.assert_array_equal(ours.eval['precision'],
                                  official.eval['precision'])
    np.testing.assert_array_equal(ours.eval['recall'], official.eval['recall'])
    assert ours.results.keys() == official.results.keys()
    for key, value in official.results.items():
        assert float(ours.results[key]) == float(value), key

    # the convenience function gives the same numbers
    metrics = evaluate_lvis(
        val_json, results, iou_type, max_dets=max_dets, backend='official')
    assert tuple(metrics) == LVIS_METRIC_KEYS
    for key in LVIS_METRIC_KEYS:
        assert isinstance(metrics[key], float)
        assert metrics[key] == float(official.results[key]), key
    # the synthetic set exercises every group and area range
    if max_dets == 300:
        assert all(metrics[k] > 0 for k in LVIS_METRIC_KEYS), metrics


def test_dt_pointers_match_official(val_json, dets):
    official = _official(val_json, dets[0], 'bbox')
    ours = _ours(val_json, dets[0], 'bbox')
    for k, per_area in official.eval['dt_pointers'].items():
        for a, ptr in per_area.items():
            assert ours.eval['dt_pointers'][k][a].keys() == ptr.keys()
            for name, arr in ptr.items():
                np.testing.assert_array_equal(
                    ours.eval['dt_pointers'][k][a][name], arr)


def test_evaluate_lvis_accepts_paths_and_objects(tmp_path, val_json, dets):
    res_file = tmp_path / 'bbox.json'
    res_file.write_text(json.dumps(dets[0]))
    by_path = evaluate_lvis(val_json, str(res_file), 'bbox')
    by_obj = evaluate_lvis(LVIS(val_json), dets[0], 'bbox')
    assert by_path == by_obj
    before = copy.deepcopy(dets[0])
    evaluate_lvis(val_json, dets[0], 'bbox')
    assert dets[0] == before  # results are not modified


# ------------------------------------------------- hand-computed federated
def _tiny_gt(tmp_path, neg=(), not_exhaustive=()):
    """Image 1: two 20x20 GT boxes of category 1 ('f'); image 2: none.
    Category 2 ('c') has one GT in image 2 so that the 'c' group exists."""
    gt = {
        'images': [
            dict(
                id=1,
                height=100,
                width=100,
                neg_category_ids=[],
                not_exhaustive_category_ids=list(not_exhaustive),
                coco_url='http://images.cocodataset.org/val2017/1.jpg'),
            dict(
                id=2,
                height=100,
                width=100,
                neg_category_ids=list(neg),
                not_exhaustive_category_ids=[],
                coco_url='http://images.cocodataset.org/val2017/2.jpg'),
        ],
        'annotations': [
            dict(
                id=1,
                image_id=1,
                category_id=1,
                bbox=[0, 0, 20, 20],
                area=400,
                segmentation=[[0, 0, 20, 0, 20, 20, 0, 20]],
                iscrowd=0),
            dict(
                id=2,
                image_id=1,
                category_id=1,
                bbox=[50, 50, 20, 20],
                area=400,
                segmentation=[[50, 50, 70, 50, 70, 70, 50, 70]],
                iscrowd=0),
            dict(
                id=3,
                image_id=2,
                category_id=2,
                bbox=[10, 10, 20, 20],
                area=400,
                segmentation=[[10, 10, 30, 10, 30, 30, 10, 30]],
                iscrowd=0),
        ],
        'categories': [
            dict(id=1, name='a', frequency='f', image_count=100),
            dict(id=2, name='b', frequency='c', image_count=10),
        ],
    }
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(gt))
    return str(path)


# d1 hits GT 1, d2 is a miss in image 1, d4 a category-1 box in image 2,
# d3 hits GT 2; d5 hits category 2 exactly
TINY_DETS = [
    dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20], score=0.9),
    dict(image_id=1, category_id=1, bbox=[25, 0, 20, 20], score=0.8),
    dict(image_id=2, category_id=1, bbox=[60, 0, 20, 20], score=0.75),
    dict(image_id=1, category_id=1, bbox=[50, 50, 20, 20], score=0.7),
    dict(image_id=2, category_id=2, bbox=[10, 10, 20, 20], score=0.5),
]


def _ap(tp_fp, num_gt):
    """Reference 101-point interpolated AP, written out by hand."""
    tp = np.cumsum(tp_fp)
    fp = np.cumsum([1 - v for v in tp_fp])
    rc = tp / num_gt
    pr = tp / (tp + fp)
    recs = np.linspace(0, 1, 101)
    return float(
        np.mean(
            [max([p for p, r in zip(pr, rc) if r >= t] or [0]) for t in recs]))


def test_federated_rules_hand_computed(tmp_path):
    # 1) image 2 says nothing about category 1 -> d4 is dropped.
    #    Category 1 ranking TP (d1), FP (d2), TP (d3), G = 2:
    #    recall .5, .5, 1; precision 1, 1/2, 2/3 -> envelope 1, 2/3, 2/3.
    #    Recall thresholds 0.00..0.50 (51) -> 1, 0.51..1.00 (50) -> 2/3:
    #    AP_1 = (51 + 50 * 2/3) / 101 = 253/303. Category 2: AP_2 = 1.
    m = evaluate_lvis(_tiny_gt(tmp_path), TINY_DETS, 'bbox')
    assert _ap([1, 0, 1], 2) == pytest.approx(253 / 303, abs=1e-15)
    assert_close(m['APf'], 253 / 303, rtol=0, atol=1e-12)
    assert_close(m['APc'], 1.0, rtol=0, atol=1e-12)
    assert_close(m['AP'], (253 / 303 + 1) / 2, rtol=0, atol=1e-12)
    # exact boxes: same at every IoU threshold; all objects are small
    # (to the last bit with backend='official'; 1 ulp with 'fast')
    assert_close(m['AP50'], m['AP'], rtol=0, atol=1e-15)
    assert_close(m['APs'], m['AP'], rtol=0, atol=1e-15)
    assert m['APr'] == m['APm'] == m['APl'] == -1.0

    # 2) category 1 verified absent in image 2 -> d4 is a false positive:
    #    TP, FP, FP, TP: precision 1, 1/2, 1/3, 1/2 -> envelope 1, 1/2,
    #    1/2, 1/2: AP_1 = (51 + 50 / 2) / 101 = 76/101.
    m = evaluate_lvis(_tiny_gt(tmp_path, neg=[1]), TINY_DETS, 'bbox')
    assert _ap([1, 0, 0, 1], 2) == pytest.approx(76 / 101, abs=1e-15)
    assert_close(m['APf'], 76 / 101, rtol=0, atol=1e-12)

    # 3) category 1 not exhaustively annotated in image 1 -> the unmatched
    #    d2 is ignored: TP, TP -> AP_1 = 1.
    m = evaluate_lvis(
        _tiny_gt(tmp_path, not_exhaustive=[1]), TINY_DETS, 'bbox')
    assert_close(m['APf'], 1.0, rtol=0, atol=1e-12)

    # 4) keeping 1 detection per image: image 1 keeps d1 only, image 2
    #    keeps d4 (0.75 > 0.5) which is dropped (case 1), so category 2 has
    #    no detection: AP_1 = recall .5 -> 51/101, AP_2 = 0.
    m = evaluate_lvis(_tiny_gt(tmp_path), TINY_DETS, 'bbox', max_dets=1)
    assert_close(m['APf'], 51 / 101, rtol=0, atol=1e-12)
    assert m['APc'] == 0.0

    # the official evaluator (under the shim) agrees on all four cases,
    # including recall 0 for category 2 without detections in case 4
    for kw, md in (({}, 300), ({
            'neg': [1]
    }, 300), ({
            'not_exhaustive': [1]
    }, 300), ({}, 1)):
        path = _tiny_gt(tmp_path, **kw)
        off = _official(path, TINY_DETS, 'bbox', md)
        ours = _ours(path, TINY_DETS, 'bbox', md)
        np.testing.assert_array_equal(ours.eval['precision'],
                                      off.eval['precision'])
        np.testing.assert_array_equal(ours.eval['recall'], off.eval['recall'])
        assert ours.results == off.results, kw
        metrics = evaluate_lvis(
            path, TINY_DETS, 'bbox', max_dets=md, backend='official')
        fast = evaluate_lvis(path, TINY_DETS, 'bbox', max_dets=md)
        for key in LVIS_METRIC_KEYS:
            assert metrics[key] == float(off.results[key]), (kw, key)
            assert_close(fast[key], metrics[key], atol=1e-12)
    assert ours.eval['recall'][:, 1, 0].tolist() == [0.0] * 10


def test_empty_results_give_zero_ap(tmp_path):
    # the official LVISResults cannot be built from [] (IndexError)
    path = _tiny_gt(tmp_path)
    with pytest.raises(IndexError):
        LVISResults(LVIS(path), [])
    for backend in ('fast', 'official'):
        m = evaluate_lvis(path, [], 'segm', backend=backend)
        assert m['AP'] == m['APf'] == m['APc'] == m['APs'] == 0.0
        assert m['APr'] == m['APm'] == m['APl'] == -1.0


def test_bad_inputs(tmp_path):
    path = _tiny_gt(tmp_path)
    with pytest.raises(ValueError, match='iou_type'):
        evaluate_lvis(path, TINY_DETS, 'keypoints')
    with pytest.raises(ValueError, match='max_dets'):
        evaluate_lvis(path, TINY_DETS, 'bbox', max_dets=0)
    with pytest.raises(ValueError, match='segmentation'):
        evaluate_lvis(path, TINY_DETS, 'segm')  # boxes only
    with pytest.raises(ValueError, match='category_id=7'):
        evaluate_lvis(path, [dict(TINY_DETS[0], category_id=7)], 'bbox')
    with pytest.raises(ValueError, match='image_id=9'):
        evaluate_lvis(path, [dict(TINY_DETS[0], image_id=9)], 'bbox')
    for backend in ('fast', 'official'):  # the same checks on both
        with pytest.raises(ValueError, match=r'results\[1\].*category_id=7'):
            evaluate_lvis(
                path,
                [TINY_DETS[0], dict(TINY_DETS[0], category_id=7)],
                'bbox',
                backend=backend)
        with pytest.raises(ValueError, match='segmentation'):
            evaluate_lvis(path, TINY_DETS, 'segm', backend=backend)
    with pytest.raises(ValueError, match='score'):
        evaluate_lvis(path, [dict(TINY_DETS[0], score=float('nan'))])
    with pytest.raises(ValueError, match="backend='slow'"):
        evaluate_lvis(path, TINY_DETS, 'bbox', backend='slow')
    with pytest.raises(ValueError, match='num_workers'):
        evaluate_lvis(path, TINY_DETS, 'bbox', num_workers=0)
    with pytest.raises(RuntimeError, match='evaluate'):
        gt = LVIS(path)
        LVISEvalNumpy2(gt, LVISResults(gt, copy.deepcopy(TINY_DETS)),
                       'bbox').accumulate()


# ------------------------------------------------------------ fast backend
def _assert_same_tables(fast, official, atol=1e-12):
    """Metrics and full precision / recall tables agree to ``atol``."""
    assert fast.backend == 'fast' and official.backend == 'official'
    assert fast.cat_ids == official.cat_ids
    np.testing.assert_allclose(
        fast.precision, official.precision, rtol=0, atol=atol)
    np.testing.assert_allclose(fast.recall, official.recall, rtol=0, atol=atol)
    for key in LVIS_METRIC_KEYS:
        assert_close(fast.metrics[key], official.metrics[key], atol=atol)


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
@pytest.mark.parametrize('max_dets', [300, 3, -1])
def test_fast_backend_matches_official(val_json, dets, iou_type, max_dets):
    """Tied scores (one decimal), duplicates, federated false positives,
    masks without boxes (area from the mask): same tables as the official
    evaluator; max_dets=3 cuts through ties in every image."""
    results = dets[0] if iou_type == 'bbox' else dets[1]
    before = copy.deepcopy(results)
    gt = LVIS(val_json)
    gt_before = copy.deepcopy(gt.dataset)
    fast = run_lvis_eval(gt, results, iou_type, max_dets)
    assert gt.dataset == gt_before  # the fast backend leaves gt alone
    assert results == before  # and the results
    official = run_lvis_eval(
        val_json, results, iou_type, max_dets, backend='official')
    assert results == before
    _assert_same_tables(fast, official)
    # the official evaluator itself (np.float shim) gives the same tables
    ref = _official(val_json, results, iou_type, max_dets)
    np.testing.assert_array_equal(official.precision, ref.eval['precision'])
    if max_dets == 300:
        assert all(fast.metrics[k] > 0 for k in LVIS_METRIC_KEYS)


def test_fast_backend_with_images_not_sorted_by_id(tmp_path, val_json, dets):
    """The json's image list in another order than the ids (COCO-derived
    files are not sorted): the federated lists (neg / not exhaustive) stay
    on their images. The fast backend used to key them by position and
    gave AP 27.8 / APr 31.0 instead of 22.2 / 7.9 on this set."""
    with open(val_json) as f:
        doc = json.load(f)
    assert any(im.get('neg_category_ids') for im in doc['images'])
    rng = np.random.default_rng(0)
    for name, order in (('reversed', np.arange(len(doc['images']))[::-1]),
                        ('shuffled', rng.permutation(len(doc['images'])))):
        path = tmp_path / f'val_{name}.json'
        path.write_text(
            json.dumps(dict(doc, images=[doc['images'][i] for i in order])))
        for iou_type, results in (('bbox', dets[0]), ('segm', dets[1])):
            fast = run_lvis_eval(str(path), results, iou_type)
            official = run_lvis_eval(
                str(path), results, iou_type, backend='official')
            _assert_same_tables(fast, official)
            # the order of the list does not change the numbers
            same = run_lvis_eval(val_json, results, iou_type)
            np.testing.assert_array_equal(fast.precision, same.precision)


def test_fast_backend_after_official_segm_on_same_gt(val_json, dets):
    """The official segm evaluation converts the gt polygons to RLE in
    place; the fast one works on either form."""
    gt = LVIS(val_json)
    official = run_lvis_eval(gt, dets[1], 'segm', backend='official')
    fast = run_lvis_eval(gt, dets[1], 'segm', num_workers=2)
    _assert_same_tables(fast, official)


def test_keep_top_per_image_matches_lvis_results():
    """The official rule: per image, Python's stable sort by score
    (descending) and the first max_dets; heavy ties (3 score values) and
    images above and below the limit."""
    rng = np.random.default_rng(0)
    n = 500
    anns = [
        dict(
            image_id=int(rng.integers(1, 6)),
            score=float(rng.integers(0, 3)) / 2,
            pos=i) for i in range(n)
    ]
    for max_dets in (1, 7, 60, 300, 1000):
        ref = LVISResults.limit_dets_per_image(None, anns, max_dets)
        keep = keep_top_per_image(
            np.array([a['image_id'] for a in anns]),
            np.array([a['score'] for a in anns]), max_dets)
        assert sorted(a['pos'] for a in ref) == keep.tolist(), max_dets
    keep = keep_top_per_image(np.array([1, 1]), np.array([0.5, 0.5]), -1)
    assert keep.tolist() == [0, 1]


def test_top_dets_per_image_ties_hand_computed(tmp_path):
    """Image 1 has GT boxes A=[0,0,20,20] and B=[50,50,20,20] (category 1);
    d1 hits A (0.9), d2 misses (0.5), d3 hits B (0.5). With max_dets=2
    the official rule keeps d1 and the first given of the tied d2 / d3:

    * order d1, d2, d3 keeps d1 (TP), d2 (FP): recall .5, precision 1 up
      to recall .5 -> AP_1 = 51/101 (51 recall thresholds 0.00..0.50);
    * order d1, d3, d2 keeps d1, d3 (TP, TP) -> AP_1 = 1.

    Category 2 (one GT in image 2, hit by d5) is untouched: AP_2 = 1.
    Then the cap is per image, not per image and category (as
    faster-coco-eval's maxDets): see the second case below.
    """
    path = _tiny_gt(tmp_path)
    d1, d2, d3 = (
        [TINY_DETS[0]] +
        [dict(TINY_DETS[1], score=0.5),
         dict(TINY_DETS[3], score=0.5)])
    d5 = TINY_DETS[4]
    for dets_, ap1 in (([d1, d2, d3, d5], 51 / 101), ([d1, d3, d2, d5], 1.0)):
        for backend in ('fast', 'official'):
            m = evaluate_lvis(path, dets_, 'bbox', max_dets=2, backend=backend)
            assert_close(m['APf'], ap1, atol=1e-12)
            assert_close(m['APc'], 1.0, atol=1e-12)
    # > max_dets in one image and several categories: 3 extra category-2
    # boxes in image 1 (0.95, verified absent there -> false positives)
    # push d3 out of the top 3 of image 1, whatever the per-category count
    doc = json.loads(open(path).read())
    doc['images'][0]['neg_category_ids'] = [2]
    neg_path = tmp_path / 'neg.json'
    neg_path.write_text(json.dumps(doc))
    extra = [
        dict(image_id=1, category_id=2, bbox=[80, 0, 10, 10], score=0.95)
        for _ in range(3)
    ]
    # image 1 keeps the 3 category-2 boxes (0.95): category 1 loses d1 as
    # well -> AP_1 = 0; category 2: FP, FP, FP (0.95) then d5 (TP, image 2)
    # -> precision 1/4 at recall 1 -> AP_2 = 1/4 (all 101 thresholds)
    for backend in ('fast', 'official'):
        m = evaluate_lvis(
            str(neg_path), [d1, d2, d3, d5] + extra,
            'bbox',
            max_dets=3,
            backend=backend)
        assert_close(m['APf'], 0.0, atol=1e-12)
        assert_close(m['APc'], 0.25, atol=1e-12)


def test_category_and_image_without_detections(tmp_path, val_json, dets):
    """No detection of one annotated category (its AP is 0, it still
    counts) and none in one image: both backends agree; tiny case by
    hand: without d5, AP_2 = 0 and AP_1 = 253/303 (case 1 above)."""
    path = _tiny_gt(tmp_path)
    for backend in ('fast', 'official'):
        m = evaluate_lvis(path, TINY_DETS[:4], 'bbox', backend=backend)
        assert_close(m['APc'], 0.0, atol=0)
        assert_close(m['APf'], 253 / 303, atol=1e-12)
        assert_close(m['AP'], 253 / 606, atol=1e-12)
    boxes = dets[0]
    cat = boxes[0]['category_id']
    img = boxes[-1]['image_id']
    results = [
        r for r in boxes if r['category_id'] != cat and r['image_id'] != img
    ]
    fast = run_lvis_eval(val_json, results, 'bbox')
    official = run_lvis_eval(val_json, results, 'bbox', backend='official')
    _assert_same_tables(fast, official)
    k = fast.cat_ids.index(cat)
    assert (fast.precision[:, :, k, 0] == 0).all()  # evaluated, AP 0


def test_ignore_flags_use_official_backend(tmp_path):
    """faster-coco-eval ignores only crowd GT; a GT marked 'ignore' (which
    the official evaluator honours) makes the fast backend defer: GT 2
    ignored -> category 1: d1 TP, d2 FP, d3 matches the ignored GT
    (ignored): precision 1, 1/2; recall 1 at d1 -> AP_1 = 1."""
    doc = json.loads(open(_tiny_gt(tmp_path)).read())
    doc['annotations'][1]['ignore'] = 1
    path = tmp_path / 'ignore.json'
    path.write_text(json.dumps(doc))
    fast = run_lvis_eval(str(path), TINY_DETS, 'bbox')
    official = run_lvis_eval(str(path), TINY_DETS, 'bbox', backend='official')
    assert fast.backend == 'official'
    assert fast.metrics == official.metrics
    assert_close(fast.metrics['APf'], 1.0, atol=1e-12)


def test_official_backend_is_quiet(tmp_path, caplog):
    """lvis' 'Assuming user provided the results in correct format' warning
    (one per evaluation) is dropped; other lvis warnings are kept."""
    path = _tiny_gt(tmp_path)
    with caplog.at_level(logging.INFO):
        evaluate_lvis(path, TINY_DETS, 'bbox', backend='official')
        evaluate_lvis(path, TINY_DETS, 'bbox')
    assert not [r for r in caplog.records if 'Assuming' in r.getMessage()]
    logger = logging.getLogger('lvis.results')
    assert not logger.filters  # the filter is removed again
    with caplog.at_level(logging.WARNING):
        logger.warning('Assuming user provided the results in correct format')
    assert [r for r in caplog.records if 'Assuming' in r.getMessage()]


def test_missing_frequency_is_named(tmp_path):
    doc = json.loads(open(_tiny_gt(tmp_path)).read())
    del doc['categories'][1]['frequency']
    path = tmp_path / 'nofreq.json'
    path.write_text(json.dumps(doc))
    for backend in ('fast', 'official'):
        with pytest.raises(ValueError, match=r'nofreq\.json.*frequency'):
            evaluate_lvis(str(path), TINY_DETS, 'bbox', backend=backend)


def test_many_masks_without_boxes(tmp_path):
    """400 mask-only results in 2 images, cut to the best 150 per image
    (300 kept: areas from the masks, in chunks, as pycocotools' area() of
    > 255 RLEs overflows): both backends agree."""
    rng = np.random.default_rng(1)
    path = _tiny_gt(tmp_path)
    results = []
    for _ in range(400):
        w, h = rng.integers(5, 40, size=2)
        x, y = rng.integers(0, 100 - 40, size=2)
        rle = _box_rle([int(x), int(y), int(w), int(h)], 100, 100)
        results.append(
            dict(
                image_id=int(rng.integers(1, 3)),
                category_id=int(rng.integers(1, 3)),
                score=round(float(rng.random()), 1),
                segmentation=dict(
                    size=rle['size'], counts=rle['counts'].decode())))
    fast = run_lvis_eval(path, results, 'segm', max_dets=150)
    official = run_lvis_eval(
        path, results, 'segm', max_dets=150, backend='official')
    _assert_same_tables(fast, official)


def _area_gt(tmp_path, second_area):
    doc = dict(
        images=[
            dict(
                id=1,
                height=64,
                width=64,
                neg_category_ids=[],
                not_exhaustive_category_ids=[])
        ],
        categories=[dict(id=1, name='a', frequency='f')],
        annotations=[
            dict(
                id=1,
                image_id=1,
                category_id=1,
                bbox=[10, 10, 20, 20],
                area=400.0,
                segmentation=[[10, 10, 30, 10, 30, 30, 10, 30]]),
            dict(
                id=2,
                image_id=1,
                category_id=1,
                bbox=[40, 40, 20, 20],
                area=second_area,
                segmentation=[[40, 40, 60, 40, 60, 60, 40, 60]])
        ])
    path = str(tmp_path / f'area_{second_area}.json')
    with open(path, 'w') as f:
        json.dump(doc, f)
    return path


def _rle(box):
    m = np.zeros((64, 64), np.uint8, order='F')
    if box:
        x, y, w, h = box
        m[y:y + h, x:x + w] = 1
    r = mask_utils.encode(m)
    r['counts'] = r['counts'].decode()
    return r


@pytest.mark.parametrize('backend', ['fast', 'official'])
def test_zero_area_annotations_are_left_out_as_officially(tmp_path, backend):
    """lvis.LVIS.get_ann_ids loads only 0 < area < inf, for the ground
    truth and for the detections (after the per-image cut)."""
    # a zero-width box ranked first is not a false positive: both true
    # boxes found, precision 1 at every recall -> AP 1 (else 2/3 at
    # recall .5..1: (51 + 50 * 2/3) / 101)
    boxes = [
        dict(image_id=1, category_id=1, score=0.95, bbox=[5, 5, 0, 10]),
        dict(image_id=1, category_id=1, score=0.9, bbox=[10, 10, 20, 20]),
        dict(image_id=1, category_id=1, score=0.8, bbox=[40, 40, 20, 20])
    ]
    two = _area_gt(tmp_path, 400.0)
    assert evaluate_lvis(two, boxes, 'bbox', backend=backend)['AP'] == \
        pytest.approx(1.0, abs=1e-12)
    # a ground truth of area 0 (or below) is no object: AP 1 with the other
    # one found (else recall .5: 51/101)
    for area in (0.0, -5.0):
        m = evaluate_lvis(
            _area_gt(tmp_path, area), boxes[1:2], 'bbox', backend=backend)
        assert m['AP'] == pytest.approx(1.0, abs=1e-12), area
    # masks without boxes: an empty mask (area 0) ranked first
    masks = [
        dict(image_id=1, category_id=1, score=0.95, segmentation=_rle(None)),
        dict(
            image_id=1,
            category_id=1,
            score=0.9,
            segmentation=_rle([10, 10, 20, 20])),
        dict(
            image_id=1,
            category_id=1,
            score=0.8,
            segmentation=_rle([40, 40, 20, 20]))
    ]
    assert evaluate_lvis(two, masks, 'segm', backend=backend)['AP'] == \
        pytest.approx(1.0, abs=1e-12)
    # the official evaluator agrees on every case
    for path, dets, iou in ((two, boxes, 'bbox'), (two, masks, 'segm'),
                            (_area_gt(tmp_path, 0.0), boxes, 'bbox')):
        off = _official(path, dets, iou)
        ours = evaluate_lvis(path, dets, iou, backend=backend)
        for key in LVIS_METRIC_KEYS:
            assert ours[key] == pytest.approx(off.results[key], abs=1e-12)


@pytest.mark.parametrize('backend', ['fast', 'official'])
def test_malformed_ids_and_scores_refused_by_both_backends(tmp_path, backend):
    path = _tiny_gt(tmp_path)
    bad = {
        # the fast backend used to truncate 1.5 to image 1
        r'image_id=1\.5': dict(TINY_DETS[0], image_id=1.5),
        r'category_id=1\.9': dict(TINY_DETS[0], category_id=1.9),
        # the official backend used to evaluate a NaN score
        'score=nan': dict(TINY_DETS[0], score=float('nan')),
        "score='0.9'": dict(TINY_DETS[0], score='0.9'),
        'score=None': dict(TINY_DETS[0], score=None),
        'score=True': dict(TINY_DETS[0], score=True),
    }
    for match, det in bad.items():
        with pytest.raises(ValueError, match=r'results\[1\] has ' + match):
            evaluate_lvis(path, [TINY_DETS[0], det], 'bbox', backend=backend)
    # integral floats and numpy numbers are ids / scores like any other
    ok = [
        dict(d, image_id=float(d['image_id']), score=np.float32(d['score']))
        for d in TINY_DETS
    ]
    assert evaluate_lvis(path, ok, 'bbox', backend=backend) == \
        evaluate_lvis(path, TINY_DETS, 'bbox', backend=backend)
