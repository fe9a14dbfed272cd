"""Issue #10, defect 7: an LVIS annotation file the federated protocol
cannot use fails when ``LTLVISMetric`` is built, not after inference.

mmengine's runner builds the evaluator (``Evaluator(cfg)`` ->
``METRICS.build``) and hands it the dataset's meta info
(``evaluator.dataset_meta = dataset.metainfo``) before the first
inference batch; every check below raises at one of these two steps, with
a ``ValueError`` that names the annotation file and the field. Before the
fix, a json without ``frequency`` built fine and the official evaluator
raised ``KeyError: 'frequency'`` after the whole test set was inferred.
"""
import copy
import json
import logging
import re

import pytest
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

import lt_mm.det  # noqa: F401  (registers LTLVISMetric)


def _doc():
    """Two 100x100 images; category 1 ('a', frequent) has a box in image
    1, category 2 ('b', common) one in image 2."""
    return {
        'images': [
            dict(
                id=1,
                height=100,
                width=100,
                neg_category_ids=[2],
                not_exhaustive_category_ids=[]),
            dict(
                id=2,
                height=100,
                width=100,
                neg_category_ids=[],
                not_exhaustive_category_ids=[2]),
        ],
        'annotations': [
            dict(
                id=1,
                image_id=1,
                category_id=1,
                bbox=[0, 0, 20, 20],
                area=400,
                segmentation=[[0, 0, 20, 0, 20, 20, 0, 20]]),
            dict(
                id=2,
                image_id=2,
                category_id=2,
                bbox=[10, 10, 20, 20],
                area=400,
                segmentation=[[10, 10, 30, 10, 30, 30, 10, 30]]),
        ],
        'categories': [
            dict(id=1, name='a', frequency='f'),
            dict(id=2, name='b', frequency='c'),
        ],
    }


def _write(tmp_path, doc, name='lvis_val.json'):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def _build(path, **kwargs):
    """What the runner does before inference: build the evaluator."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Evaluator(
            dict(type='LTLVISMetric', ann_file=path, metric='bbox', **kwargs))


def _broken(mutate):
    doc = _doc()
    mutate(doc)
    return doc


CASES = {
    # name: (mutation, words the message must contain besides the file)
    'missing frequency': (lambda d: d['categories'][1].pop('frequency'),
                          ["'frequency'", '[2]', 'lvis_v1_val.json']),
    'bad frequency': (lambda d: d['categories'][0].update(frequency='x'),
                      ["'frequency'", '[1]', "'r', 'c', 'f'"]),
    'no frequency at all':
    (lambda d: [c.pop('frequency')
                for c in d['categories']], ["'frequency'", '[1, 2]']),
    'duplicate category id': (lambda d: d['categories'][1].update(id=1),
                              ['category ids [1]', 'unique']),
    'missing neg_category_ids':
    (lambda d: d['images'][1].pop('neg_category_ids'),
     ["'neg_category_ids'", 'images [2]']),
    'missing not_exhaustive_category_ids':
    (lambda d: d['images'][0].pop('not_exhaustive_category_ids'),
     ["'not_exhaustive_category_ids'", 'images [1]']),
    'neg list names unknown category':
    (lambda d: d['images'][0].update(neg_category_ids=[7]),
     ["'neg_category_ids'", '[7]']),
    'duplicate image id': (lambda d: d['images'][1].update(id=1),
                           ['image ids [1]', 'unique']),
    'annotation of unknown image':
    (lambda d: d['annotations'][1].update(image_id=9),
     ['annotations [2]', 'image_id']),
    'annotation of unknown category':
    (lambda d: d['annotations'][0].update(category_id=5),
     ['annotations [1]', 'category_id']),
    'image without size': (lambda d: d['images'][0].pop('height'),
                           ["'height'", 'images [1]']),
    'no categories list': (lambda d: d.pop('categories'),
                           ["'categories'", 'LVIS json']),
}


@pytest.mark.parametrize('case', list(CASES))
def test_bad_annotation_file_fails_at_build(tmp_path, case):
    mutate, words = CASES[case]
    path = _write(tmp_path, _broken(mutate))
    with pytest.raises(ValueError) as info:
        _build(path)
    msg = str(info.value)
    assert path in msg, msg  # names the file
    for word in words:  # the field, the offending ids, the fix
        assert word in msg, (word, msg)


def test_valid_file_builds_and_evaluates(tmp_path):
    """The same file, unbroken, builds and gives AP 1 for exact boxes."""
    import torch
    path = _write(tmp_path, _doc())
    for backend in ('fast', 'official'):
        evaluator = _build(path, backend=backend)
        evaluator.dataset_meta = dict(classes=('a', 'b'))
        samples = [
            dict(
                img_id=1,
                ori_shape=(100, 100),
                pred_instances=dict(
                    bboxes=torch.tensor([[0., 0., 20., 20.]]),
                    scores=torch.tensor([0.9]),
                    labels=torch.tensor([0]))),
            dict(
                img_id=2,
                ori_shape=(100, 100),
                pred_instances=dict(
                    bboxes=torch.tensor([[10., 10., 30., 30.]]),
                    scores=torch.tensor([0.8]),
                    labels=torch.tensor([1]))),
        ]
        evaluator.process(samples, {})
        res = evaluator.evaluate(2)
        assert res['lvis/bbox_AP'] == 1.0, (backend, res)
        assert res['lvis/bbox_APf'] == res['lvis/bbox_APc'] == 1.0


def test_class_count_mismatch_fails_before_inference(tmp_path):
    """The runner sets ``dataset_meta`` before the first batch: a dataset
    with another number of classes (e.g. LVIS v0.5's 1230 against a v1
    file) is refused there, naming the file and both counts."""
    path = _write(tmp_path, _doc())
    evaluator = _build(path)
    with pytest.raises(ValueError) as info:
        evaluator.dataset_meta = dict(classes=('a', 'b', 'c'))
    msg = str(info.value)
    assert path in msg and '3 classes' in msg and '2 categories' in msg


def test_class_name_mismatch_is_logged(tmp_path):
    path = _write(tmp_path, _doc())
    evaluator = _build(path)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        evaluator.dataset_meta = dict(classes=('a', 'z'))  # same count: ok
    finally:
        logger.removeHandler(handler)
    msgs = [r.getMessage() for r in records]
    assert any("(1, 'z', 'b')" in m and path in m for m in msgs), msgs


def test_not_a_lvis_json(tmp_path):
    path = _write(tmp_path, [1, 2, 3], name='list.json')
    with pytest.raises(ValueError, match=re.escape(path)):
        _build(path)
    doc = copy.deepcopy(_doc())
    del doc['annotations']
    path = _write(tmp_path, doc, name='noanns.json')
    with pytest.raises(ValueError, match=re.escape(path)):
        _build(path)


def test_bad_backend_fails_at_build(tmp_path):
    path = _write(tmp_path, _doc())
    with pytest.raises(ValueError, match="backend='compiled'"):
        _build(path, backend='compiled')
