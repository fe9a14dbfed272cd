"""Tests of lt_mm.core.stats: the class-statistics format and split rules."""
import json

import pytest

from lt_mm.core.stats import (FORMAT, ClassStats, ade20k_class_stats,
                              compute_splits, load_class_stats, lvis_splits,
                              ratio_splits, resolve_counts, shot_splits)


def _stats(**kw):
    d = dict(
        counts=[120.0, 50.0, 3.0],
        unit='images',
        names=['cat', 'dog', 'emu'],
        splits={
            'many': [0],
            'medium': [1],
            'few': [2]
        },
        dataset='toy',
        extra={'note': 'hand-made'})
    d.update(kw)
    return ClassStats(**d)


# --------------------------------------------------------------------------
# format, save / load
# --------------------------------------------------------------------------
def test_round_trip(tmp_path):
    st = _stats()
    assert st.num_classes == 3
    path = tmp_path / 'sub' / 'stats.json'
    st.save(path)
    raw = json.loads(path.read_text())
    assert raw['format'] == FORMAT == 'lt_mm.class_stats/v1'
    assert raw['num_classes'] == 3
    assert raw['counts'] == [120.0, 50.0, 3.0]
    assert raw['splits'] == {'many': [0], 'medium': [1], 'few': [2]}
    back = ClassStats.load(path)
    assert back == st
    assert ClassStats.from_dict(st.to_dict()) == st
    assert load_class_stats(str(path), num_classes=3, unit='images') == st


def test_tensor_and_tuple_inputs_are_normalised():
    import torch
    st = ClassStats(
        counts=torch.tensor([2, 1]),
        unit='instances',
        splits={
            'a': (0, ),
            'b': torch.tensor([1])
        })
    assert st.counts == [2.0, 1.0]
    assert st.splits == {'a': [0], 'b': [1]}
    assert st.names is None and st.extra == {} and st.dataset is None


def test_missing_file_says_how_to_create_it(tmp_path):
    missing = tmp_path / 'nope.json'
    with pytest.raises(FileNotFoundError, match='nope.json') as e:
        load_class_stats(missing)
    assert 'tools/class_stats.py CONFIG --out PATH' in str(e.value)


def test_wrong_format_and_bad_json(tmp_path):
    p = tmp_path / 'other.json'
    p.write_text(json.dumps({'train_shots': [1, 2]}))
    with pytest.raises(ValueError, match='format=None'):
        load_class_stats(p)
    p.write_text('{not json')
    with pytest.raises(ValueError, match='not valid JSON'):
        load_class_stats(p)
    d = _stats().to_dict()
    d['num_classes'] = 4
    with pytest.raises(ValueError, match='num_classes=4'):
        ClassStats.from_dict(d)
    d = _stats().to_dict()
    del d['unit']
    with pytest.raises(ValueError, match="'unit'"):
        ClassStats.from_dict(d)
    with pytest.raises(ValueError, match='JSON object'):
        ClassStats.from_dict([1, 2])


@pytest.mark.parametrize('kw, match', [
    (dict(counts=[]), 'no counts'),
    (dict(counts=[1.0, float('nan'), 2.0]), r'classes \[1\]'),
    (dict(counts=[1.0, float('inf'), 2.0]), 'finite'),
    (dict(counts=[1.0, -1.0, 2.0]), 'non-negative'),
    (dict(counts=['a', 1, 2]), 'list of numbers'),
    (dict(counts='123'), 'list of per-class numbers'),
    (dict(unit='boxes'), "unit='boxes' is not supported"),
    (dict(names=['cat', 'dog']), 'names has 2 entries'),
    (dict(names=['cat', 'cat', 'emu']), r"duplicated: \['cat'\]"),
    (dict(names=['cat', 2, 'emu']), 'strings'),
    (dict(splits={'few': [3]}), r'\[3\] out of range \[0, 3\)'),
    (dict(splits={'few': [-1]}), 'out of range'),
    (dict(splits={
        'a': [0, 1],
        'b': [1]
    }), 'disjoint'),
    (dict(splits={'a': [0, 0]}), 'disjoint'),
    (dict(splits={'a': [0.5]}), 'int class indices'),
    (dict(splits={'a': 0}), 'int class indices'),
    (dict(splits=[0, 1]), 'splits must be a dict'),
    (dict(extra=[1]), 'extra must be a dict'),
])
def test_validation_errors_at_construction(kw, match):
    with pytest.raises(ValueError, match=match):
        _stats(**kw)


def test_validate_requirements():
    st = _stats()
    assert st.validate(num_classes=3, unit='images') is st
    with pytest.raises(ValueError, match='num_classes=4'):
        st.validate(num_classes=4)
    with pytest.raises(ValueError) as e:
        st.validate(unit='pixels')
    msg = str(e.value)
    assert "counts are in 'images'" in msg
    assert "needs 'pixels' (per-pixel frequencies)" in msg
    assert 'tools/class_stats.py' in msg
    with pytest.raises(ValueError, match='not supported'):
        st.validate(unit='voxels')


def test_save_rejects_non_json_extra(tmp_path):
    st = _stats(extra={'obj': object()})
    with pytest.raises(ValueError, match='JSON-serialisable'):
        st.save(tmp_path / 'x.json')


# --------------------------------------------------------------------------
# resolve_counts
# --------------------------------------------------------------------------
def test_resolve_counts_sources(tmp_path):
    path = tmp_path / 's.json'
    _stats().save(path)
    assert resolve_counts(counts=[3, 2, 1]) == [3.0, 2.0, 1.0]
    assert resolve_counts(stats_file=path) == [120.0, 50.0, 3.0]
    assert resolve_counts(
        stats_file=str(path), num_classes=3,
        unit='images') == [120.0, 50.0, 3.0]
    assert resolve_counts(counts=_stats(), unit='images') == [120.0, 50.0, 3.0]
    with pytest.raises(ValueError, match='not both'):
        resolve_counts(counts=[1, 2, 3], stats_file=path)
    with pytest.raises(ValueError, match='counts=\\[...\\] or stats_file'):
        resolve_counts()
    with pytest.raises(ValueError, match='num_classes=4'):
        resolve_counts(stats_file=path, num_classes=4)
    with pytest.raises(ValueError, match="needs 'pixels'"):
        resolve_counts(stats_file=path, unit='pixels')
    with pytest.raises(ValueError, match='num_classes=2'):
        resolve_counts(counts=[1, 2, 3], num_classes=2)
    with pytest.raises(ValueError, match='zero count'):
        resolve_counts(counts=[1, 0, 3])
    assert resolve_counts(counts=[1, 0, 3], allow_zero=True) == [1., 0., 3.]
    with pytest.raises(ValueError, match='looks like a path'):
        resolve_counts(counts=str(path))
    with pytest.raises(FileNotFoundError):
        resolve_counts(stats_file=tmp_path / 'missing.json')


def test_stats_file_errors_name_the_file(tmp_path):
    # issue #10: a wrong-length / wrong-unit statistics file is named
    path = tmp_path / 'other_dataset.json'
    _stats().save(path)
    with pytest.raises(ValueError) as e:
        load_class_stats(path, num_classes=4)
    assert f'stats file {path}:' in str(e.value)
    assert 'have 3 classes' in str(e.value) and 'num_classes=4' in str(e.value)
    with pytest.raises(ValueError, match=f"{path}: counts are in 'images'"):
        resolve_counts(stats_file=str(path), unit='pixels')


def test_check_range_refuses_bools():
    # issue #10: alpha=True was read as alpha=1.0
    from lt_mm.core.checks import check_range
    assert check_range('alpha', 1, 0.0) == 1.0
    with pytest.raises(ValueError, match='alpha=True is a bool'):
        check_range('alpha', True, 0.0)
    with pytest.raises(ValueError, match='rho=False is a bool'):
        check_range('rho', False)


# --------------------------------------------------------------------------
# split rules, boundaries by hand
# --------------------------------------------------------------------------
def test_shot_splits_boundaries():
    # ImageNet-LT: many > 100, few < 20, medium 20..100 (both inclusive).
    counts = [101, 100, 20, 19, 1280, 5, 0]
    assert shot_splits(counts) == {
        'many': [0, 4],
        'medium': [1, 2],
        'few': [3, 5, 6]
    }
    # custom thresholds: many > 10, few < 5
    assert shot_splits([11, 10, 5, 4], many_thr=10, few_thr=5) == {
        'many': [0],
        'medium': [1, 2],
        'few': [3]
    }
    with pytest.raises(ValueError, match='few_thr must not exceed'):
        shot_splits(counts, many_thr=10, few_thr=20)
    with pytest.raises(ValueError, match='negative'):
        shot_splits([1, -1])


def test_ratio_splits_boundaries():
    # counts sum to 10000 -> ratios 0.0101, 0.01, 0.0011, 0.001, 0.0009, ...
    counts = [101, 100, 11, 10, 9, 9769]
    assert sum(counts) == 10000
    assert ratio_splits(counts) == {
        'head': [0, 5],  # 0.0101 > 0.01, 0.9769
        'body': [1, 2],  # 0.01 <= 0.01 (body), 0.0011 > 0.001
        'tail': [3, 4],  # 0.001 <= 0.001, 0.0009
    }
    # explicit total: ratios are n / 1000 -> 0.101, 0.1, 0.011, 0.01, ...
    assert ratio_splits([0.2, 0.05, 0.01], head_thr=0.1, tail_thr=0.01) == {
        # sum 0.26: 0.769 head, 0.192 head, 0.0385 body
        'head': [0, 1],
        'body': [2],
        'tail': []
    }
    assert ratio_splits([0.2, 0.05, 0.01],
                        head_thr=0.1,
                        tail_thr=0.01,
                        total=1.0) == {
                            'head': [0],  # 0.2 > 0.1
                            'body': [1],  # 0.01 < 0.05 <= 0.1
                            'tail': [2]  # 0.01 <= 0.01
                        }
    with pytest.raises(ValueError, match='tail_thr must not exceed'):
        ratio_splits(counts, head_thr=0.001, tail_thr=0.01)
    with pytest.raises(ValueError, match='total'):
        ratio_splits([0, 0])


def test_lvis_splits_boundaries():
    # rare 1-10, common 11-100, frequent > 100 training images
    counts = [1, 10, 11, 100, 101, 0]
    assert lvis_splits(image_counts=counts) == {
        'rare': [0, 1, 5],
        'common': [2, 3],
        'frequent': [4]
    }
    assert lvis_splits(frequency=['f', 'r', 'c', 'r']) == {
        'rare': [1, 3],
        'common': [2],
        'frequent': [0]
    }
    assert lvis_splits(
        image_counts=[2, 3, 6], rare_max=2, common_max=5) == {
            'rare': [0],
            'common': [1],
            'frequent': [2]
        }
    with pytest.raises(ValueError, match='exactly one'):
        lvis_splits()
    with pytest.raises(ValueError, match='exactly one'):
        lvis_splits(image_counts=[1], frequency=['r'])
    with pytest.raises(ValueError, match=r"frequency\[1\]='x'"):
        lvis_splits(frequency=['r', 'x'])
    with pytest.raises(ValueError, match='common_max'):
        lvis_splits(image_counts=[1], rare_max=10, common_max=5)


def test_compute_splits_dispatch():
    counts = [101, 100, 19]
    assert compute_splits(counts) == shot_splits(counts)
    assert compute_splits(
        counts, 'shot', many_thr=99) == {
            'many': [0, 1],
            'medium': [],
            'few': [2]
        }
    assert compute_splits(counts, 'ratio') == ratio_splits(counts)
    # lvis: 101 > 100 frequent; 100 and 19 are in 11..100 -> common
    assert compute_splits(counts, 'lvis') == {
        'rare': [],
        'common': [1, 2],
        'frequent': [0]
    }
    assert compute_splits([5, 50, 500], 'lvis') == {
        'rare': [0],
        'common': [1],
        'frequent': [2]
    }
    with pytest.raises(ValueError, match="rule='iou'"):
        compute_splits(counts, 'iou')
    # ClassStats: pixels refuse shot / lvis unless image counts are given
    px = ClassStats(counts=[0.5, 0.3], unit='pixels')
    with pytest.raises(ValueError, match="'pixels'"):
        compute_splits(px, 'shot')
    with pytest.raises(ValueError, match="'image_counts' nor 'frequency'"):
        compute_splits(px, 'lvis')
    px2 = ClassStats(
        counts=[0.5, 0.3], unit='pixels', extra={'image_counts': [200, 5]})
    assert compute_splits(px2, 'shot') == {
        'many': [0],
        'medium': [],
        'few': [1]
    }
    inst = ClassStats(
        counts=[900, 40], unit='instances', extra={'frequency': ['f', 'r']})
    assert compute_splits(inst, 'lvis') == {
        'rare': [1],
        'common': [],
        'frequent': [0]
    }
    # ratio with extra['total']: 0.5/1 head, 0.005/1 body, 0.0005/1 tail
    r = ClassStats(
        counts=[0.5, 0.005, 0.0005], unit='pixels', extra={'total': 1.0})
    assert compute_splits(r, 'ratio') == {
        'head': [0],
        'body': [1],
        'tail': [2]
    }


def test_compute_splits_pixel_rule():
    # pixel rule on C = 4 classes: head r > 1.5 / 4 = 0.375, tail
    # r <= 0.15 / 4 = 0.0375, r = n / sum(n) with sum = 100:
    # 0.60 head, 0.30 body, 0.08 body, 0.02 tail
    counts = [60, 30, 8, 2]
    expected = {'head': [0], 'body': [1, 2], 'tail': [3]}
    assert compute_splits(counts, 'pixel') == expected
    assert compute_splits(ClassStats(counts, unit='pixels'),
                          'pixel') == expected
    # image counts with the pixels in extra: the pixels decide
    im = ClassStats([1, 1, 1, 1],
                    unit='images',
                    extra={'pixel_counts': counts})
    assert compute_splits(im, 'pixel') == expected
    # head_share=2 -> head r > 2 / 4 = 0.5: 0.60 only; tail_share=0.4 ->
    # tail r <= 0.4 / 4 = 0.1: 0.08 and 0.02; body: 0.30
    assert compute_splits(
        counts, 'pixel', head_share=2.0, tail_share=0.4) == {
            'head': [0],
            'body': [1],
            'tail': [2, 3]
        }
    with pytest.raises(ValueError, match="no 'pixel_counts'"):
        compute_splits(ClassStats([1, 2], unit='images'), 'pixel')


# --------------------------------------------------------------------------
# ADE20K (DisAlign Table 16)
# --------------------------------------------------------------------------
MMSEG_ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed',
    'windowpane', 'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door',
    'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water',
    'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field',
    'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard',
    'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace',
    'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill',
    'bench', 'countertop', 'stove', 'palm', 'kitchen island', 'computer',
    'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel',
    'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    'television receiver', 'airplane', 'dirt track', 'apparel', 'pole', 'land',
    'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage',
    'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall',
    'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step',
    'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake',
    'dishwasher', 'screen', 'blanket', 'sculpture', 'hood', 'sconce', 'vase',
    'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate',
    'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock',
    'flag')


def test_ade20k_stats_table16():
    st = ade20k_class_stats()
    assert st.dataset == 'ade20k' and st.unit == 'pixels'
    assert st.num_classes == 150
    assert tuple(st.names) == MMSEG_ADE20K_CLASSES
    assert st.splits == {
        'head': list(range(0, 20)),
        'body': list(range(20, 75)),
        'tail': list(range(75, 150))
    }
    c = dict(zip(st.names, st.counts))
    # spot checks against Table 16, one per column group and each boundary
    assert c['wall'] == 0.1576 and c['chair'] == 0.0103
    assert c['car'] == 0.0098 and c['computer'] == 0.0011
    assert c['swivel chair'] == 0.001 and c['flag'] == 0.0002
    assert c['armchair'] == 0.0044 and c['field'] == 0.004
    assert c['television receiver'] == 0.0007 and c['food'] == 0.0005
    assert abs(sum(st.counts) - 0.9271) < 1e-9
    # ratios are fractions of all pixels: do not renormalise
    assert st.extra['total'] == 1.0
    sp = ratio_splits(st.counts, total=1.0)
    assert [len(sp[k]) for k in ('head', 'body', 'tail')] == [20, 55, 75]
    assert sp == st.splits
    assert compute_splits(st, 'ratio') == st.splits
    # renormalising by the sum (0.9271) would move 'car' (0.0098 / 0.9271 =
    # 0.01057 > 0.01) into head and 'swivel chair' out of tail
    sp_norm = ratio_splits(st.counts)
    assert 20 in sp_norm['head'] and 75 in sp_norm['body']
    assert load_class_stats('builtin:ade20k', 150, 'pixels') == st
    with pytest.raises(ValueError, match='builtin:cityscapes is unknown'):
        load_class_stats('builtin:cityscapes')


@pytest.mark.parametrize(
    'key', ['image_counts', 'instance_counts', 'pixel_counts', 'frequency'])
def test_per_class_extra_of_another_length_is_refused(key):
    # 3 classes, 5 values: split rules read these lists as per-class
    value = ['r'] * 5 if key == 'frequency' else [1, 2, 3, 4, 5]
    with pytest.raises(
            ValueError, match=rf"extra\['{key}'\].*5 entries.*counts has 3"):
        _stats(extra={key: value}).validate()
    with pytest.raises(ValueError, match=rf"extra\['{key}'\].*7"):
        _stats(extra={key: 7}).validate()
    ok = ['r', 'c', 'f'] if key == 'frequency' else [4, 2, 1]
    assert _stats(extra={key: ok}).validate().extra[key] == ok
