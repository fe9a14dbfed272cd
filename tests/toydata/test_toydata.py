"""Tests of the tiny long-tailed dataset generators (lt_mm.toydata)."""
import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from lt_mm.toydata import (load_digit_images, long_tailed_counts, make_ade20k,
                           make_imagenet_lt, make_lvis)
from lt_mm.toydata.digits import colourise
from lt_mm.toydata.lvis import (COCO_URL_PREFIX, design_image_counts,
                                frequency_letter, mask_to_polygon)

# small settings shared by the tests (and by the determinism test)
IMNET_KW = dict(
    num_classes=10,
    imbalance_ratio=10,
    max_per_class=20,
    val_per_class=2,
    test_per_class=3,
    image_size=16,
    seed=0)


def _same_tree(a, b):
    """Recursively compare two folders byte by byte."""
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only, (cmp.left_only,
                                                      cmp.right_only)
    _, mismatch, errors = filecmp.cmpfiles(
        a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
    for sub in cmp.common_dirs:
        _same_tree(osp.join(a, sub), osp.join(b, sub))


# ----------------------------------------------------------------- digits
def test_digit_images_are_real_and_upscaled():
    imgs, labels = load_digit_images(size=16)
    # sklearn's digits: 1797 images, class sizes 178, 182, ..., 180
    assert imgs.shape == (1797, 16, 16) and imgs.dtype == np.uint8
    assert np.bincount(labels).tolist() == [
        178, 182, 177, 183, 181, 182, 181, 179, 174, 180
    ]
    # grey 16 (full ink) maps to 255 and 0 to 0
    assert imgs.max() == 255 and imgs.min() == 0
    # first image is a zero: its centre is paper, its ring is ink
    assert imgs[0, 8, 8] < 50 and imgs[0, 8, 4] > 100


def test_colourise_blends_by_ink_opacity():
    grey = np.array([[0, 255, 51]], dtype=np.uint8)
    out = colourise(grey, (200, 100, 0), (0, 0, 100))
    # a = 0 -> background; a = 1 -> ink; a = 0.2 -> 0.8 * bg + 0.2 * ink:
    # (40, 20, 80)
    assert out.tolist() == [[[0, 0, 100], [200, 100, 0], [40, 20, 80]]]


# ------------------------------------------------------------ ImageNet-LT
def test_long_tailed_counts_exponential_profile():
    # n_c = floor(100 * 50 ** (-c / 9)): 50 ** (-1/9) = 0.6475 -> 64,
    # 0.4193 -> 41, 0.2714 -> 27, 0.1757 -> 17, 0.1138 -> 11, 0.0737 -> 7,
    # 0.0477 -> 4, 0.0309 -> 3, 0.02 -> 2
    assert long_tailed_counts(10, 100,
                              50) == [100, 64, 41, 27, 17, 11, 7, 4, 3, 2]
    # 20 * 10 ** (-c / 9): 15.49, 11.99, 9.28, 7.18, 5.57, 4.31, 3.34,
    # 2.58, 2.0
    assert long_tailed_counts(10, 20, 10) == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    with pytest.raises(ValueError, match='max_per_class'):
        long_tailed_counts(10, 10, 50)  # tail would have 0.2 images
    with pytest.raises(ValueError, match='imbalance_ratio'):
        long_tailed_counts(10, 10, 0.5)


@pytest.fixture(scope='module')
def imnet(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('imagenet_lt'))
    return make_imagenet_lt(root, **IMNET_KW)


def _read_list(path):
    with open(path) as f:
        return [line.split() for line in f.read().splitlines()]


def test_imagenet_lt_layout_and_lists(imnet):
    root = imnet['root']
    assert osp.isfile(osp.join(root, 'ImageNet_LT_train.txt'))
    with open(osp.join(root, 'classes.txt')) as f:
        assert f.read().split() == [f'digit_{c}' for c in range(10)]
    seen = set()
    for split in ('train', 'val', 'test'):
        rows = _read_list(imnet[f'{split}_list'])
        per_class = np.zeros(10, dtype=int)
        for rel, label in rows:
            parts = rel.split('/')
            # "train/3/train_3_0007.jpg 3": relative path + integer label
            assert parts[0] == split and parts[1] == label
            assert rel.endswith('.jpg') and not osp.isabs(rel)
            with Image.open(osp.join(root, rel)) as im:
                assert im.format == 'JPEG' and im.mode == 'RGB'
                assert im.size == (16, 16)
            per_class[int(label)] += 1
            seen.add(rel)
        counts = imnet['counts'] if split == 'train' else \
            imnet[f'{split}_counts']
        assert per_class.tolist() == counts
    assert len(seen) == sum(imnet['counts']) + 10 * (2 + 3)


def test_imagenet_lt_counts_long_tailed_and_balanced(imnet):
    counts = imnet['counts']
    # see test_long_tailed_counts_exponential_profile
    assert counts == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert abs(counts[-1] - counts[0] / 10) <= 1  # requested ratio, +-1
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert imnet['val_counts'] == [2] * 10
    assert imnet['test_counts'] == [3] * 10
    assert imnet['num_augmented'] == [0] * 10


def test_imagenet_lt_augments_when_digits_run_out(tmp_path):
    # class 0 has 178 real digits; 1 val + 1 test leave 176 distinct ones
    # for 180 training images -> 4 augmented copies. Class 1 needs
    # floor(180 / 1.5) = 120 <= 182 - 2 -> none.
    out = make_imagenet_lt(
        str(tmp_path),
        num_classes=2,
        imbalance_ratio=1.5,
        max_per_class=180,
        val_per_class=1,
        test_per_class=1,
        image_size=8)
    assert out['counts'] == [180, 120]
    assert out['num_augmented'] == [4, 0]
    assert len(_read_list(out['train_list'])) == 300


def test_imagenet_lt_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_classes'):
        make_imagenet_lt(str(tmp_path), num_classes=11)
    with pytest.raises(ValueError, match='test_per_class'):
        make_imagenet_lt(
            str(tmp_path),
            num_classes=2,
            val_per_class=100,
            test_per_class=100)


def test_imagenet_lt_deterministic(tmp_path, imnet):
    again = make_imagenet_lt(str(tmp_path / 'again'), **IMNET_KW)
    _same_tree(imnet['root'], again['root'])
    other = make_imagenet_lt(str(tmp_path / 'other'), **dict(IMNET_KW, seed=1))
    a = osp.join(imnet['root'], 'ImageNet_LT_train.txt')
    b = osp.join(other['root'], 'ImageNet_LT_train.txt')
    first = _read_list(a)[0][0]
    assert not filecmp.cmp(
        osp.join(imnet['root'], first),
        osp.join(other['root'], first),
        shallow=False)
    assert filecmp.cmp(a, b, shallow=False)  # same names, other pixels


# ----------------------------------------------------------------- ADE20K
@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade'))
    return make_ade20k(root)  # defaults: 10 classes, 20 + 6 images, 64 px


def _reduce_zero_label(label):
    """mmseg's reduce_zero_label: 0 -> 255, k -> k - 1."""
    out = label.astype(np.int64) - 1
    out[label == 0] = 255
    return out


def test_ade20k_layout(ade):
    root = ade['root']
    for folder, tag, n in (('training', 'train', 20), ('validation', 'val',
                                                       6)):
        for k in range(1, n + 1):
            name = f'ADE_{tag}_{k:08d}'
            img = osp.join(root, 'images', folder, name + '.jpg')
            ann = osp.join(root, 'annotations', folder, name + '.png')
            with Image.open(img) as im:
                assert im.format == 'JPEG' and im.mode == 'RGB'
                assert im.size == (64, 64)
            with Image.open(ann) as im:
                # palette-less single-channel uint8 PNG
                assert im.format == 'PNG' and im.mode == 'L'
                assert im.size == (64, 64)
        assert len(os.listdir(osp.join(root, 'images', folder))) == n
    assert ade['train_images'][0] == 'images/training/ADE_train_00000001.jpg'
    assert ade['val_annotations'][-1] == \
        'annotations/validation/ADE_val_00000006.png'


def test_ade20k_labels_and_long_tailed_pixels(ade):
    root = ade['root']
    for key, names in (('', ade['train_annotations']),
                       ('val_', ade['val_annotations'])):
        hist = np.zeros(256, dtype=np.int64)
        other = 0
        for rel in names:
            label = np.asarray(Image.open(osp.join(root, rel)))
            assert label.max() <= 10  # 0 = other, digit c -> c + 1
            other += int((label == 0).sum())
            hist += np.bincount(
                _reduce_zero_label(label).ravel(), minlength=256)
        # after reduce_zero_label: classes 0..9, "other" -> 255 (ignore)
        assert hist[:10].tolist() == ade[f'{key}pixel_counts']
        assert hist[255] == other == ade[f'{key}other_pixels']
        assert hist[10:255].sum() == 0
        assert all(v > 0 for v in ade[f'{key}pixel_counts'])
        assert other > sum(ade[f'{key}pixel_counts'])
    counts = ade['pixel_counts']
    # training pixels strictly decrease from head (class 0) to tail
    assert all(a > b for a, b in zip(counts, counts[1:])), counts
    assert counts[0] > 20 * counts[-1]
    # instances: max(1, round(20 * 1.2 * 10 ** (-c / 9))) = 24, 18.6,
    # 14.4, 11.1, 8.6, 6.7, 5.2, 4.0, 3.1, 2.4
    assert ade['instance_counts'] == [24, 19, 14, 11, 9, 7, 5, 4, 3, 2]
    # val (6 images): 7.2, 5.6, 4.3, 3.3, 2.6, 2.0, 1.5, 1.2, 0.9, 0.7
    # (rint rounds 1.5 and 2.6 -> 2, 3)
    assert ade['val_instance_counts'] == [7, 6, 4, 3, 3, 2, 2, 1, 1, 1]


def test_ade20k_labels_sit_on_painted_digits(ade):
    rel_img, rel_ann = ade['train_images'][0], ade['train_annotations'][0]
    img = np.asarray(Image.open(osp.join(ade['root'], rel_img)), dtype=float)
    label = np.asarray(Image.open(osp.join(ade['root'], rel_ann)))
    bright = img.mean(axis=2)
    # ink is painted with channels >= 140 on a texture below ~110
    assert bright[label > 0].mean() > bright[label == 0].mean() + 50


def test_ade20k_deterministic(tmp_path):
    kw = dict(num_classes=4, num_train=3, num_val=2, image_size=32, seed=3)
    a = make_ade20k(str(tmp_path / 'a'), **kw)
    b = make_ade20k(str(tmp_path / 'b'), **kw)
    _same_tree(a['root'], b['root'])
    assert a['pixel_counts'] == b['pixel_counts']
    with pytest.raises(ValueError, match='image_size'):
        make_ade20k(str(tmp_path / 'c'), image_size=16)


# ------------------------------------------------------------------- LVIS
def test_ade20k_size_and_density_arguments(tmp_path):
    # head_density 2.0 with 4 images, ratio 10, 10 classes: class c has
    # max(1, round(4 * 2 * 10 ** (-c / 9))) instances -> 8 (c = 0), 1 (c = 9)
    out = make_ade20k(
        str(tmp_path / 'd'),
        num_train=4,
        num_val=2,
        head_density=2.0,
        head_side=0.3,
        tail_side=0.3)
    assert out['instance_counts'][0] == 8 and out['instance_counts'][9] == 1
    # head_side = tail_side: every class has the same box side, so the
    # pixel counts follow the instance counts (strokes vary per digit)
    assert out['pixel_counts'][0] > out['pixel_counts'][9] > 0
    for bad in (dict(tail_side=0.5), dict(head_side=1.5), dict(head_density=0),
                dict(tail_side=-0.1)):
        with pytest.raises(ValueError, match='side|density'):
            make_ade20k(str(tmp_path / 'e'), **bad)


def test_frequency_letters_and_design():
    # scaled thresholds: r <= 2 images, c 3..6, f >= 7
    assert [frequency_letter(n) for n in (1, 2, 3, 6, 7, 100)] == \
        ['r', 'r', 'c', 'c', 'f', 'f']
    # C = 8, 24 images: f group (2) from max(7, round(14.4)) = 14 to 7;
    # c group (4) 6 * (1/2) ** (t/3) = 6, 4.76, 3.78, 3; r group (2): 2, 1
    assert design_image_counts(8, 24) == [14, 7, 6, 5, 4, 3, 2, 1]
    # C = 3: one category per group
    assert design_image_counts(3, 7) == [7, 6, 2]


def test_mask_to_polygon_hand_computed():
    mask = np.zeros((5, 6), dtype=bool)
    mask[1, 2] = mask[3, 4] = True  # two pixels on a diagonal
    poly, area, bbox = mask_to_polygon(mask)
    # hull of the corners of [2,3]x[1,2] and [4,5]x[3,4]: hexagon
    # (2,1) (3,1) (5,3) (5,4) (4,4) (2,2); area = 3x3 box minus two
    # corner triangles of 2x2/2 = 9 - 2 - 2 = 5
    assert area == 5.0
    assert bbox == [2.0, 1.0, 3.0, 3.0]
    pts = set(zip(poly[0::2], poly[1::2]))
    assert pts == {(2, 1), (3, 1), (5, 3), (5, 4), (4, 4), (2, 2)}


@pytest.fixture(scope='module')
def toy_lvis(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('lvis'))
    return make_lvis(root)  # defaults: 8 categories, 24 + 8 images


def test_lvis_layout_and_loaders(toy_lvis):
    from lvis import LVIS
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    root = toy_lvis['root']
    all_img_ids, all_ann_ids = [], []
    for split in ('train', 'val'):
        path = osp.join(root, 'annotations', f'lvis_v1_{split}.json')
        assert path == toy_lvis[f'{split}_json']
        gt = LVIS(path)
        coco = COCO(path)
        assert sorted(coco.getImgIds()) == sorted(gt.get_img_ids())
        assert sorted(gt.get_cat_ids()) == list(range(1, 9))
        for img in gt.dataset['images']:
            # mmdet LVISV1Dataset: file_name = coco_url minus the prefix
            assert img['coco_url'].startswith(COCO_URL_PREFIX)
            rel = img['coco_url'][len(COCO_URL_PREFIX):]
            assert rel == f'{split}2017/{img["id"]:012d}.jpg'
            with Image.open(osp.join(root, rel)) as im:
                assert im.mode == 'RGB' and im.size == (64, 64)
            assert img['height'] == img['width'] == 64
            present = {a['category_id'] for a in gt.img_ann_map[img['id']]}
            assert not present & set(img['neg_category_ids'])
            assert set(img['not_exhaustive_category_ids']) <= present
            all_img_ids.append(img['id'])
        for ann in gt.dataset['annotations']:
            poly = ann['segmentation'][0]
            assert len(ann['segmentation']) == 1
            assert len(poly) >= 6 and len(poly) % 2 == 0
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
            assert ann['iscrowd'] == 0 and 0 < ann['area'] <= w * h
            # the rasterised polygon fills its box (within 1 px) and the
            # mask area is close to the polygon area
            rle = gt.ann_to_rle(ann)
            rx, ry, rw, rh = mask_utils.toBbox(rle).tolist()
            assert abs(rx - x) <= 1 and abs(ry - y) <= 1
            assert abs(rw - w) <= 1 and abs(rh - h) <= 1
            assert abs(mask_utils.area(rle) - ann['area']) <= \
                0.25 * ann['area'] + 4
            all_ann_ids.append(ann['id'])
        assert any(img['not_exhaustive_category_ids']
                   for img in gt.dataset['images'])
        assert any(img['neg_category_ids'] for img in gt.dataset['images'])
    assert len(set(all_img_ids)) == len(all_img_ids) == 32
    assert len(set(all_ann_ids)) == len(all_ann_ids)


def test_lvis_long_tailed_frequencies(toy_lvis):
    with open(toy_lvis['train_json']) as f:
        train = json.load(f)
    with open(toy_lvis['val_json']) as f:
        val = json.load(f)
    assert train['categories'] == val['categories']
    imgs = {c: set() for c in range(1, 9)}
    inst = dict.fromkeys(range(1, 9), 0)
    for ann in train['annotations']:
        imgs[ann['category_id']].add(ann['image_id'])
        inst[ann['category_id']] += 1
    for cat in train['categories']:
        assert cat['image_count'] == len(imgs[cat['id']])
        assert cat['instance_count'] == inst[cat['id']]
        assert cat['frequency'] == frequency_letter(cat['image_count'])
        assert {'name', 'synonyms', 'def', 'synset'} <= set(cat)
    # see test_frequency_letters_and_design
    assert [c['image_count'] for c in train['categories']] == \
        [14, 7, 6, 5, 4, 3, 2, 1]
    assert [c['frequency'] for c in train['categories']] == \
        ['f', 'f', 'c', 'c', 'c', 'c', 'r', 'r']
    counts = toy_lvis['instance_counts']
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    # every category appears in val: max(1, round(k * 8 / 24))
    val_cats = {ann['category_id'] for ann in val['annotations']}
    assert val_cats == set(range(1, 9))
    assert toy_lvis['val_image_counts'] == [5, 2, 2, 2, 1, 1, 1, 1]


def test_lvis_instances_sit_on_painted_digits(toy_lvis):
    from lvis import LVIS
    gt = LVIS(toy_lvis['train_json'])
    img_info = gt.load_imgs([1])[0]
    rel = img_info['coco_url'][len(COCO_URL_PREFIX):]
    bright = np.asarray(
        Image.open(osp.join(toy_lvis['root'], rel)), dtype=float).mean(axis=2)
    inside = np.zeros(bright.shape, dtype=bool)
    for ann in gt.img_ann_map[1]:
        inside |= gt.ann_to_mask(ann).astype(bool)
    assert bright[inside].mean() > bright[~inside].mean() + 30


def test_lvis_deterministic_and_checks(tmp_path):
    kw = dict(num_classes=3, num_train=7, num_val=2, image_size=32, seed=5)
    a = make_lvis(str(tmp_path / 'a'), **kw)
    b = make_lvis(str(tmp_path / 'b'), **kw)
    _same_tree(a['root'], b['root'])
    assert a['frequencies'] == ['f', 'c', 'r']
    with pytest.raises(ValueError, match='num_train'):
        make_lvis(str(tmp_path / 'c'), num_train=6)
    with pytest.raises(ValueError, match='num_classes'):
        make_lvis(str(tmp_path / 'c'), num_classes=2)
    with pytest.raises(ValueError, match='instance_size'):
        make_lvis(str(tmp_path / 'c'), instance_size=(0.5, 0.2))


def test_lvis_min_val_images_floor_keeps_the_training_split(tmp_path):
    kw = dict(num_classes=8, num_train=64, num_val=32, seed=3)
    a = make_lvis(str(tmp_path / 'a'), **kw)
    b = make_lvis(str(tmp_path / 'b'), min_val_images=4, **kw)
    # train counts [38, 7, 6, 5, 4, 3, 2, 1]; val round(k * 32 / 64):
    # [19, 4, 3, 3, 2, 2, 1, 1] -> floor 4: [19, 4, 4, 4, 4, 4, 4, 4]
    assert a['val_image_counts'] == [19, 4, 3, 3, 2, 2, 1, 1]
    assert b['val_image_counts'] == [19, 4, 4, 4, 4, 4, 4, 4]
    # the training split (generated first) is byte-identical
    with open(a['train_json'], 'rb') as fa, open(b['train_json'], 'rb') as fb:
        assert fa.read() == fb.read()
    with pytest.raises(ValueError, match='min_val_images'):
        make_lvis(str(tmp_path / 'c'), min_val_images=0)
