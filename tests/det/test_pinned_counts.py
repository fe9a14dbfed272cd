"""Pinned behaviour of lt_mm.det.counts found unguarded by a mutation audit:
counting from ``annotations`` (images vs instances, unknown categories),
the LVIS count fields and frequency letters, the label order of an
unsorted json, config paths, and the errors naming the bad value.

Every json is written here by hand; the expected counts are in comments.
"""
import json
import os.path as osp

import pytest

import lt_mm.det  # noqa: F401
from lt_mm.core.stats import lvis_splits
from lt_mm.det.counts import (lvis_class_stats, read_det_counts,
                              resolve_det_counts)


def _write(path, categories, annotations=()):
    doc = dict(
        images=[
            dict(id=i, file_name=f'{i}.jpg', width=8, height=8) for i in (1, 2)
        ],
        categories=list(categories),
        annotations=[
            dict(
                id=k + 1,
                image_id=img,
                category_id=cat,
                bbox=[1, 1, 4, 4],
                area=16,
                iscrowd=0) for k, (img, cat) in enumerate(annotations)
        ])
    path.write_text(json.dumps(doc))
    return str(path)


# categories in file order 7 'b', 3 'a' (not sorted by id); annotations
# (image, category): image 1: b, b, a; image 2: b and an unknown id 99
_COCO_CATS = [dict(id=7, name='b'), dict(id=3, name='a')]
_COCO_ANNS = [(1, 7), (1, 7), (1, 3), (2, 7), (2, 99)]


@pytest.fixture
def coco_json(tmp_path):
    return _write(tmp_path / 'coco.json', _COCO_CATS, _COCO_ANNS)


def test_counts_from_annotations_in_file_order(coco_json):
    # instances: b = 3 (two in image 1, one in image 2), a = 1;
    # the category 99 of no listed category is skipped
    st = lvis_class_stats(coco_json, 'instances', cache_file=False)
    assert st.counts == [3.0, 1.0]
    assert st.names == ['b', 'a']
    assert st.extra['category_ids'] == [7, 3]
    assert st.extra['frequency'] is None
    # images: b in images 1 and 2 = 2, a in image 1 = 1
    st = lvis_class_stats(coco_json, 'images', cache_file=False)
    assert st.counts == [2.0, 1.0]
    # no frequency letters: the splits come from the image counts
    assert st.splits == lvis_splits(image_counts=[2, 1])


def test_lvis_count_fields_and_frequency_letters(tmp_path):
    # the fields win over the annotations (which would count 1 / 0 / 0);
    # the letters win over the image-count thresholds (50 would be 'c')
    cats = [
        dict(
            id=1, name='x', image_count=50, instance_count=200, frequency='f'),
        dict(id=2, name='y', image_count=5, instance_count=9, frequency='r'),
        dict(
            id=3, name='z', image_count=500, instance_count=900,
            frequency='c'),
    ]
    path = _write(tmp_path / 'lvis.json', cats, [(1, 1)])
    st = lvis_class_stats(path, 'images', cache_file=False)
    assert st.counts == [50.0, 5.0, 500.0]
    assert st.extra['frequency'] == ['f', 'r', 'c']
    assert st.splits == lvis_splits(frequency=['f', 'r', 'c'])
    assert st.splits != lvis_splits(image_counts=[50, 5, 500])
    st = lvis_class_stats(path, 'instances', cache_file=False)
    assert st.counts == [200.0, 9.0, 900.0]
    assert st.splits == lvis_splits(frequency=['f', 'r', 'c'])


def test_one_category_without_the_field_counts_every_category(tmp_path):
    # 'y' lacks image_count: all counts come from the annotations
    # (x: images 1 and 2 = 2; y: image 2 = 1) -- never a mix
    cats = [dict(id=1, name='x', image_count=50), dict(id=2, name='y')]
    path = _write(tmp_path / 'mix.json', cats, [(1, 1), (2, 1), (2, 2)])
    st = lvis_class_stats(path, 'images', cache_file=False)
    assert st.counts == [2.0, 1.0]


def test_instances_without_letters_have_no_splits(coco_json):
    # no frequency letters and unit instances: no r/c/f groups (the LVIS
    # thresholds are defined on image counts)
    st = lvis_class_stats(coco_json, 'instances', cache_file=False)
    assert not st.splits


# ---------------------------------------------------------------- errors
def test_bad_unit_named(coco_json):
    with pytest.raises(ValueError, match="unit='pixels'"):
        lvis_class_stats(coco_json, 'pixels', cache_file=False)
    with pytest.raises(ValueError, match="GRWLoss: unit='boxes'"):
        resolve_det_counts(
            train_ann_file=coco_json, unit='boxes', what='GRWLoss')
    # explicit counts: the unit is checked all the same
    with pytest.raises(ValueError, match="GRWLoss: unit='boxes'"):
        resolve_det_counts(counts=[4, 2], unit='boxes', what='GRWLoss')


def test_missing_json_named(tmp_path):
    path = str(tmp_path / 'nope.json')
    with pytest.raises(
            FileNotFoundError,
            match='nope.json.* does not exist; expected the LVIS'):
        lvis_class_stats(path, cache_file=False)


def test_json_without_categories_named(tmp_path):
    path = _write(tmp_path / 'empty.json', [])
    with pytest.raises(ValueError, match='empty.json has no categories'):
        lvis_class_stats(path, cache_file=False)


def test_json_vocabulary_must_match_num_classes(coco_json):
    with pytest.raises(
            ValueError,
            match='has 2 categories but the box head has '
            'num_classes=3'):
        read_det_counts(coco_json, 'images', 3, cache_file=False)
    assert read_det_counts(
        coco_json, 'images', 2, cache_file=False).counts == [2.0, 1.0]
    with pytest.raises(ValueError, match='num_classes=3'):
        resolve_det_counts(train_ann_file=coco_json, num_classes=3)


def test_config_without_ann_file_refused(tmp_path):
    with pytest.raises(ValueError, match='LVISV1Dataset without ann_file'):
        read_det_counts(dict(type='LVISV1Dataset', data_root=str(tmp_path)))


def test_config_paths_data_root_and_absolute(tmp_path, coco_json):
    # relative ann_file: joined to data_root; absolute: kept as it is
    rel = dict(
        type='CocoDataset', data_root=str(tmp_path), ann_file='coco.json')
    assert read_det_counts(
        rel, 'instances', cache_file=False).counts == [3.0, 1.0]
    absolute = dict(
        type='CocoDataset',
        data_root='/nonexistent',
        ann_file=osp.abspath(coco_json))
    assert read_det_counts(
        absolute, 'instances', cache_file=False).counts == [3.0, 1.0]


def test_resolve_reads_the_unit_of_the_json(coco_json, tmp_path):
    # default unit images; instances on request (counts as floats)
    assert resolve_det_counts(
        train_ann_file=coco_json, num_classes=2) == [2.0, 1.0]
    assert resolve_det_counts(
        train_ann_file=coco_json, num_classes=2,
        unit='instances') == [3.0, 1.0]
    # explicit counts pass through (any unit), and only one source
    assert resolve_det_counts(counts=[4, 2], num_classes=2) == [4.0, 2.0]
    with pytest.raises(ValueError, match='PosthocLinear'):
        resolve_det_counts(
            counts=[4, 2], train_ann_file=coco_json, what='PosthocLinear')


# ------------------------------------------------- source='dataset' errors
def _coco_cfg(tmp_path, classes):
    # categories 3 'a', 7 'b'; mmdet's CocoDataset maps the metainfo
    # names to category ids
    _write(tmp_path / 'train.json',
           [dict(id=3, name='a'), dict(id=7, name='b')], [(1, 3), (1, 7),
                                                          (2, 7)])
    return dict(
        type='CocoDataset',
        data_root=str(tmp_path),
        ann_file='train.json',
        data_prefix=dict(img=''),
        metainfo=dict(classes=classes),
        pipeline=[])


def test_dataset_source_counts_by_hand(tmp_path):
    # b in images 1 and 2 (instances 2), a in image 1 (instances 1)
    st = read_det_counts(
        _coco_cfg(tmp_path, ('a', 'b')),
        'images',
        2,
        cache_file=False,
        source='dataset')
    assert st.counts == [1.0, 2.0]
    assert st.extra['instance_counts'] == [1, 2]


def test_dataset_metainfo_names_not_in_the_json_refused(tmp_path):
    # 'zz' is no category of the json: mmdet finds 1 category id for 2
    # classes, the labels would not mean the listed classes
    with pytest.raises(
            ValueError,
            match='has 1 categories but the dataset metainfo '
            'lists 2 classes'):
        read_det_counts(
            _coco_cfg(tmp_path, ('a', 'zz')),
            'images',
            cache_file=False,
            source='dataset')


def test_dataset_without_classes_refused_naming_it(tmp_path):
    # an mmengine-format annotation file without classes in its metainfo
    (tmp_path / 'plain.json').write_text(
        json.dumps(
            dict(
                metainfo=dict(),
                data_list=[
                    dict(
                        img_path='1.jpg',
                        instances=[dict(bbox=[0, 0, 2, 2], bbox_label=0)])
                ])))
    cfg = dict(
        type='BaseDetDataset',
        data_root=str(tmp_path),
        ann_file='plain.json',
        pipeline=[])
    with pytest.raises(
            ValueError, match='BaseDetDataset has no classes in its metainfo'):
        read_det_counts(cfg, 'images', cache_file=False, source='dataset')


def test_dataset_label_outside_the_classes_refused(tmp_path):
    (tmp_path / 'plain.json').write_text(
        json.dumps(
            dict(
                metainfo=dict(classes=['x', 'y']),
                data_list=[
                    dict(
                        img_path='1.jpg',
                        instances=[
                            dict(bbox=[0, 0, 2, 2], bbox_label=1),
                            dict(bbox=[0, 0, 2, 2], bbox_label=2)
                        ])
                ])))
    cfg = dict(
        type='BaseDetDataset',
        data_root=str(tmp_path),
        ann_file='plain.json',
        pipeline=[])
    with pytest.raises(ValueError, match=r'labels \[2\] outside \[0, 2\)'):
        read_det_counts(cfg, 'images', cache_file=False, source='dataset')


def test_dataset_cache_path_without_annotation_file_refused(tmp_path):
    cfg = dict(
        type='CocoDataset',
        data_root=str(tmp_path),
        ann_file='missing.json',
        pipeline=[])
    cache = str(tmp_path / 'stats.json')
    with pytest.raises(ValueError, match='cache_file=.*stats.json'):
        read_det_counts(cfg, 'images', cache_file=cache, source='dataset')


def test_stats_file_of_another_unit_refused(coco_json, tmp_path):
    from lt_mm.core.stats import ClassStats
    path = str(tmp_path / 'inst.json')
    ClassStats(counts=[3, 1], unit='instances').save(path)
    assert resolve_det_counts(
        stats_file=path, num_classes=2, unit='instances') == [3.0, 1.0]
    with pytest.raises(ValueError, match='instances'):
        resolve_det_counts(stats_file=path, num_classes=2, unit='images')
