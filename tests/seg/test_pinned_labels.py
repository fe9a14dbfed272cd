"""Pinned label decoding and pixel counting of the segmentation adapter
(found unpinned by a mutation audit): reduce_zero_label's exact shift
(0 and 255 ignored, 254 -> 253), label_map applied after it, per-class
pixel / image counts with ignore_index, hand-computed on tiny PNGs
written under ``tmp_path``."""
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from lt_mm.seg.datasets import count_seg_pixels, load_seg_label


def _png(path, rows):
    Image.fromarray(np.asarray(rows, np.uint8)).save(path)
    return str(path)


def test_reduce_zero_label_shift_exact(tmp_path):
    path = _png(tmp_path / 'a.png', [[0, 1, 2], [255, 3, 254]])
    # PNG 0 -> 255 (other), k -> k - 1, 255 stays 255, 254 -> 253
    assert load_seg_label(path, True).tolist() == [[255, 0, 1], [255, 2, 253]]
    # without reduce_zero_label the values are read as they are
    assert load_seg_label(path).tolist() == [[0, 1, 2], [255, 3, 254]]


def test_label_map_applied_after_the_shift_without_chaining(tmp_path):
    path = _png(tmp_path / 'a.png', [[0, 1, 2, 3], [3, 2, 1, 0]])
    # after the shift: [255 0 1 2 / 2 1 0 255]; the map {0: 1, 1: 0,
    # 2: 255} swaps 0 and 1 (each pixel mapped from its value after the
    # shift, no chaining)
    out = load_seg_label(path, True, {0: 1, 1: 0, 2: 255})
    assert out.tolist() == [[255, 1, 0, 255], [255, 0, 1, 255]]


def test_count_seg_pixels_hand_computed(tmp_path):
    a = _png(tmp_path / 'a.png', [[0, 1, 1], [2, 2, 2]])
    b = _png(tmp_path / 'b.png', [[3, 3, 0], [0, 0, 1]])
    infos = [
        dict(seg_map_path=a, reduce_zero_label=True),
        dict(seg_map_path=b, reduce_zero_label=True)
    ]
    res = count_seg_pixels(infos, 3, progress=False)
    # after the shift: a = [255 0 0 / 1 1 1], b = [2 2 255 / 255 255 0]
    # pixels: class 0: 2 + 1, class 1: 3, class 2: 2; ignored 1 + 3
    assert res['pixels'] == [3, 3, 2]
    # images: class 0 in a and b, class 1 in a, class 2 in b
    assert res['images'] == [2, 1, 1]
    assert res['ignored'] == 4 and res['total'] == 12
    assert res['num_images'] == 2
    # class 2 (PNG 3) is outside [0, 2) with 2 classes: b.png is named
    with pytest.raises(ValueError) as e:
        count_seg_pixels(infos, 2, progress=False)
    assert osp.basename(b) in str(e.value) and '[2]' in str(e.value)


def test_count_seg_pixels_other_ignore_index(tmp_path):
    a = _png(tmp_path / 'a.png', [[0, 1, 2], [2, 0, 0]])
    # ignore_index = 0: label 0 is not a class count, labels 1, 2 are
    res = count_seg_pixels([dict(seg_map_path=a)],
                           3,
                           ignore_index=0,
                           progress=False)
    assert res['pixels'] == [0, 1, 2]
    assert res['images'] == [0, 1, 1]
    assert res['ignored'] == 3 and res['total'] == 6
    # ignore_index outside the uint8 range: nothing is ignored
    res = count_seg_pixels([dict(seg_map_path=a)],
                           3,
                           ignore_index=-1,
                           progress=False)
    assert res['pixels'] == [3, 1, 2] and res['ignored'] == 0
    res = count_seg_pixels([dict(seg_map_path=a)],
                           3,
                           ignore_index=256,
                           progress=False)
    assert res['pixels'] == [3, 1, 2] and res['ignored'] == 0


def _ade(root, maps):
    """ADE20K layout under ``root``: images/training/<name>.jpg and
    annotations/training/<name>.png for each ``name -> label rows``."""
    for name, rows in maps.items():
        for sub, ext in (('images', '.jpg'), ('annotations', '.png')):
            d = osp.join(root, sub, 'training')
            os.makedirs(d, exist_ok=True)
            if ext == '.jpg':
                Image.fromarray(np.zeros(
                    (2, 2, 3), np.uint8)).save(osp.join(d, name + ext))
            else:
                _png(osp.join(d, name + ext), rows)
    return str(root)


def _ade_ds(root, **kwargs):
    from lt_mm.seg.datasets import ADE20KLTDataset
    return ADE20KLTDataset(
        data_root=root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        metainfo=dict(classes=('a', 'b', 'c')),
        pipeline=[],
        **kwargs)


@pytest.mark.parametrize('key', ['check_labels', 'check_files'])
def test_ade_lt_flags_must_be_bool(tmp_path, key):
    root = _ade(tmp_path, {'x': [[1, 2], [3, 0]]})
    with pytest.raises(ValueError, match=f"{key}='yes' must be True"):
        _ade_ds(root, **{key: 'yes'})


def test_ade_lt_missing_ann_file_is_named(tmp_path):
    root = _ade(tmp_path, {'x': [[1, 2], [3, 0]]})
    with pytest.raises(
            FileNotFoundError,
            match=r"ann_file '.*nolist\.txt' does not exist; it lists"):
        _ade_ds(root, ann_file='nolist.txt')


def test_ade_lt_ann_file_list_and_its_missing_images(tmp_path):
    root = _ade(tmp_path, {'x': [[1, 2], [3, 0]], 'y': [[1, 1], [0, 0]]})
    (tmp_path / 'list.txt').write_text('x\ny\n')
    assert len(_ade_ds(root, ann_file='list.txt')) == 2
    # y.jpg missing (its label map is there): named with its list line
    os.remove(osp.join(root, 'images', 'training', 'y.jpg'))
    with pytest.raises(FileNotFoundError) as e:
        _ade_ds(root, ann_file='list.txt')
    assert '1 of 2 images' in str(e.value)
    assert "line 2: '" in str(e.value) and 'y.jpg' in str(e.value)


def test_read_seg_counts_refusals_name_the_value(tmp_path):
    from mmseg.datasets import BaseSegDataset

    from lt_mm.seg.counts import read_seg_counts
    root = _ade(tmp_path, {'x': [[1, 2], [3, 0]]})
    with pytest.raises(ValueError, match="unit='bytes'"):
        read_seg_counts(_ade_ds(root), unit='bytes')
    with pytest.raises(ValueError, match='has no classes'):
        read_seg_counts(_ade_ds(root), num_classes=0, cache_file=False)
    # a dataset that lists no label map
    os.makedirs(tmp_path / 'empty' / 'img')
    os.makedirs(tmp_path / 'empty' / 'ann')
    empty = BaseSegDataset(
        data_root=str(tmp_path / 'empty'),
        data_prefix=dict(img_path='img', seg_map_path='ann'),
        metainfo=dict(classes=('a', 'b')),
        pipeline=[],
        serialize_data=False)
    with pytest.raises(ValueError, match='lists no label maps'):
        read_seg_counts(empty, cache_file=False)


def test_read_seg_counts_pixels_and_images(tmp_path):
    from lt_mm.seg.counts import read_seg_counts
    root = _ade(tmp_path, {'x': [[1, 2], [3, 0]], 'y': [[1, 1], [0, 0]]})
    # reduce_zero_label (ADE layout): x = [0 1 / 2 255], y = [0 0 / 255 255]
    stats = read_seg_counts(_ade_ds(root), cache_file=False)
    assert stats.unit == 'pixels' and stats.counts == [3, 1, 1]
    assert stats.extra['ignored_pixels'] == 3 and stats.extra['total'] == 8
    assert stats.names == ['a', 'b', 'c']
    imgs = read_seg_counts(_ade_ds(root), unit='images', cache_file=False)
    assert imgs.unit == 'images' and imgs.counts == [2, 1, 1]


def test_ade_lt_check_files_opt_out(tmp_path):
    root = _ade(tmp_path, {'x': [[1, 2], [3, 0]], 'y': [[1, 1], [0, 0]]})
    (tmp_path / 'list.txt').write_text('x\ny\n')
    os.remove(osp.join(root, 'images', 'training', 'y.jpg'))
    assert len(_ade_ds(root, ann_file='list.txt', check_files=False)) == 2


def test_ade_lt_single_image_label_scan(tmp_path):
    # 3 classes, reduce_zero_label: PNG 5 is label 4, outside [0, 3)
    root = _ade(tmp_path, {'x': [[1, 5], [3, 0]]})
    with pytest.raises(ValueError) as e:
        _ade_ds(root, label_cache=False)
    msg = str(e.value)
    assert 'x.png has label values [4] (PNG values [5] before ' in msg
    assert 'outside [0, 3)' in msg and 'more label maps' not in msg
    # a good single map: classes [0, 2] present (PNG 1 and 3)
    root = _ade(tmp_path / 'good', {'x': [[1, 3], [3, 0]]})
    assert _ade_ds(root, label_cache=False).get_cat_ids(0) == [0, 2]


def test_ade_lt_bad_label_message_counts_the_other_maps(tmp_path):
    root = _ade(tmp_path, {
        'x': [[1, 5], [3, 0]],
        'y': [[9, 1], [1, 1]],
        'z': [[1, 1], [1, 1]]
    })
    with pytest.raises(ValueError) as e:
        _ade_ds(root, label_cache=False)
    msg = str(e.value)
    assert 'x.png has label values [4]' in msg
    assert '; 1 more label maps have such values' in msg


def test_ade_lt_bad_label_without_reduce_zero_label(tmp_path):
    root = _ade(tmp_path, {'x': [[0, 3], [2, 255]]})
    with pytest.raises(ValueError) as e:
        _ade_ds(root, reduce_zero_label=False, label_cache=False)
    msg = str(e.value)
    # no PNG shift to explain: the values are the PNG values
    assert 'x.png has label values [3] outside [0, 3)' in msg
    assert 'PNG values' not in msg


def test_ade_lt_get_cat_ids_reads_the_map_without_scan(tmp_path):
    root = _ade(tmp_path, {'x': [[1, 3], [0, 255]], 'y': [[2, 2], [0, 0]]})
    ds = _ade_ds(root, check_labels=False)
    # PNG 1, 3 -> classes 0, 2; PNG 0 and 255 -> 255, not a class
    assert ds.get_cat_ids(0) == [0, 2]
    assert ds.get_cat_ids(1) == [1]
    assert ds.get_cat_ids(0) == [0, 2]  # cached, same answer


def test_ade_lt_stale_relative_cache_is_rechecked(tmp_path):
    # label_cache relative to data_root: a cache that holds a bad class
    # (written before a fix of the maps) is dropped and the maps are
    # read again instead of blaming them
    import json
    root = _ade(tmp_path, {'x': [[1, 2], [1, 1]]})
    assert _ade_ds(root, label_cache='classes.json').get_cat_ids(0) == [0, 1]
    cache = osp.join(root, 'classes.json')
    with open(cache) as f:
        doc = json.load(f)
    assert doc['classes'] == [[0, 1]]
    doc['classes'] = [[0, 8]]
    with open(cache, 'w') as f:
        json.dump(doc, f)
    assert _ade_ds(root, label_cache='classes.json').get_cat_ids(0) == [0, 1]


def test_read_seg_counts_single_map(tmp_path):
    from lt_mm.seg.counts import read_seg_counts
    root = _ade(tmp_path, {'x': [[1, 2], [3, 3]]})
    stats = read_seg_counts(_ade_ds(root), cache_file=False)
    assert stats.counts == [1, 1, 2]
    assert stats.extra['source'] == osp.join(root, 'annotations', 'training')
