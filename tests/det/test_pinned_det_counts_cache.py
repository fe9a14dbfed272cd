"""Pinned count cache, defaults and CLI of lt_mm.det.counts, found unguarded
by a mutation audit (the readers' errors and label order are pinned in
test_pinned_counts.py): the json cache is keyed by the json's content and
the reader settings (a stale cache after the annotations change was not
caught), the ``source='dataset'`` cache (written, reused, invalidated,
off), images as the default unit everywhere, LVIS splits from image counts
whatever the unit, partial frequency letters, the progress bar, and
``main`` (``python tools/lvis_counts.py``).

Every json is written here by hand (tiny COCO / LVIS files in tmp_path);
the expected counts are in comments.
"""
import json
import os.path as osp

import pytest

from lt_mm.core.stats import (CACHE_FORMAT, ClassStats, fingerprint_files,
                              lvis_splits)
from lt_mm.det.counts import (class_stats_from_dataset, lvis_class_stats, main,
                              read_det_counts, resolve_det_counts)
from tests.det.test_pinned_counts import (_COCO_ANNS, _COCO_CATS, _coco_cfg,
                                          _write)
from tests.engine.test_samplers import ToyDetDataset


@pytest.fixture
def train_json(tmp_path):
    # categories 7 'b', 3 'a'; instances b = 3, a = 1; images b = 2, a = 1
    return _write(tmp_path / 'train.json', _COCO_CATS, _COCO_ANNS)


def _cache(json_path, unit):
    return osp.join(osp.dirname(json_path), f'train_class_stats_{unit}.json')


def _fake_cache(json_path, cache, params, counts):
    ClassStats(
        counts=counts,
        unit=params.get('unit', 'images'),
        extra=dict(
            cache=CACHE_FORMAT, sha1=fingerprint_files(json_path,
                                                       params))).save(cache)


# ------------------------------------------------------------- json cache
def test_json_cache_written_and_invalidated_by_a_content_change(
        train_json, tmp_path):
    st = lvis_class_stats(train_json, 'instances')
    assert st.counts == [3.0, 1.0]
    assert st.dataset == 'train.json' and st.extra['source'] == train_json
    cache = _cache(train_json, 'instances')
    assert osp.isfile(cache) and st.extra['sha1']
    # one more 'a' in image 2: instances a = 2 (never the stale 1)
    _write(tmp_path / 'train.json', _COCO_CATS, _COCO_ANNS + [(2, 3)])
    assert lvis_class_stats(train_json, 'instances').counts == [3.0, 2.0]
    # images: a in images 1 and 2 = 2, in its own file
    assert lvis_class_stats(train_json).counts == [2.0, 2.0]
    assert osp.isfile(_cache(train_json, 'images'))


JSON_KEY = dict(reader='det.json', unit='instances', order='file')


@pytest.mark.parametrize(
    'params',
    [
        dict(reader='det.json', unit='instances'),  # id-sorted reader
        dict(reader='det.json', unit='images', order='file'),
        dict(unit='instances', order='file'),
        dict(reader='det.dataset', unit='instances', order='file'),
    ])
def test_json_cache_of_other_settings_recomputed(train_json, params):
    cache = _cache(train_json, 'instances')
    _fake_cache(train_json, cache, params, [9, 9])
    assert lvis_class_stats(train_json, 'instances').counts == [3.0, 1.0]
    # the reader's own key: the (tampered) cache is a hit
    _fake_cache(train_json, cache, JSON_KEY, [9, 9])
    assert lvis_class_stats(train_json, 'instances').counts == [9.0, 9.0]


def test_json_explicit_cache_file_keeps_units_apart(train_json, tmp_path):
    # one explicit path for both units: each call recomputes its own unit
    cache = str(tmp_path / 'mine.json')
    assert lvis_class_stats(
        train_json, 'images', cache_file=cache).counts == [2.0, 1.0]
    assert osp.isfile(cache)
    assert not osp.exists(_cache(train_json, 'images'))
    assert lvis_class_stats(
        train_json, 'instances', cache_file=cache).counts == [3.0, 1.0]
    assert lvis_class_stats(
        train_json, 'images', cache_file=cache).counts == [2.0, 1.0]


def test_images_are_the_default_unit(train_json):
    # images b = 2, a = 1 (instances would be 3, 1)
    assert lvis_class_stats(train_json, cache_file=False).counts == [2.0, 1.0]
    assert read_det_counts(train_json, cache_file=False).counts == [2.0, 1.0]
    st = read_det_counts(train_json, None, cache_file=False)
    assert st.counts == [2.0, 1.0] and st.unit == 'images'
    # cache_file=False: nothing written next to the json
    assert not osp.exists(_cache(train_json, 'images'))


def test_relative_json_path_stored_absolute(train_json, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    st = lvis_class_stats('train.json', cache_file=False)
    assert st.extra['source'] == train_json and st.dataset == 'train.json'


def test_resolve_errors_name_the_component(train_json):
    with pytest.raises(ValueError, match='^GRWLoss: .*has 2 categories'):
        resolve_det_counts(
            train_ann_file=train_json, num_classes=3, what='GRWLoss')


# ------------------------------------------------------ counting details
def test_images_counted_per_image_not_per_annotation_id(tmp_path):
    # three 'b' boxes in image 2 (annotation ids 1..3): images b = 1,
    # instances b = 3
    path = _write(tmp_path / 'one.json', [dict(id=7, name='b')],
                  [(2, 7), (2, 7), (2, 7)])
    assert lvis_class_stats(path, 'images', cache_file=False).counts == [1.0]
    assert lvis_class_stats(
        path, 'instances', cache_file=False).counts == [3.0]


def test_lvis_count_fields_follow_the_file_order(tmp_path):
    # categories 9, 2 (not sorted): counts follow the file, not the ids
    # (instance_count = 2 * image_count)
    cats = [
        dict(id=i, name=n, image_count=k, instance_count=2 * k, frequency=f)
        for i, n, k, f in ((9, 'n', 4, 'r'), (2, 'm', 40, 'c'))
    ]
    path = _write(tmp_path / 'lvis.json', cats)
    st = lvis_class_stats(path, 'images', cache_file=False)
    assert st.counts == [4.0, 40.0] and st.names == ['n', 'm']
    assert st.extra['category_ids'] == [9, 2]
    assert lvis_class_stats(
        path, 'instances', cache_file=False).counts == [8.0, 80.0]


def test_partial_frequency_letters_fall_back_to_image_counts(tmp_path):
    # 'y' has no letter: splits from the image counts (50 -> common,
    # 5 -> rare) and no frequency list; a letter outside r/c/f likewise
    cats = [
        dict(id=1, name='x', image_count=50, frequency='f'),
        dict(id=2, name='y', image_count=5),
    ]
    path = _write(tmp_path / 'part.json', cats)
    st = lvis_class_stats(path, 'images', cache_file=False)
    assert st.splits == lvis_splits(image_counts=[50, 5])
    assert st.splits['common'] == [0] and st.splits['rare'] == [1]
    assert st.extra['frequency'] is None
    cats[1]['frequency'] = 'q'
    path = _write(tmp_path / 'odd.json', cats)
    st = lvis_class_stats(path, 'images', cache_file=False)
    assert st.splits == lvis_splits(image_counts=[50, 5])
    assert st.extra['frequency'] == ['f', 'q']


# --------------------------------------------------------- source=dataset
def _dataset(tmp_path, anns, classes=('a', 'b')):
    # the CocoDataset config of test_pinned_counts, other annotations
    cfg = _coco_cfg(tmp_path, classes)
    _write(tmp_path / 'train.json',
           [dict(id=3, name='a'), dict(id=7, name='b')], anns)
    return cfg


# eleven 'a' boxes in image 1, one 'b' in image 2: instances [11, 1],
# images [1, 1] -> both rare (<= 10 images) whatever the unit
_ELEVEN = [(1, 3)] * 11 + [(2, 7)]


def test_dataset_splits_from_image_counts_and_default_unit(tmp_path):
    cfg = _dataset(tmp_path, _ELEVEN)
    st = class_stats_from_dataset(cfg, 'instances', cache_file=False)
    assert st.counts == [11.0, 1.0] and st.dataset == 'train.json'
    assert st.splits == lvis_splits(image_counts=[1, 1])
    assert st.splits['rare'] == [0, 1]
    # default unit / None: images
    assert class_stats_from_dataset(cfg, cache_file=False).counts == [1.0, 1.0]
    st = read_det_counts(cfg, None, cache_file=False, source='dataset')
    assert st.counts == [1.0, 1.0] and st.unit == 'images'


def test_dataset_cache_written_reused_and_invalidated(tmp_path):
    cfg = _dataset(tmp_path, _ELEVEN)
    json_path = str(tmp_path / 'train.json')
    cache = _cache(json_path, 'instances')
    assert read_det_counts(
        cfg, 'instances', source='dataset').counts == [11.0, 1.0]
    assert osp.isfile(cache)
    d = json.loads(open(cache).read())
    d['counts'] = [9, 9]
    with open(cache, 'w') as f:
        f.write(json.dumps(d))
    # hit: the same json and config (keys in another order, and
    # cache_file=True = the default cache)
    assert read_det_counts(
        dict(reversed(list(cfg.items()))), 'instances',
        source='dataset').counts == [9.0, 9.0]
    assert class_stats_from_dataset(
        cfg, 'instances', cache_file=True).counts == [9.0, 9.0]
    # the json changes (one more 'b' in image 1): recomputed -> b = 2
    _dataset(tmp_path, _ELEVEN + [(1, 7)])
    assert read_det_counts(
        cfg, 'instances', source='dataset').counts == [11.0, 2.0]
    # another config (class a only): recomputed -> [11]
    only_a = _dataset(tmp_path, _ELEVEN, ('a', ))
    assert read_det_counts(
        only_a, 'instances', source='dataset').counts == [11.0]


def test_dataset_explicit_cache_file_keeps_units_apart(tmp_path):
    cfg = _dataset(tmp_path, _ELEVEN)
    mine = str(tmp_path / 'mine.json')
    assert read_det_counts(
        cfg, 'images', cache_file=mine, source='dataset').counts == [1.0, 1.0]
    assert read_det_counts(
        cfg, 'instances', cache_file=mine,
        source='dataset').counts == [11.0, 1.0]


def test_dataset_cache_off_and_explicit(tmp_path):
    cfg = _dataset(tmp_path, _ELEVEN)
    json_path = str(tmp_path / 'train.json')
    st = read_det_counts(cfg, 'images', cache_file=False, source='dataset')
    assert st.counts == [1.0, 1.0] and 'sha1' not in st.extra
    assert not osp.exists(_cache(json_path, 'images'))
    mine = str(tmp_path / 'mine.json')
    read_det_counts(cfg, 'images', cache_file=mine, source='dataset')
    assert osp.isfile(mine)
    assert not osp.exists(_cache(json_path, 'images'))


def test_dataset_without_annotation_file_counted_uncached(tmp_path):
    # a dataset that reads no file (its type given as the class):
    # instances a = 1, b = 3, c = 0; images a = 1, b = 2, c = 0
    cfg = dict(
        type=ToyDetDataset,
        instance_labels=[[0, 1, 1], [1]],
        data_root=str(tmp_path))
    st = class_stats_from_dataset(cfg, 'instances')
    assert st.counts == [1.0, 3.0, 0.0] and st.names == ['a', 'b', 'c']
    assert st.extra['image_counts'] == [1, 2, 0]
    assert st.dataset is None and st.extra['source'] is None
    assert 'sha1' not in st.extra


def test_dataset_error_names_the_json(tmp_path):
    cfg = _dataset(tmp_path, _ELEVEN)
    with pytest.raises(ValueError, match=r'train\.json has 2 classes'):
        read_det_counts(cfg, 'images', 3, cache_file=False, source='dataset')


def test_lazy_dataset_still_checks_its_categories(tmp_path):
    # lazy_init: the category ids exist only after full_init; 'zz' is no
    # category of the json (1 category id for 2 classes)
    cfg = dict(_dataset(tmp_path, _ELEVEN, ('a', 'zz')), lazy_init=True)
    with pytest.raises(
            ValueError,
            match='has 1 categories but the '
            'dataset metainfo lists 2 classes'):
        read_det_counts(cfg, 'images', cache_file=False, source='dataset')


def _own_output(out):
    # what is left of stdout without pycocotools' loading messages
    coco = ('loading annotations into memory...', 'creating index...',
            'index created!')
    return [
        line for line in out.splitlines()
        if line not in coco and not line.startswith('Done (t=')
    ]


def test_progress_output_only_on_request(tmp_path, capfd):
    cfg = _dataset(tmp_path, _ELEVEN)
    read_det_counts(cfg, 'images', cache_file=False, source='dataset')
    class_stats_from_dataset(cfg, 'images', cache_file=False)
    assert _own_output(capfd.readouterr().out) == []
    # progress=True: the bar (mmengine's, to the interpreter's stdout),
    # then lt_mm ends its line
    read_det_counts(
        cfg, 'images', cache_file=False, source='dataset', progress=True)
    assert _own_output(capfd.readouterr().out) != []


# ----------------------------------------------------------------- main
def test_main_writes_next_to_the_json_without_a_cache_key(train_json, capsys):
    main([train_json])  # default unit images
    out = _cache(train_json, 'images')
    st = ClassStats.load(out)
    assert st.counts == [2.0, 1.0] and st.unit == 'images'
    assert 'sha1' not in st.extra
    assert capsys.readouterr().out.strip() == f'2 classes (images) -> {out}'


def test_main_out_and_unit(train_json, tmp_path, capsys):
    out = str(tmp_path / 'sub' / 'stats.json')
    main([train_json, '--unit', 'instances', '--out', out])
    st = ClassStats.load(out)
    assert st.counts == [3.0, 1.0] and st.unit == 'instances'
    assert capsys.readouterr().out.strip() == (
        f'2 classes (instances) -> {out}')
    # nothing written next to the json
    assert not osp.exists(_cache(train_json, 'instances'))
    main([train_json, '--unit', 'instances'])  # default out of the unit
    assert ClassStats.load(_cache(train_json,
                                  'instances')).counts == [3.0, 1.0]


def test_tool_writes_the_counts_as_a_user_runs_it(train_json, run_tool):
    # `python tools/lvis_counts.py` (configs/lvis/README.md): the same main,
    # in its own process, without runpy's warning of `python -m`
    proc = run_tool('lvis_counts.py', train_json, '--unit', 'instances')
    out = _cache(train_json, 'instances')
    assert ClassStats.load(out).counts == [3.0, 1.0]  # b 3, a 1 instances
    assert f'2 classes (instances) -> {out}' in proc.stdout
    assert 'Warning' not in proc.stdout + (proc.stderr or '')
