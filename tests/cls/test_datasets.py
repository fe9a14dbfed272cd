"""ImageNetLTDataset on the tiny ImageNet-LT-format data, and the class
counts computed once from the training list (cached as
lt_mm.class_stats/v1 JSON)."""
import os.path as osp

import pytest

import lt_mm.cls  # noqa: F401
from lt_mm.cls.counts import (class_stats_from_list, default_cache_file,
                              resolve_cls_counts)
from lt_mm.cls.datasets import ImageNetLTDataset
from lt_mm.core.stats import ClassStats
from lt_mm.toydata import long_tailed_counts

# conftest: 10 classes, 40 images for the head class, imbalance 20:
# floor(40 * 20 ** (-c / 9)) = [40, 28, 20, 14, 10, 7, 5, 3, 2, 2]
TRAIN_COUNTS = [40, 28, 20, 14, 10, 7, 5, 3, 2, 2]


def test_tiny_counts_profile():
    assert long_tailed_counts(10, 40, 20) == TRAIN_COUNTS


def test_dataset_reads_lists_and_counts(data_root, tmp_path):
    root = osp.join(data_root, 'cls')
    ds = ImageNetLTDataset(
        ann_file='ImageNet_LT_train.txt',
        data_root=root,
        classes='classes.txt',
        stats_cache=str(tmp_path / 'stats.json'))
    assert len(ds) == sum(TRAIN_COUNTS)
    assert ds.CLASSES[:2] == ('digit_0', 'digit_1') and ds.num_classes == 10
    info = ds.get_data_info(0)
    assert osp.isfile(info['img_path']) and info['gt_label'] == 0
    assert ds.get_cat_ids(0) == [0]  # what the lt_mm samplers use
    stats = ds.class_stats(many_thr=25, few_thr=10)
    assert stats.counts == TRAIN_COUNTS and stats.unit == 'images'
    # many > 25: {0, 1}; medium 10..25: {2, 3, 4}; few < 10: {5..9}
    assert stats.splits == {
        'many': [0, 1],
        'medium': [2, 3, 4],
        'few': [5, 6, 7, 8, 9]
    }
    assert stats.names[0] == 'digit_0'
    # cached in the core format, reused while the list is unchanged
    cached = ClassStats.load(tmp_path / 'stats.json')
    assert cached.counts == TRAIN_COUNTS and cached.extra['sha1']
    again = ds.class_stats(many_thr=25, few_thr=10)
    assert again.to_dict() == cached.to_dict()
    # val/test are balanced; without classes the names are the indices
    test = ImageNetLTDataset(
        ann_file='ImageNet_LT_test.txt', data_root=root, stats_cache=False)
    assert len(test) == 50 and test.CLASSES == tuple(map(str, range(10)))
    assert test.class_stats().counts == [5] * 10


def test_counts_from_train_list_default_cache(data_root):
    train = osp.join(data_root, 'cls', 'ImageNet_LT_train.txt')
    n = resolve_cls_counts(train_ann_file=train, num_classes=10)
    assert n == TRAIN_COUNTS
    assert osp.isfile(default_cache_file(train))
    with pytest.raises(ValueError, match='num_classes=12'):
        resolve_cls_counts(counts=TRAIN_COUNTS, num_classes=12)
    with pytest.raises(ValueError, match='one source'):
        resolve_cls_counts(counts=TRAIN_COUNTS, train_ann_file=train)


def test_bad_lists(tmp_path):
    bad = tmp_path / 'bad.txt'
    bad.write_text('a.jpg 0\nb.jpg 12\n')
    with pytest.raises(ValueError, match=r'bad\.txt:2: label 12 is out of'):
        ImageNetLTDataset(ann_file=str(bad), num_classes=10, stats_cache=False)
    bad.write_text('a.jpg 0\nno_label_here\n')
    with pytest.raises(ValueError, match='bad.txt:2'):
        class_stats_from_list(str(bad), cache_file=False)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ImageNetLTDataset(ann_file=str(tmp_path / 'missing.txt'))
