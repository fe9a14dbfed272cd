"""Pins of lt_mm.det.lvis_eval behaviour that the other tests leave open
(found by mutation testing): the annotation checks of
``validate_lvis_dataset`` not reached through LTLVISMetric's build checks,
and edge cases of the evaluation compared with the official lvis 0.5.3
evaluator."""
import copy

import pytest

from lt_mm.det.lvis_eval import validate_lvis_dataset


def _dataset():
    """Two images, two categories, one box each (valid)."""
    img = dict(
        height=100,
        width=100,
        neg_category_ids=[],
        not_exhaustive_category_ids=[])
    return dict(
        images=[dict(img, id=1), dict(img, id=2)],
        annotations=[
            dict(
                id=1, image_id=1, category_id=1, bbox=[0, 0, 10, 10],
                area=100),
            dict(
                id=2, image_id=2, category_id=2, bbox=[0, 0, 10, 10], area=100)
        ],
        categories=[
            dict(id=1, name='a', frequency='f'),
            dict(id=2, name='b', frequency='r')
        ])


def _broken(mutate):
    d = copy.deepcopy(_dataset())
    mutate(d)
    return d


CASES = {
    # name: (mutation, regex the message must match)
    'not a dict': (None, r'src\.json holds a list; an LVIS json is a dict'),
    'no categories':
    (lambda d: d.update(categories=[]), r'src\.json has no categories'),
    'category without id': (lambda d: d['categories'][1].pop('id'),
                            r"categories at positions \[1\] have no 'id'"),
    'image without id':
    (lambda d: d['images'][1].pop('id'), r"an image has no 'id'"),
    'image without width': (lambda d: d['images'][1].pop('width'),
                            r"images \[2\] have no 'width'"),
    'annotation without area': (lambda d: d['annotations'][1].pop('area'),
                                r"annotations \[2\] lack 'id', 'bbox' or "
                                "'area'"),
    'annotation without bbox': (lambda d: d['annotations'][0].pop('bbox'),
                                r"annotations \[1\] lack"),
    'annotation without id': (lambda d: d['annotations'][0].pop('id'),
                              r"annotations \[None\] lack"),
    'no annotations list': (lambda d: d.pop('annotations'),
                            r"has no list \['annotations'\]"),
    'duplicate category id among others':
    (lambda d: d['categories'].append(dict(id=2, name='c', frequency='c')),
     r'category ids \[2\] occur more than once'),
    'not_exhaustive names unknown category':
    (lambda d: d['images'][1].update(not_exhaustive_category_ids=[1, 9]),
     r"'not_exhaustive_category_ids' names category ids \[9\]"),
}


@pytest.mark.parametrize('case', list(CASES))
def test_bad_annotations_are_named(case):
    mutate, pattern = CASES[case]
    data = [_dataset()] if mutate is None else _broken(mutate)
    with pytest.raises(ValueError, match=r'LVIS annotation file .*' + pattern):
        validate_lvis_dataset(data, 'src.json')


def test_valid_dataset_passes():
    validate_lvis_dataset(_dataset(), 'src.json')


def test_long_id_lists_are_shortened():
    # six categories without frequency: the first five and the count
    d = _dataset()
    d['categories'] = [dict(id=i, name=str(i)) for i in range(1, 7)]
    with pytest.raises(
            ValueError,
            match=r'categories \[1, 2, 3, 4, 5, \.\.\. \(6 in '
            r'all\)\]'):
        validate_lvis_dataset(d, 'src.json')
    # five: all of them, no count
    d['categories'] = d['categories'][:5]
    with pytest.raises(ValueError, match=r'categories \[1, 2, 3, 4, 5\] is'):
        validate_lvis_dataset(d, 'src.json')


@pytest.mark.parametrize('backend', ['fast', 'official'])
def test_results_with_only_unknown_ids_are_refused(tmp_path, backend):
    # every detection names an unknown image and category: refused like a
    # single bad entry among good ones (not mapped to neighbouring ids)
    import json

    from lt_mm.det.lvis_eval import evaluate_lvis

    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(_dataset()))
    dets = [dict(image_id=9, category_id=7, bbox=[0, 0, 10, 10], score=0.5)]
    with pytest.raises(ValueError, match=r'results\[0\] has image_id=9'):
        evaluate_lvis(str(path), dets, 'bbox', backend=backend)


def _gt_file(tmp_path):
    """One 100 x 100 image; category 1 ('f') has one 10 x 10 box,
    category 2 ('r') has no object anywhere (verified absent)."""
    import json

    d = _dataset()
    d['images'] = d['images'][:1]
    d['images'][0]['neg_category_ids'] = [2]
    d['annotations'] = d['annotations'][:1]
    for a in d['annotations']:
        x, y, w, h = a['bbox']
        a['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        a['iscrowd'] = 0
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(d))
    return str(path)


HIT = dict(image_id=1, category_id=1, bbox=[0, 0, 10, 10], score=0.8)


@pytest.mark.parametrize('backend', ['fast', 'official'])
def test_tiny_detection_counts_and_infinite_one_does_not(tmp_path, backend):
    from lt_mm.det.lvis_eval import run_lvis_eval

    path = _gt_file(tmp_path)
    # a 0.5 x 1 box (area 0.5 > 0) ranked first is a false positive:
    # FP, TP -> precision 0, 1/2 -> envelope 1/2 at every recall
    # threshold: AP = 0.5
    tiny = dict(HIT, bbox=[50, 50, 0.5, 1.0], score=0.9)
    res = run_lvis_eval(path, [tiny, HIT], 'bbox', backend=backend)
    assert res.metrics['AP'] == pytest.approx(0.5, abs=1e-12)
    # an infinite box (area inf) is no detection (official loader: 0 <
    # area < inf): AP = 1
    inf = dict(HIT, bbox=[50, 50, float('inf'), 1.0], score=0.9)
    res = run_lvis_eval(path, [inf, HIT], 'bbox', backend=backend)
    assert res.metrics['AP'] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize('backend', ['fast', 'official'])
def test_category_without_ground_truth_stays_minus_one(tmp_path, backend):
    from lt_mm.det.lvis_eval import run_lvis_eval

    path = _gt_file(tmp_path)
    # a false positive of the absent category 2 and a hit of category 1
    fp = dict(HIT, category_id=2, bbox=[50, 50, 10, 10], score=0.9)
    res = run_lvis_eval(path, [fp, HIT], 'bbox', backend=backend)
    assert res.cat_ids == [1, 2]
    assert (res.precision[:, :, 1, :] == -1).all()
    assert (res.recall[:, 1, :] == -1).all()
    # category 1: AP 1 (small object); no rare category is evaluated
    assert res.metrics['AP'] == pytest.approx(1.0, abs=1e-12)
    assert res.metrics['APf'] == pytest.approx(1.0, abs=1e-12)
    assert res.metrics['APr'] == -1.0
