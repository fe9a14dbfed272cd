"""The readers' dataset mode (issue #12: tools/class_stats.py counts
through the readers): any mmpretrain dataset via ``get_gt_labels`` and
mmdet's ``data_list`` (metainfo class subset, ``ignore_flag`` and dropped
boxes), against hand-counted tiny files; each bad input its own test."""
import json
import os.path as osp

import pytest

from lt_mm.cls.counts import read_cls_counts
from lt_mm.det.counts import read_det_counts


# ------------------------------------------------------------------- cls
@pytest.fixture
def cls_folder(tmp_path):
    """CustomDataset folder layout (no list file): a/ 2 images, b/ 1."""
    for name in ('a/1.jpg', 'a/2.jpg', 'b/3.jpg'):
        p = tmp_path / 'img' / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b'')  # never decoded: the pipeline is stripped
    return dict(
        type='CustomDataset',
        data_root=str(tmp_path / 'img'),
        pipeline=[dict(type='LoadImageFromFile')])


@pytest.fixture
def cls_json(tmp_path):
    """mmpretrain BaseDataset json annotations: labels 1, 0, 1, 1."""
    ann = tmp_path / 'train.json'
    ann.write_text(
        json.dumps(
            dict(
                metainfo=dict(classes=['x', 'y', 'z']),
                data_list=[
                    dict(img_path=f'{i}.jpg', gt_label=y)
                    for i, y in enumerate([1, 0, 1, 1])
                ])))
    return dict(
        type='BaseDataset',
        data_root=str(tmp_path),
        ann_file='train.json',
        pipeline=[])


def test_cls_folder_dataset_counts(cls_folder):
    # no ann_file: built without pipeline, get_gt_labels() = [0, 0, 1]
    # -> a: 2, b: 1; the dataset's class names; not a list -> 'dataset'
    st = read_cls_counts(cls_folder, 'images')
    assert st.counts == [2.0, 1.0] and st.names == ['a', 'b']
    assert st.extra['num_images'] == 3
    assert st.extra['dataset_type'] == 'CustomDataset'
    assert 'cache' not in st.extra  # no annotation file to key a cache on


def test_cls_json_dataset_counts_and_cache(cls_json, tmp_path):
    # labels 1, 0, 1, 1 over 3 classes -> [1, 3, 0]
    st = read_cls_counts(cls_json, 'images')
    assert st.counts == [1.0, 3.0, 0.0] and st.names == ['x', 'y', 'z']
    cache = tmp_path / 'train_class_stats_images.json'
    assert osp.isfile(cache) and st.extra['sha1']
    # the json changes: recomputed (one more label 2 -> [1, 3, 1])
    doc = json.loads((tmp_path / 'train.json').read_text())
    doc['data_list'].append(dict(img_path='9.jpg', gt_label=2))
    (tmp_path / 'train.json').write_text(json.dumps(doc))
    assert read_cls_counts(cls_json, 'images').counts == [1.0, 3.0, 1.0]


def test_cls_list_dataset_keeps_list_source(tmp_path):
    # a CustomDataset with a .txt list is still read as a list (cached by
    # the list's content): labels 0, 2 -> [1, 0, 1]
    (tmp_path / 'l.txt').write_text('a.jpg 0\nb.jpg 2\n')
    ds = dict(type='CustomDataset', data_root=str(tmp_path), ann_file='l.txt')
    st = read_cls_counts(ds, 'images', 3)
    assert st.counts == [1.0, 0.0, 1.0]
    assert st.extra['cache'] and st.names is None


def test_cls_labels_outside_num_classes(cls_folder):
    # labels 0, 0, 1 but C = 1
    with pytest.raises(
            ValueError,
            match=r'labels lie in \[0, 1\] but the '
            'dataset has 1 classes'):
        read_cls_counts(cls_folder, 'images', 1)


def test_cls_unknown_source(cls_folder):
    with pytest.raises(ValueError, match="source='folder'"):
        read_cls_counts(cls_folder, 'images', source='folder')


def test_cls_dataset_source_needs_a_config(tmp_path):
    with pytest.raises(ValueError, match='needs a dataset config dict'):
        read_cls_counts(str(tmp_path / 'l.txt'), 'images', source='dataset')


def test_cls_cache_path_without_annotation_file(cls_folder, tmp_path):
    with pytest.raises(ValueError, match='no annotation file'):
        read_cls_counts(
            cls_folder, 'images', cache_file=str(tmp_path / 'c.json'))


def test_cls_dict_without_type_and_ann_file(tmp_path):
    # no type, no list: the list reader's error (as before)
    with pytest.raises(ValueError, match='without ann_file'):
        read_cls_counts(dict(data_root=str(tmp_path)), 'images')


# ------------------------------------------------------------------- det
@pytest.fixture
def coco(tmp_path):
    """COCO json, categories 3 'a', 7 'b', 9 'c'; images 10 x 10.

    image 1: a, a, b, c      image 2: a (iscrowd), b
    image 3: b with w = 0.5 (mmdet drops boxes narrower than 1 px)
    """
    anns = [(1, 3, 0), (1, 3, 0), (1, 7, 0), (1, 9, 0), (2, 3, 1), (2, 7, 0)]
    annotations = [
        dict(
            id=i + 1,
            image_id=img,
            category_id=cat,
            bbox=[1, 1, 4, 4],
            area=16,
            iscrowd=crowd) for i, (img, cat, crowd) in enumerate(anns)
    ]
    annotations.append(
        dict(
            id=7,
            image_id=3,
            category_id=7,
            bbox=[1, 1, 0.5, 4],
            area=2,
            iscrowd=0))
    (tmp_path / 'train.json').write_text(
        json.dumps(
            dict(
                images=[
                    dict(id=i, file_name=f'{i}.jpg', width=10, height=10)
                    for i in (1, 2, 3)
                ],
                categories=[
                    dict(id=3, name='a'),
                    dict(id=7, name='b'),
                    dict(id=9, name='c')
                ],
                annotations=annotations)))
    return dict(
        type='CocoDataset',
        data_root=str(tmp_path),
        ann_file='train.json',
        data_prefix=dict(img=''),
        metainfo=dict(classes=('a', 'b')),
        pipeline=[dict(type='LoadImageFromFile')])


def test_det_dataset_counts_subset_and_ignore(coco):
    # classes a, b only (c dropped); the crowd 'a' of image 2 is
    # ignore_flag; the 0.5 px 'b' of image 3 is dropped by mmdet:
    # instances a: 2 (image 1), b: 2 (images 1, 2); images a: 1, b: 2
    st = read_det_counts(coco, 'instances', source='dataset')
    assert st.counts == [2.0, 2.0] and st.names == ['a', 'b']
    assert st.extra['image_counts'] == [1, 2]
    assert st.extra['instance_counts'] == [2, 2]
    assert st.extra['num_images'] == 3
    assert read_det_counts(
        coco, 'images', 2, source='dataset').counts == [1.0, 2.0]


def test_det_json_source_is_unchanged(coco):
    # the json mode counts every category and annotation of the file:
    # instances a: 3, b: 3, c: 1 (crowd and thin boxes included)
    st = read_det_counts(coco, 'instances', cache_file=False)
    assert st.counts == [3.0, 3.0, 1.0]


def test_det_dataset_num_classes_mismatch(coco):
    with pytest.raises(
            ValueError,
            match='has 2 classes but the box head '
            'has num_classes=3'):
        read_det_counts(coco, 'images', 3, source='dataset')


def test_det_unknown_source(coco):
    with pytest.raises(ValueError, match="source='data_list'"):
        read_det_counts(coco, 'images', source='data_list')


def test_det_dataset_source_needs_a_config(tmp_path):
    with pytest.raises(ValueError, match='needs a dataset config dict'):
        read_det_counts(str(tmp_path / 'train.json'), source='dataset')


def test_det_dataset_bad_unit(coco):
    with pytest.raises(ValueError, match="unit='pixels'"):
        read_det_counts(coco, 'pixels', source='dataset')


# --------------------------------------------------------- sample classes
def test_sample_classes_module_names():
    # one implementation, importable from both modules
    from lt_mm.engine import sample_classes, samplers
    assert samplers.get_sample_classes is sample_classes.get_sample_classes
    assert callable(sample_classes.seg_sample_classes)
    assert callable(sample_classes.read_seg_classes)
