"""ADE20KLTDataset and the label reading / pixel counting it shares with
tools/class_stats.py, on the tiny ADE20K-layout data."""
import glob
import os.path as osp

import numpy as np
import pytest
from mmseg.datasets import ADE20KDataset
from PIL import Image

from lt_mm.seg import ADE20KLTDataset, count_seg_pixels, load_seg_label

DIGITS = tuple(f'digit_{i}' for i in range(10))


def _dataset(data_root, classes, cls=ADE20KLTDataset):
    return cls(
        data_root=osp.join(data_root, 'seg'),
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        metainfo=dict(classes=classes),
        pipeline=[])


def test_new_vocabulary(data_root):
    # mmseg's ADE20KDataset only accepts subsets of its 150 classes
    with pytest.raises(ValueError, match='not a subset'):
        _dataset(data_root, DIGITS, cls=ADE20KDataset)
    ds = _dataset(data_root, DIGITS)
    assert ds.metainfo['classes'] == DIGITS
    assert ds.label_map is None and ds.reduce_zero_label
    assert len(ds.metainfo['palette']) == 10
    assert len(ds) == 8
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        png = np.asarray(Image.open(info['seg_map_path']))
        # PNG 0 = other (ignored), PNG k = class k - 1
        assert ds.get_cat_ids(i) == sorted(
            int(v) - 1 for v in np.unique(png) if v)
        label = load_seg_label(info['seg_map_path'], True)
        assert np.array_equal(label == 255, png == 0)
        assert np.array_equal(label[png > 0], png[png > 0] - 1)


def test_ade20k_subset_label_map(data_root):
    # a subset of ADE20K keeps mmseg's remapping: PNG 1 = wall (ADE id 0)
    # -> new id 1, PNG 2 = building (ADE id 1) -> new id 0, rest -> 255
    ds = _dataset(data_root, ('building', 'wall'))
    assert ds.label_map[0] == 1 and ds.label_map[1] == 0
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    res = count_seg_pixels(infos, 2, progress=False)
    pngs = [
        np.asarray(Image.open(p)) for p in sorted(
            glob.glob(
                osp.join(data_root, 'seg', 'annotations', 'training',
                         '*.png')))
    ]
    building = sum(int((p == 2).sum()) for p in pngs)
    wall = sum(int((p == 1).sum()) for p in pngs)
    assert res['pixels'] == [building, wall]
    assert res['images'] == [
        sum(int((p == 2).any()) for p in pngs),
        sum(int((p == 1).any()) for p in pngs)
    ]
    total = sum(p.size for p in pngs)
    assert res['total'] == total
    assert res['ignored'] == total - building - wall
    assert res['num_images'] == 8
    # too few classes for the labels: clear error
    with pytest.raises(ValueError, match=r'outside \[0, 1\)'):
        count_seg_pixels(infos, 1, progress=False)


def test_label_scan_at_build_feeds_get_cat_ids(data_root, tmp_path):
    # the build-time label check reads every map once; get_cat_ids (what
    # the lt_mm samplers use) then comes from that scan, with its cache in
    # the samplers' format
    cache = str(tmp_path / 'classes.json')
    ds = ADE20KLTDataset(
        data_root=osp.join(data_root, 'seg'),
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        metainfo=dict(classes=DIGITS),
        pipeline=[],
        label_cache=cache)
    assert len(ds._cat_ids_cache) == len(ds) == 8
    for i in range(len(ds)):
        png = np.asarray(Image.open(ds.get_data_info(i)['seg_map_path']))
        assert ds.get_cat_ids(i) == sorted(
            int(v) - 1 for v in np.unique(png) if v)
    import json
    with open(cache) as f:
        assert json.load(f)['format'] == 'lt_mm.sample_classes/v1'
    # 9 classes are too few for labels 0..9: the dataset refuses to build
    with pytest.raises(ValueError, match=r'outside \[0, 9\)'):
        ADE20KLTDataset(
            data_root=osp.join(data_root, 'seg'),
            data_prefix=dict(
                img_path='images/training',
                seg_map_path='annotations/training'),
            metainfo=dict(classes=DIGITS[:9]),
            pipeline=[],
            label_cache=False)
