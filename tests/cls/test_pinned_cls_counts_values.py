"""Pinned values of the classification count readers (lt_mm.cls.counts,
lt_mm.cls.datasets), found unguarded by a mutation audit (the readers'
raise guards are pinned in test_pinned_lists.py): the ImageNet-LT
many/medium/few thresholds, list lines, the split thresholds of each call
through the cache, the cache keys (C, the dataset config, the reader),
class names, the list / dataset routing of ``read_cls_counts`` and
``resolve_cls_counts``' options.

Every list and json is written here (tmp_path); the expected counts and
splits are in comments.
"""
import json
import os.path as osp

import pytest

import lt_mm.cls  # noqa: F401
from lt_mm.cls.counts import (class_stats_from_dataset, class_stats_from_list,
                              read_cls_counts, read_list_file,
                              resolve_cls_counts)
from lt_mm.cls.datasets import (ImageNetLTDataset, check_files_exist,
                                first_label_at_least)
from lt_mm.core.stats import CACHE_FORMAT, ClassStats, fingerprint_files
from tests.cls.test_pinned_lists import _folder, _list


def _labels(tmp_path, counts, name='train.txt'):
    """A list with ``counts[j]`` lines of label j."""
    text = ''.join(f'{j}_{i}.jpg {j}\n' for j, n in enumerate(counts)
                   for i in range(n))
    return _list(tmp_path, text, name)


def _cache(path):
    return osp.splitext(path)[0] + '_class_stats_images.json'


# ------------------------------------------------------------- list files
def test_default_thresholds_are_imagenet_lt(tmp_path):
    # many: n > 100, few: n < 20 (Liu et al. 2019): 101 many; 100 and
    # 20 medium; 19 few
    path = _labels(tmp_path, [101, 100, 20, 19])
    st = class_stats_from_list(path, cache_file=False)
    assert st.counts == [101, 100, 20, 19]
    assert st.splits == dict(many=[0], medium=[1, 2], few=[3])
    assert (st.extra['many_thr'], st.extra['few_thr']) == (100, 20)


def test_list_lines_paths_and_separators(tmp_path):
    # surrounding blanks dropped; the label after the last space
    path = _list(tmp_path, '  a.jpg 0  \nc c.jpg 2\n')
    assert read_list_file(path) == [('a.jpg', 0), ('c c.jpg', 2)]
    # a tab is no separator: the line is named
    path = _list(tmp_path, 'a.jpg 0\nb.jpg\t1\n', 'tab.txt')
    with pytest.raises(ValueError, match=r'tab.txt:2: .* is not'):
        read_list_file(path)


def test_missing_list_named_before_the_cache(tmp_path):
    with pytest.raises(
            FileNotFoundError,
            match="'.*nope.txt' does not exist; expected the "
            'ImageNet-LT style list'):
        class_stats_from_list(str(tmp_path / 'nope.txt'))


def test_split_thresholds_follow_each_call_through_the_cache(tmp_path):
    # counts [30, 12, 3], cached on the first call
    path = _labels(tmp_path, [30, 12, 3])
    st = class_stats_from_list(path, many_thr=25, few_thr=10)
    assert st.splits == dict(many=[0], medium=[1], few=[2])
    assert osp.isfile(_cache(path))
    # few threshold 13 (the many one unchanged): 12 is few now
    st = class_stats_from_list(path, many_thr=25, few_thr=13)
    assert st.splits == dict(many=[0], medium=[], few=[1, 2])
    assert (st.extra['many_thr'], st.extra['few_thr']) == (25, 13)
    # many threshold 10 (the few one unchanged): 12 is many now
    st = class_stats_from_list(path, many_thr=10, few_thr=10)
    assert st.splits == dict(many=[0, 1], medium=[], few=[2])
    assert st.counts == [30, 12, 3]


def test_list_cache_keyed_by_c_and_reader(tmp_path):
    path = _labels(tmp_path, [1, 2])
    assert class_stats_from_list(path).counts == [1, 2]
    # the same default cache file, another C: recomputed
    assert class_stats_from_list(path, 4).counts == [1, 2, 0, 0]
    assert class_stats_from_list(path).counts == [1, 2]
    # a cache under the key of other reader settings is not reused
    ClassStats(
        counts=[9, 9],
        unit='images',
        extra=dict(
            cache=CACHE_FORMAT,
            sha1=fingerprint_files(path, dict(num_classes=None)))).save(
                _cache(path))
    assert class_stats_from_list(path).counts == [1, 2]
    # an explicit cache file is the one written
    mine = str(tmp_path / 'mine.json')
    assert class_stats_from_list(path, 3, cache_file=mine).counts == [1, 2, 0]
    assert ClassStats.load(mine).counts == [1, 2, 0]


def test_names_given_late_reach_a_cached_result(tmp_path):
    path = _labels(tmp_path, [1, 2])
    assert class_stats_from_list(
        path, names=['x', 'y'], cache_file=False).names == ['x', 'y']
    assert class_stats_from_list(path).names is None  # cached, no names
    assert class_stats_from_list(path, names=['x', 'y']).names == ['x', 'y']


def test_names_given_win_over_cached_names(tmp_path):
    path = _labels(tmp_path, [1, 2])
    class_stats_from_list(path, names=['x', 'y'])
    assert class_stats_from_list(
        path, names=['cat', 'dog']).names == ['cat', 'dog']


# --------------------------------------------------------- dataset source
def _json_dataset(tmp_path, labels=(1, 0, 1, 1), classes=('x', 'y', 'z')):
    ann = tmp_path / 'train.json'
    ann.write_text(
        json.dumps(
            dict(
                metainfo=dict(classes=list(classes)),
                data_list=[
                    dict(img_path=f'{i}.jpg', gt_label=y)
                    for i, y in enumerate(labels)
                ])))
    return dict(
        type='BaseDataset', data_root=str(tmp_path), ann_file='train.json')


def test_dataset_cache_keyed_by_c_and_config(tmp_path):
    # labels 1, 0, 1, 1 over classes x, y, z -> [1, 3, 0]
    cfg = _json_dataset(tmp_path)
    st = class_stats_from_dataset(cfg)
    assert st.counts == [1, 3, 0] and st.names == ['x', 'y', 'z']
    assert st.unit == 'images'
    assert st.extra['num_images'] == 4 and st.extra['sha1']
    # C = 4: recomputed; the 3 names do not name 4 classes
    st = class_stats_from_dataset(cfg, 4)
    assert st.counts == [1, 3, 0, 0] and st.names is None
    # another config on the same json (the metainfo names 4 classes)
    cfg4 = dict(cfg, metainfo=dict(classes=['x', 'y', 'z', 'w']))
    st = class_stats_from_dataset(cfg4)
    assert st.counts == [1, 3, 0, 0] and st.names == ['x', 'y', 'z', 'w']
    assert class_stats_from_dataset(cfg).counts == [1, 3, 0]
    # an explicit cache file is the one written
    mine = str(tmp_path / 'mine.json')
    class_stats_from_dataset(cfg, cache_file=mine)
    assert ClassStats.load(mine).counts == [1, 3, 0]


def test_dataset_without_annotation_file_names_no_source(tmp_path):
    # a folder dataset (a/ 2 images, b/ 1): no file to name or cache
    st = class_stats_from_dataset(_folder(tmp_path))
    assert st.counts == [2, 1] and st.names == ['a', 'b']
    assert st.dataset is None and st.extra['source'] is None
    with pytest.raises(
            ValueError,
            match='CustomDataset has no annotation '
            'file to key the cache on'):
        class_stats_from_dataset(
            _folder(tmp_path), cache_file=str(tmp_path / 'c.json'))


def test_dataset_negative_label_named(tmp_path):
    cfg = _json_dataset(tmp_path, labels=(1, -1, 0))
    with pytest.raises(
            ValueError,
            match=r'labels lie in \[-1, 1\] but the '
            'dataset has 3 classes'):
        class_stats_from_dataset(cfg, cache_file=False)


def test_dataset_split_thresholds_follow_each_call(tmp_path):
    cfg = _json_dataset(tmp_path)
    # [1, 3, 0], cached with many_thr 2, few_thr 0: many n > 2: y
    st = class_stats_from_dataset(cfg, many_thr=2, few_thr=0)
    assert st.splits == dict(many=[1], medium=[0, 2], few=[])
    # only the many threshold changes: many n > 0: x, y
    st = class_stats_from_dataset(cfg, many_thr=0, few_thr=0)
    assert st.splits == dict(many=[0, 1], medium=[2], few=[])
    assert (st.extra['many_thr'], st.extra['few_thr']) == (0, 0)
    # only the few threshold changes: few n < 1: z
    st = class_stats_from_dataset(cfg, many_thr=2, few_thr=1)
    assert st.splits == dict(many=[1], medium=[0], few=[2])
    st = class_stats_from_dataset(cfg, cache_file=False)
    assert st.splits == dict(many=[], medium=[], few=[0, 1, 2])
    # the cache is reused for the same config with its keys in another
    # order and for cache_file=True (the default cache)
    cache = _cache(str(tmp_path / 'train.json'))
    tampered = ClassStats.load(cache).to_dict()
    tampered['counts'] = [9, 9, 9]
    with open(cache, 'w') as f:
        json.dump(tampered, f)
    assert class_stats_from_dataset(dict(reversed(list(
        cfg.items())))).counts == [9, 9, 9]
    assert class_stats_from_dataset(cfg, cache_file=True).counts == [9, 9, 9]


# ---------------------------------------------------------------- routing
def test_list_types_read_as_lists(tmp_path):
    # no images exist: building ImageNetLTDataset would fail, the list
    # reader does not need them; labels 0, 1, 1 -> [1, 2]
    _labels(tmp_path, [1, 2])
    for kind in ('ImageNetLTDataset', 'mmpretrain.ImageNetLTDataset',
                 ImageNetLTDataset):
        st = read_cls_counts(
            dict(type=kind, data_root=str(tmp_path), ann_file='train.txt'),
            cache_file=False)
        assert st.counts == [1, 2] and 'dataset_type' not in st.extra


def test_list_type_with_another_file_is_built(tmp_path):
    # ann_file not .txt: the dataset is built (names from its classes)
    _labels(tmp_path, [1, 2], name='train.lst')
    st = read_cls_counts(
        dict(
            type='ImageNetLTDataset',
            data_root=str(tmp_path),
            ann_file='train.lst',
            check_files=False),
        cache_file=False)
    assert st.counts == [1, 2] and st.names == ['0', '1']
    assert st.extra['dataset_type'] == 'ImageNetLTDataset'


def test_resolve_options(tmp_path):
    path = _labels(tmp_path, [1, 2])
    # C = 3: a class without images is refused unless allow_zero
    with pytest.raises(ValueError, match='^GRWLoss: '):
        resolve_cls_counts(train_ann_file=path, num_classes=3, what='GRWLoss')
    assert resolve_cls_counts(
        train_ann_file=path, num_classes=3,
        allow_zero=True) == [1.0, 2.0, 0.0]
    assert resolve_cls_counts(train_ann_file=path) == [1.0, 2.0]


# -------------------------------------------------------- ImageNetLT list
def test_imagenet_lt_class_stats_options(tmp_path):
    # labels 0, 1, 1 and 2 class names from a classes file with a blank
    # line; the dataset's own cache file and thresholds
    _labels(tmp_path, [1, 2])
    (tmp_path / 'img').mkdir()
    (tmp_path / 'names.txt').write_text(' cat \n\ndog\n')
    mine = str(tmp_path / 'mine.json')
    ds = ImageNetLTDataset(
        ann_file='train.txt',
        data_root=str(tmp_path),
        classes='names.txt',
        stats_cache=mine,
        check_files=False)
    assert ds.CLASSES == ('cat', 'dog') and ds.num_classes == 2
    st = ds.class_stats(many_thr=1, few_thr=1)
    # n = [1, 2]: many n > 1: dog; few n < 1: none
    assert st.counts == [1, 2] and st.names == ['cat', 'dog']
    assert st.splits == dict(many=[1], medium=[0], few=[])
    assert osp.isfile(mine) and not osp.exists(
        _cache(str(tmp_path / 'train.txt')))
    # lazy, no classes: C from the labels when first asked
    lazy = ImageNetLTDataset(
        ann_file='train.txt',
        data_root=str(tmp_path),
        lazy_init=True,
        check_files=False)
    assert lazy.num_classes == 2


def test_out_of_range_label_named_with_its_line(tmp_path):
    # paths with spaces, a blank line: line 3 holds the label 12
    _list(tmp_path, 'a a.jpg 0\n\nb b.jpg 12\n')
    with pytest.raises(
            ValueError,
            match=r'train.txt:3: label 12 is out of '
            r'range \[0, 10\)'):
        ImageNetLTDataset(
            ann_file='train.txt',
            data_root=str(tmp_path),
            num_classes=10,
            check_files=False)


def test_first_label_at_least_and_remote_files(tmp_path):
    path = _list(tmp_path, 'a.jpg 0\nb.jpg 3\n')
    assert first_label_at_least(path, 3) == (2, 3)
    assert first_label_at_least(path, 4) == (0, -1)  # none
    # only local files are checked: URLs and other backends are skipped
    check_files_exist(path, ['s3://bucket/a.jpg', 's3://bucket/b.jpg'])
    check_files_exist(
        path, [str(tmp_path / 'a.jpg')], backend_args=dict(backend='petrel'))
    with pytest.raises(FileNotFoundError, match='1 of 1 images'):
        check_files_exist(
            path, [str(tmp_path / 'a.jpg')], backend_args=dict(backend='disk'))


def test_list_stats_name_the_list_and_c_of_the_dataset(tmp_path, monkeypatch):
    path = _labels(tmp_path, [1, 2])
    assert class_stats_from_list(path, cache_file=False).dataset == 'train.txt'
    monkeypatch.chdir(tmp_path)
    st = class_stats_from_list('train.txt', cache_file=False)
    assert st.dataset == 'train.txt'
    assert st.extra['source'] == str(tmp_path / 'train.txt')
    # C = 3 without names: index names, a class without images counted
    ds = ImageNetLTDataset(
        ann_file='train.txt',
        num_classes=3,
        stats_cache=False,
        check_files=False)
    assert ds.CLASSES == ('0', '1', '2')
    assert ds.class_stats().counts == [1, 2, 0]


def test_exactly_max_named_missing_files_have_no_more(tmp_path):
    paths = [str(tmp_path / f'{i}.jpg') for i in range(5)]
    with pytest.raises(FileNotFoundError) as e:
        check_files_exist('list', paths)
    assert '5 of 5 images' in str(e.value) and 'more' not in str(e.value)
