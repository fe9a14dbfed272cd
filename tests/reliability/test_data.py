"""Bad data is caught when the dataset is built (issue #10, defects 5, 6
and the empty-folder part of 9), before any training iteration.

Every test writes a few tiny images (8x8) under ``tmp_path`` and builds the
dataset in-process; the error must come out of the constructor (the build
step of the Runner's dataloader), have the expected type and name the bad
file and value.
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

import lt_mm.cls  # noqa: F401
import lt_mm.seg  # noqa: F401
from lt_mm.cls.datasets import ImageNetLTDataset
from lt_mm.seg.datasets import ADE20KLTDataset

DIGITS = tuple(f'digit_{i}' for i in range(10))


# ------------------------------------------------------------ helpers
def _jpg(path, value=0):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _imagenet_lt(root, labels, present=None):
    """A list ``train.txt`` with one ``img/<i>.jpg <label>`` line per label;
    only the images whose index is in ``present`` are written."""
    lines = []
    for i, y in enumerate(labels):
        rel = f'img/{i}.jpg'
        lines.append(f'{rel} {y}')
        if present is None or i in present:
            _jpg(osp.join(root, rel))
    with open(osp.join(root, 'train.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return osp.join(root, 'train.txt')


def _ade(root, maps):
    """ADE20K layout: images/training/<name>.jpg + annotations/training/
    <name>.png for each ``name -> (8, 8) uint8 label array`` (None: no
    label map)."""
    for name, label in maps.items():
        _jpg(osp.join(root, 'images', 'training', name + '.jpg'))
        if label is not None:
            path = osp.join(root, 'annotations', 'training', name + '.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            Image.fromarray(np.asarray(label, np.uint8)).save(path)
    return root


def _ade_ds(root, classes=DIGITS, **kwargs):
    return ADE20KLTDataset(
        data_root=str(root),
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        metainfo=dict(classes=classes),
        pipeline=[],
        **kwargs)


def _label(values):
    """(8, 8) map: row r holds ``values[r % len(values)]``."""
    arr = np.zeros((8, 8), np.uint8)
    for r in range(8):
        arr[r] = values[r % len(values)]
    return arr


# ------------------------------------------- defect 5: ImageNet-LT labels
def test_list_label_ge_num_classes_at_build(tmp_path):
    # 3 classes configured; line 4 says label 3 (valid labels: 0, 1, 2)
    ann = _imagenet_lt(str(tmp_path), [0, 1, 2, 3, 1])
    with pytest.raises(ValueError) as e:
        ImageNetLTDataset(ann_file=ann, num_classes=3, stats_cache=False)
    msg = str(e.value)
    assert f'{ann}:4: label 3' in msg and '[0, 3)' in msg


def test_list_label_vs_classes_file_at_build(tmp_path):
    # classes.txt names 2 classes; line 2 has label 2
    _imagenet_lt(str(tmp_path), [0, 2, 1])
    (tmp_path / 'classes.txt').write_text('cat\ndog\n')
    with pytest.raises(ValueError, match=r'train\.txt:2: label 2'):
        ImageNetLTDataset(
            ann_file='train.txt',
            data_root=str(tmp_path),
            classes='classes.txt',
            stats_cache=False)


# ------------------------------------------------ defect 6: missing images
def test_missing_images_all_counted_first_named(tmp_path):
    # 8 lines, only image 0 exists: 7 missing, lines 2..6 named, "2 more"
    _imagenet_lt(str(tmp_path), [0, 1, 0, 1, 0, 1, 0, 1], present={0})
    with pytest.raises(FileNotFoundError) as e:
        ImageNetLTDataset(
            ann_file='train.txt', data_root=str(tmp_path), stats_cache=False)
    msg = str(e.value)
    assert '7 of 8 images do not exist' in msg
    assert "line 2: '" in msg and 'img/1.jpg' in msg
    assert 'img/5.jpg' in msg and 'img/6.jpg' not in msg
    assert 'and 2 more' in msg and 'check_files=False' in msg


def test_missing_images_opt_out(tmp_path):
    _imagenet_lt(str(tmp_path), [0, 1, 0], present={0})
    ds = ImageNetLTDataset(
        ann_file='train.txt',
        data_root=str(tmp_path),
        stats_cache=False,
        check_files=False)
    assert len(ds) == 3 and ds.num_classes == 2
    with pytest.raises(ValueError, match="check_files='no'"):
        ImageNetLTDataset(
            ann_file='train.txt',
            data_root=str(tmp_path),
            stats_cache=False,
            check_files='no')


def test_good_list_builds(tmp_path):
    _imagenet_lt(str(tmp_path), [0, 1, 1, 2])
    ds = ImageNetLTDataset(
        ann_file='train.txt',
        data_root=str(tmp_path),
        num_classes=3,
        stats_cache=False)
    assert len(ds) == 4 and ds.get_data_info(3)['gt_label'] == 2


# ------------------------------------------- defect 5: ADE20K label values
def test_ade_label_value_out_of_range_at_build(tmp_path):
    # 10 classes, reduce_zero_label: PNG 1..10 = classes 0..9, PNG 0 = other
    # (ignored). b.png holds PNG 12 -> label 11, outside [0, 10).
    root = _ade(
        str(tmp_path), {
            'a': _label([0, 1, 10]),
            'b': _label([0, 3, 12]),
        })
    with pytest.raises(ValueError) as e:
        _ade_ds(root, label_cache=False)
    msg = str(e.value)
    assert osp.join('annotations', 'training', 'b.png') in msg
    assert '[11]' in msg and 'PNG values [12]' in msg
    assert 'ignore_index=255' in msg and 'a.png' not in msg


def test_ade_without_reduce_zero_label(tmp_path):
    # reduce_zero_label=False: PNG 10 is label 10, outside [0, 10)
    root = _ade(str(tmp_path), {'a': _label([0, 9, 255]), 'b': _label([10])})
    with pytest.raises(ValueError, match=r'b\.png has label values \[10\]'):
        _ade_ds(root, reduce_zero_label=False, label_cache=False)


def test_ade_good_labels_scan_cached_for_samplers(tmp_path):
    # PNG 0 (other) and 255 are ignored; 1..10 are classes 0..9
    root = _ade(
        str(tmp_path), {
            'a': _label([0, 1, 255]),
            'b': _label([4, 10])
        })
    ds = _ade_ds(root)
    cache = osp.join(root, 'annotations', 'training.lt_mm_classes.json')
    with open(cache) as f:
        saved = json.load(f)
    # the samplers' cache format; a: PNG {1} -> [0]; b: PNG {4, 10} -> [3, 9]
    assert saved['format'] == 'lt_mm.sample_classes/v1'
    assert saved['classes'] == [[0], [3, 9]]
    # get_cat_ids (what the lt_mm samplers read) comes from the scan
    assert ds.get_cat_ids(0) == [0] and ds.get_cat_ids(1) == [3, 9]


def test_ade_stale_cache_is_rechecked(tmp_path):
    # a cache written when b.png was bad must not outlive the fix
    root = _ade(str(tmp_path), {'a': _label([1]), 'b': _label([12])})
    with pytest.raises(ValueError, match='b.png'):
        _ade_ds(root)
    cache = osp.join(root, 'annotations', 'training.lt_mm_classes.json')
    _ade(root, {'b': _label([2])})  # fixed in place, same path
    ds = _ade_ds(root)
    assert ds.get_cat_ids(1) == [1] and osp.isfile(cache)


def test_ade_check_labels_opt_out(tmp_path):
    root = _ade(str(tmp_path), {'a': _label([12])})
    ds = _ade_ds(root, check_labels=False)
    assert len(ds) == 1


# ----------------------------------------- defect 9: empty / missing folder
def test_ade_empty_image_folder(tmp_path):
    os.makedirs(tmp_path / 'images' / 'training')
    os.makedirs(tmp_path / 'annotations' / 'training')
    with pytest.raises(ValueError) as e:
        _ade_ds(tmp_path)
    msg = str(e.value)
    assert osp.join(str(tmp_path), 'images', 'training') in msg
    assert "holds no '.jpg' image" in msg and 'ADEChallengeData2016' in msg
    assert 'concatenate' not in msg


def test_ade_missing_image_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        _ade_ds(tmp_path / 'nowhere')
    msg = str(e.value)
    assert osp.join('nowhere', 'images', 'training') in msg
    assert 'does not exist' in msg and 'annotations' in msg


def test_ade_missing_label_map(tmp_path):
    root = _ade(str(tmp_path), {'a': _label([1]), 'b': None, 'c': None})
    with pytest.raises(FileNotFoundError) as e:
        _ade_ds(root)
    msg = str(e.value)
    assert '2 of 3 label maps' in msg and 'b.png' in msg and 'c.png' in msg
