"""tools/class_stats.py: counts of the three toolboxes against numpy / the
raw annotation files."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from tests.conftest import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'class_stats.py')
SEG_CFG = osp.join(REPO, 'configs', 'quickstart', 'digits_seg_fcn_stage1.py')


@pytest.fixture(scope='module')
def tool():
    return load_script(osp.relpath(TOOL, REPO))


def _load(path):
    with open(path) as f:
        return json.load(f)


def _png_counts(folder, num_classes):
    # ADE20K layout: PNG 0 = other (ignored), PNG c + 1 = class c
    pixels = np.zeros(num_classes, np.int64)
    images = np.zeros(num_classes, np.int64)
    other = total = 0
    files = sorted(glob.glob(osp.join(folder, '*.png')))
    for p in files:
        a = np.asarray(Image.open(p))
        h = np.bincount(a.ravel(), minlength=num_classes + 1)
        pixels += h[1:num_classes + 1]
        images += h[1:num_classes + 1] > 0
        other += h[0]
        total += a.size
    return pixels, images, other, total, len(files)


@pytest.mark.parametrize('split,folder', [('train', 'training'),
                                          ('val', 'validation')])
def test_seg_pixel_counts(tool, data_root, tmp_path, monkeypatch, split,
                          folder):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    out = str(tmp_path / f'{split}.json')
    tool.main([SEG_CFG, '--split', split, '--out', out, '--no-progress'])
    st = _load(out)
    pixels, images, other, total, n = _png_counts(
        osp.join(data_root, 'seg', 'annotations', folder), 10)
    assert st['format'] == 'lt_mm.class_stats/v1'
    assert st['unit'] == 'pixels' and st['num_classes'] == 10
    assert st['names'] == [f'digit_{i}' for i in range(10)]
    assert st['counts'] == pixels.tolist()
    assert st['extra']['image_counts'] == images.tolist()
    assert st['extra']['ignored_pixels'] == other
    assert st['extra']['total'] == total
    assert st['extra']['num_images'] == n
    # 'pixel' rule: share of the labelled pixels n_c / sum(n) vs
    # 1.5 / C = 0.15 (head) and 0.15 / C = 0.015 (tail)
    share = pixels / pixels.sum()
    assert st['extra']['split_rule'] == 'pixel'
    assert st['splits'] == {
        'head': [i for i in range(10) if share[i] > 0.15],
        'body': [i for i in range(10) if 0.015 < share[i] <= 0.15],
        'tail': [i for i in range(10) if share[i] <= 0.015],
    }


def test_seg_bad_labels_and_units(tool, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    out = str(tmp_path / 'x.json')
    # 5 classes, but the label files hold classes 0..9
    with pytest.raises(ValueError, match=r'outside \[0, 5\)'):
        tool.main([
            SEG_CFG, '--out', out, '--no-progress', '--cfg-options',
            "train_dataloader.dataset.metainfo.classes=['a','b','c','d','e']"
        ])
    with pytest.raises(SystemExit, match='--unit instances'):
        tool.main([SEG_CFG, '--out', out, '--unit', 'instances'])
    tool.main([
        SEG_CFG, '--out', out, '--unit', 'images', '--rule', 'none',
        '--no-progress'
    ])
    st = _load(out)
    _, images, _, _, _ = _png_counts(
        osp.join(data_root, 'seg', 'annotations', 'training'), 10)
    assert st['unit'] == 'images' and st['counts'] == images.tolist()
    assert st['splits'] == {}


def test_mmpretrain_image_counts(tool, data_root, tmp_path):
    cls_root = osp.join(data_root, 'cls')
    cfg = tmp_path / 'cls_cfg.py'
    cfg.write_text(
        "default_scope = 'mmpretrain'\n"
        'train_dataloader = dict(dataset=dict(type="CustomDataset", '
        f'data_root={cls_root!r}, ann_file="ImageNet_LT_train.txt", '
        f'classes={osp.join(cls_root, "classes.txt")!r}, '
        'pipeline=[dict(type="LoadImageFromFile")]))\n')
    out = str(tmp_path / 'cls.json')
    tool.main([str(cfg), '--out', out, '--no-progress'])
    st = _load(out)
    with open(osp.join(cls_root, 'ImageNet_LT_train.txt')) as f:
        labels = [int(line.split()[-1]) for line in f if line.strip()]
    counts = np.bincount(labels, minlength=10)
    assert st['unit'] == 'images' and st['counts'] == counts.tolist()
    # shot rule: many > 100, few < 20
    assert st['splits'] == {
        'many': [i for i in range(10) if counts[i] > 100],
        'medium': [i for i in range(10) if 20 <= counts[i] <= 100],
        'few': [i for i in range(10) if counts[i] < 20],
    }


def test_mmdet_instance_and_image_counts(tool, data_root, tmp_path):
    det_root = osp.join(data_root, 'det') + '/'
    ann = _load(osp.join(det_root, 'annotations', 'lvis_v1_train.json'))
    cats = sorted(ann['categories'], key=lambda c: c['id'])
    names = tuple(c['name'] for c in cats)
    text = ("default_scope = 'mmdet'\n"
            'train_dataloader = dict(dataset=dict(type="LVISV1Dataset", '
            f'data_root={det_root!r}, METAINFO'
            'ann_file="annotations/lvis_v1_train.json", '
            'data_prefix=dict(img=""), '
            'pipeline=[dict(type="LoadImageFromFile")]))\n')
    cfg = tmp_path / 'det_cfg.py'
    out = str(tmp_path / 'det.json')
    # without metainfo the dataset has LVIS' 1203 classes: clear error
    cfg.write_text(text.replace('METAINFO', ''))
    with pytest.raises(ValueError, match='has 8 categories but'):
        tool.main([str(cfg), '--out', out, '--no-progress'])
    cfg.write_text(
        text.replace('METAINFO', f'metainfo=dict(classes={names!r}), '))
    tool.main([str(cfg), '--out', out, '--no-progress'])
    st = _load(out)
    assert st['names'] == list(names)
    index = {c['id']: i for i, c in enumerate(cats)}
    inst = np.zeros(len(cats), np.int64)
    per_image = {}
    for a in ann['annotations']:
        inst[index[a['category_id']]] += 1
        per_image.setdefault(a['image_id'], set()).add(index[a['category_id']])
    imgs = np.zeros(len(cats), np.int64)
    for s in per_image.values():
        imgs[list(s)] += 1
    # images by default (LVIS's bins, GRW, the post-hoc N_c rules)
    assert st['unit'] == 'images'
    assert st['counts'] == imgs.tolist()
    assert st['extra']['image_counts'] == imgs.tolist()
    assert st['extra']['instance_counts'] == inst.tolist()
    # lvis rule: the json's own frequency letters, the bins LTLVISMetric
    # reports (the toy scales LVIS's thresholds down)
    letters = [c['frequency'] for c in cats]
    assert st['splits'] == {
        g: [i for i, f in enumerate(letters) if f == g[0]]
        for g in ('rare', 'common', 'frequent')
    }
    # thresholds: the image-count rule, rare <= 10, common <= 100
    tool.main([
        str(cfg), '--out', out, '--no-progress', '--unit', 'instances',
        '--thr', 'rare_max=10', 'common_max=100'
    ])
    st = _load(out)
    assert st['unit'] == 'instances' and st['counts'] == inst.tolist()
    assert st['splits'] == {
        'rare': [i for i in range(len(cats)) if imgs[i] <= 10],
        'common': [i for i in range(len(cats)) if 10 < imgs[i] <= 100],
        'frequent': [i for i in range(len(cats)) if imgs[i] > 100],
    }


def test_make_splits_rules(tool):
    # counting rules are lt_mm.core.stats.compute_splits on the pixel
    # (pixel, ratio) or image (shot, lvis) counts; 4 classes
    res = dict(
        pixels=np.array([60, 30, 8, 2]),
        images=np.array([150, 50, 5, 0]),
        total=200)
    classes = ['a', 'b', 'c', 'd']
    # pixel: r = n / 100 = .6 .3 .08 .02 vs 1.5 / 4 = .375, .15 / 4 = .0375
    assert tool.make_splits('mmseg', 'pixel', classes, res, {}) == ('pixel', {
        'head': [0],
        'body': [1, 2],
        'tail': [3]
    })
    # ratio: r = n / total = .3 .15 .04 .01 vs 1 % (head, strictly above)
    # and 0.1 % (tail): 0.01 is not > 0.01 -> body
    assert tool.make_splits('mmseg', 'ratio', classes, res, {}) == ('ratio', {
        'head': [0, 1, 2],
        'body': [3],
        'tail': []
    })
    # shot on images: 150 > 100 many, 50 medium, 5 and 0 < 20 few
    assert tool.make_splits('mmpretrain', 'auto', classes, res,
                            {}) == ('shot', {
                                'many': [0],
                                'medium': [1],
                                'few': [2, 3]
                            })
    # lvis on images: 5, 0 <= 10 rare; 50 <= 100 common; 150 frequent
    assert tool.make_splits('mmdet', 'auto', classes, res, {}) == ('lvis', {
        'rare': [2, 3],
        'common': [1],
        'frequent': [0]
    })
    assert tool.make_splits('mmdet', 'none', classes, res, {}) == ('none', {})
    with pytest.raises(ValueError, match='--rule ratio needs pixel counts'):
        tool.make_splits('mmpretrain', 'ratio', classes,
                         dict(images=res['images']), {})
