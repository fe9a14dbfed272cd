"""The fast LVIS backend's tables on small constructed inputs, compared
with the official ``lvis.LVISEval`` (run under a test-only ``np.float``
shim) table by table (mutation audit of ``_fast_tables``)."""
import contextlib
import copy
import json

import numpy as np
import pytest
from lvis import LVIS, LVISEval, LVISResults

from lt_mm.det.lvis_eval import LVIS_METRIC_KEYS, run_lvis_eval


@contextlib.contextmanager
def _numpy_float_alias():
    assert not hasattr(np, 'float')
    np.float = float
    try:
        yield
    finally:
        del np.float


def _official(path, results, iou_type, max_dets):
    gt = LVIS(path)
    dt = LVISResults(gt, copy.deepcopy(results), max_dets=max_dets)
    ev = LVISEval(gt, dt, iou_type)
    ev.params.max_dets = max_dets
    with _numpy_float_alias():
        ev.run()
    return ev


def _same_as_official(path, results, iou_type='bbox', max_dets=300):
    # a loaded LVIS skips lt_mm's json checks (the official one has none)
    fast = run_lvis_eval(LVIS(path), results, iou_type, max_dets)
    ref = _official(path, results, iou_type, max_dets)
    np.testing.assert_allclose(
        fast.precision, ref.eval['precision'], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        fast.recall, ref.eval['recall'], rtol=0, atol=1e-12)
    for key in LVIS_METRIC_KEYS:
        assert abs(fast.metrics[key] - float(ref.results[key])) <= 1e-12, key
    return fast


def _write(tmp_path, images, anns, cats, name='gt.json'):
    for i, a in enumerate(anns):
        a.setdefault('id', i + 1)
        a.setdefault('iscrowd', 0)
        x, y, w, h = a['bbox']
        a.setdefault('area', float(w * h))
        a.setdefault('segmentation',
                     [[x, y, x + w, y, x + w, y + h, x, y + h]])
    for im in images:
        im.setdefault('height', 100)
        im.setdefault('width', 100)
        im.setdefault('neg_category_ids', [])
        im.setdefault('not_exhaustive_category_ids', [])
    path = tmp_path / name
    path.write_text(
        json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return str(path)


def _cat(i, freq='f'):
    return dict(id=i, name=f'c{i}', frequency=freq, image_count=1)


def test_infinite_area_ground_truth_is_left_out(tmp_path):
    """lvis.LVIS.get_ann_ids loads 0 < area < inf only: a ground truth of
    area inf is no object, and the detection on it (scored first) a false
    positive: precision 1/2 at recall 1 at every IoU threshold."""
    path = _write(tmp_path, [dict(id=1)], [
        dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20]),
        dict(
            image_id=1,
            category_id=1,
            bbox=[50, 50, 20, 20],
            area=float('inf')),
    ], [_cat(1)])
    results = [
        dict(image_id=1, category_id=1, bbox=[50, 50, 20, 20], score=0.9),
        dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20], score=0.8),
    ]
    fast = _same_as_official(path, results)
    assert fast.metrics['AP'] == pytest.approx(0.5, abs=1e-12)


def _mask(box, size=200):
    from pycocotools import mask as mask_utils
    m = np.zeros((size, size), np.uint8, order='F')
    x, y, w, h = box
    m[y:y + h, x:x + w] = 1
    rle = mask_utils.encode(m)
    return dict(size=rle['size'], counts=rle['counts'].decode())


def test_mask_areas_beyond_255_results_stay_with_their_masks(tmp_path):
    """300 mask-only results (areas from the masks, in chunks of 255): the
    area of each result is its own. Result 256 (a small false positive,
    scored first) follows a large one; the last result is the only true
    positive. AP = APs = 1/2 (precision 1/2 at recall 1), no large truth."""
    path = _write(tmp_path, [dict(id=1, height=200, width=200)],
                  [dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20])],
                  [_cat(1)])
    small_fp = dict(
        image_id=1,
        category_id=1,
        score=0.1,
        segmentation=_mask([150, 150, 10, 10]))
    results = [dict(small_fp) for _ in range(300)]
    results[255] = dict(
        small_fp, score=0.2, segmentation=_mask([90, 90, 100, 100]))
    results[256] = dict(small_fp, score=0.95)
    results[299] = dict(
        small_fp, score=0.9, segmentation=_mask([0, 0, 20, 20]))
    fast = _same_as_official(path, results, 'segm', 300)
    assert fast.metrics['AP'] == pytest.approx(0.5, abs=1e-12)
    assert fast.metrics['APs'] == pytest.approx(0.5, abs=1e-12)
    assert fast.metrics['APl'] == -1


def test_no_limit_keeps_every_detection_of_a_pair(tmp_path):
    """max_dets=-1: category 2 ranks a false positive before its true
    positive (AP 1/2), category 1 one true positive (AP 1): AP 3/4."""
    path = _write(tmp_path, [dict(id=1)], [
        dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20]),
        dict(image_id=1, category_id=2, bbox=[50, 50, 20, 20]),
    ], [_cat(1), _cat(2)])
    results = [
        dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20], score=0.9),
        dict(image_id=1, category_id=2, bbox=[0, 60, 20, 20], score=0.9),
        dict(image_id=1, category_id=2, bbox=[50, 50, 20, 20], score=0.8),
        dict(image_id=1, category_id=2, bbox=[0, 80, 10, 10], score=0.7),
    ]
    fast = _same_as_official(path, results, 'bbox', -1)
    assert fast.metrics['AP'] == pytest.approx(0.75, abs=1e-12)
    # the same with the LVIS cut (300 per image)
    assert _same_as_official(path, results).metrics['AP'] == \
        pytest.approx(0.75, abs=1e-12)


def test_pairs_of_the_first_category_stay_apart(tmp_path):
    """Category 1 (the first id) in two images: the detection scored
    first is in image 2 on the place of image 1's truth (a false
    positive there), then image 1's true positive. TP/FP = FP, TP with
    G = 2: precision 1/2 up to recall 1/2, so AP = 51/101 * 1/2."""
    path = _write(tmp_path, [dict(id=1), dict(id=2)], [
        dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20]),
        dict(image_id=2, category_id=1, bbox=[50, 50, 20, 20]),
        dict(image_id=2, category_id=2, bbox=[10, 10, 20, 20]),
    ], [_cat(1), _cat(2)])
    results = [
        dict(image_id=2, category_id=1, bbox=[0, 0, 20, 20], score=0.9),
        dict(image_id=1, category_id=1, bbox=[0, 0, 20, 20], score=0.8),
        dict(image_id=2, category_id=2, bbox=[10, 10, 20, 20], score=0.7),
    ]
    fast = _same_as_official(path, results)
    ap1 = fast.precision[:, :, 0, 0]
    np.testing.assert_allclose(ap1[:, :51], 0.5, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ap1[:, 51:], 0.0, rtol=0, atol=1e-12)
    assert fast.metrics['AP'] == pytest.approx(
        (51 / 101 * 0.5 + 1) / 2, abs=1e-12)
