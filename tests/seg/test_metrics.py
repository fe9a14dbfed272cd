"""HeadBodyTailIoUMetric against a hand-computed confusion matrix."""
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.datasets import ADE20KDataset
from mmseg.structures import SegDataSample

from lt_mm.core.stats import ClassStats
from lt_mm.seg import HeadBodyTailIoUMetric, pixel_splits

CLASSES = ('c0', 'c1', 'c2', 'c3', 'c4')
# pixel shares 0.5, 0.2, 0.27, 0.02, 0.01 with C = 5: head > 1.5 / 5 = 0.3,
# tail <= 0.15 / 5 = 0.03 -> head [0], body [1, 2], tail [3, 4]
COUNTS = [50, 20, 27, 2, 1]
SPLITS = {'head': [0], 'body': [1, 2], 'tail': [3, 4]}


def _sample(gt, pred):
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=torch.tensor(gt)[None])
    s.pred_sem_seg = PixelData(data=torch.tensor(pred)[None])
    return s.to_dict()


def _evaluate(metric):
    metric.dataset_meta = dict(classes=CLASSES)
    # image 1 (2 x 4); the 255 pixel is ignored
    metric.process({}, [
        _sample([[0, 0, 0, 1], [2, 2, 255, 3]], [[0, 0, 1, 1], [2, 1, 0, 0]])
    ])
    # image 2 (1 x 2)
    metric.process({}, [_sample([[3, 3]], [[3, 0]])])
    return metric.evaluate(2)


def _check(res):
    # totals over both images (class 4 never occurs: IoU = Acc = nan):
    #   class 0: gt 3, pred 4, intersect 2 -> union 5: IoU 0.4,  Acc 2/3
    #   class 1: gt 1, pred 3, intersect 1 -> union 3: IoU 1/3,  Acc 1
    #   class 2: gt 2, pred 1, intersect 1 -> union 2: IoU 0.5,  Acc 0.5
    #   class 3: gt 3, pred 1, intersect 1 -> union 3: IoU 1/3,  Acc 1/3
    # aAcc = 5 / 9; mIoU = (0.4 + 1/3 + 0.5 + 1/3) / 4 = 0.391667
    # mAcc = (2/3 + 1 + 0.5 + 1/3) / 4 = 0.625
    expected = {
        'aAcc': 55.56,
        'mIoU': 39.17,
        'mAcc': 62.5,
        'mIoU_head': 40.0,
        'mAcc_head': 66.67,  # class 0
        'mIoU_body': 41.67,
        'mAcc_body': 75.0,  # (1/3 + .5) / 2
        'mIoU_tail': 33.33,
        'mAcc_tail': 33.33,  # class 3 (4 is nan)
    }
    assert set(res) == set(expected)
    for k, v in expected.items():
        assert res[k] == pytest.approx(v, abs=1e-4), k


def test_pixel_splits_rule():
    assert pixel_splits(COUNTS) == SPLITS
    # with the unlabelled pixels in the denominator (total 200) the shares
    # halve: 0.25 is body, 0.01 / 0.005 stay tail, 0.135 / 0.1 body
    assert pixel_splits(
        COUNTS, total=200) == {
            'head': [],
            'body': [0, 1, 2],
            'tail': [3, 4]
        }


def test_groups_from_counts_splits_and_stats_file(tmp_path):
    _check(_evaluate(HeadBodyTailIoUMetric(counts=COUNTS)))
    _check(_evaluate(HeadBodyTailIoUMetric(splits=SPLITS)))
    path = str(tmp_path / 'stats.json')
    ClassStats(counts=COUNTS, unit='pixels', names=list(CLASSES)).save(path)
    _check(_evaluate(HeadBodyTailIoUMetric(stats_file=path)))
    # a stats file's own splits win over the pixel rule
    path2 = str(tmp_path / 'stats2.json')
    ClassStats(
        counts=[1, 1, 1, 1, 1], unit='images', splits=SPLITS).save(path2)
    _check(_evaluate(HeadBodyTailIoUMetric(stats_file=path2)))


def test_explicit_shares_override_the_stats_file_splits(tmp_path):
    # a file whose splits follow the default shares (head [0], body [1, 2],
    # tail [3, 4], pixel shares 0.5, 0.2, 0.27, 0.02, 0.01)
    path = str(tmp_path / 'stats.json')
    ClassStats(
        counts=COUNTS, unit='pixels', splits=pixel_splits(COUNTS)).save(path)
    metric = HeadBodyTailIoUMetric(stats_file=path)
    assert metric.resolve_groups(CLASSES) == SPLITS
    # C = 5: head_share 1.0 -> head r > 0.2: {0, 2}; tail_share 0.11 ->
    # tail r <= 0.022: {3, 4}; body {1}
    metric = HeadBodyTailIoUMetric(
        stats_file=path, head_share=1.0, tail_share=0.11)
    expected = {'head': [0, 2], 'body': [1], 'tail': [3, 4]}
    assert metric.resolve_groups(CLASSES) == expected
    metric.dataset_meta = dict(classes=CLASSES)
    assert metric._groups == expected
    # one share given, the other keeps its default (head r > 0.3):
    # tail_share 0.075 -> tail r <= 0.015: {4}
    metric = HeadBodyTailIoUMetric(stats_file=path, tail_share=0.075)
    assert metric.resolve_groups(CLASSES) == {
        'head': [0],
        'body': [1, 2, 3],
        'tail': [4]
    }
    # shares of the pixels need pixel counts, not the file's image counts
    img = str(tmp_path / 'img.json')
    ClassStats(counts=COUNTS, unit='images', splits=SPLITS).save(img)
    with pytest.raises(ValueError, match=r'img\.json: head_share'):
        HeadBodyTailIoUMetric(stats_file=img, head_share=1.0)


def test_ade20k_split_built_in():
    metric = HeadBodyTailIoUMetric()
    classes = ADE20KDataset.METAINFO['classes']  # spells 'bed ' with a space
    metric.dataset_meta = dict(classes=classes)
    groups = metric.resolve_groups(classes)
    assert {
        k: len(v)
        for k, v in groups.items()
    } == {
        'head': 20,
        'body': 55,
        'tail': 75
    }
    assert groups['head'] == list(range(20))
    assert groups['tail'] == list(range(75, 150))
    # wall (0, head) right, sky (2, head) predicted as tree (4, head),
    # river (60, body) right
    metric.process({}, [_sample([[0, 2, 60]], [[0, 4, 60]])])
    res = metric.evaluate(1)
    # head IoU: wall 1, sky 0 (gt only), tree 0 (pred only) -> 1/3
    assert res['mIoU_head'] == pytest.approx(33.33)
    assert res['mAcc_head'] == pytest.approx(50.0)  # wall 1, sky 0
    assert res['mIoU_body'] == pytest.approx(100.0)
    assert res['mIoU_tail'] != res['mIoU_tail']  # nan: no tail class present


def test_metric_bad_input(tmp_path):
    metric = HeadBodyTailIoUMetric(counts=COUNTS)
    with pytest.raises(ValueError, match='5 classes but the dataset has 4'):
        metric.dataset_meta = dict(classes=CLASSES[:4])
    with pytest.raises(ValueError, match="not ADE20K's 150"):
        HeadBodyTailIoUMetric().dataset_meta = dict(classes=CLASSES)
    img = str(tmp_path / 'img.json')
    ClassStats(counts=COUNTS, unit='images').save(img)
    with pytest.raises(ValueError, match="'pixels'"):
        HeadBodyTailIoUMetric(stats_file=img)
    # a classification file with its many / medium / few groups: its group
    # names used to replace head / body / tail without a word
    shots = str(tmp_path / 'shots.json')
    ClassStats(
        counts=COUNTS,
        unit='images',
        splits={
            'many': [0, 1],
            'medium': [2],
            'few': [3, 4]
        }).save(shots)
    with pytest.raises(
            ValueError,
            match=r"'images' with the groups "
            r"\['few', 'many', 'medium'\]"):
        HeadBodyTailIoUMetric(stats_file=shots)
    with pytest.raises(ValueError, match='only one of'):
        HeadBodyTailIoUMetric(counts=COUNTS, splits=SPLITS)
    with pytest.raises(ValueError, match='disjoint'):
        HeadBodyTailIoUMetric(splits={'head': [0, 1], 'tail': [1]})
    with pytest.raises(ValueError, match='indices'):
        HeadBodyTailIoUMetric(splits={'head': [0], 'tail': [7]}).\
            dataset_meta = dict(classes=CLASSES)
    with pytest.raises(FileNotFoundError, match='class_stats.py'):
        HeadBodyTailIoUMetric(stats_file=str(tmp_path / 'missing.json'))
