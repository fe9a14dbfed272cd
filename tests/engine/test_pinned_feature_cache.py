"""Pinned by mutation testing of lt_mm.engine.feature_cache (the parts shared
by the cached stage-2 loops), on hand-made caches and small real modules:

* ``CacheWriter`` / ``FeatureCache``: ``meta.json`` fields, the row picked by
  ``gather`` / ``gather_labels`` (one view per row, labels per view or per
  sample), ``num_views`` / ``num_rows`` / ``describe_views``, the refusal of
  inconsistent files, and ``is_complete`` (fingerprint AND format; no or a
  broken ``meta.json``: a half-written cache is never complete; an
  exception inside the writer leaves no cache behind);
* ``view_rows`` and ``class_balanced_views`` without any class by hand;
  ``check_cache_options`` (defaults, integer checks, coercions, adapter
  keys);
* the cache key: ``state_fingerprint`` (names, dtypes, shapes, bytes,
  non-persistent buffers, ``skip``), ``preprocessor_fingerprint`` (type,
  buffers, plain settings inside lists / dicts, not the train / eval mode)
  and ``dataset_fingerprint`` (type, pipeline, the hashed ``keys`` also
  inside wrappers, the repeated images of a ``ClassBalancedDataset``, the
  stamp of any ``*_path`` file, the samples of a serialized dataset);
* ``outputs_match`` at zero scale, at the tolerance, tensor vs. tuple.
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.dataset import (BaseDataset, ClassBalancedDataset, Compose,
                              ConcatDataset)
from torch import nn

from lt_mm.engine.feature_cache import (CacheWriter, FeatureCache,
                                        check_cache_options,
                                        class_balanced_views,
                                        dataset_fingerprint, outputs_match,
                                        preprocessor_fingerprint,
                                        state_fingerprint, view_rows)
from .test_feature_cache import _Tiny

FMT = 'lt_mm.test_cache/v1'


def _write(root, feats, labels, views=None, dtype='float32', fp='fp', **meta):
    """A finished cache of ``feats`` (K, N, ...) and ``labels``."""
    with CacheWriter(str(root), FMT, fp, dtype) as w:
        w.array('feats', feats.shape)[:] = feats
        w.array('labels', labels.shape, labels.dtype)[:] = labels
        if views is not None:
            w.array('views', views.shape, np.int64)[:] = views
        if views is not None:
            meta['sample_views'] = True
        return w.finish(**meta)


def _feats(k, n, d=2):
    # feats[k, i, j] = 100 k + 10 i + j: every row names its view and sample
    return (100 * np.arange(k)[:, None, None] +
            10 * np.arange(n)[None, :, None] +
            np.arange(d)[None, None, :]).astype(np.float32)


def test_writer_and_gather_by_hand(tmp_path):
    root = tmp_path / 'c'
    cache = _write(root, _feats(2, 3), np.array([7, 8, 9]), extra='x')
    assert not any(p.name.startswith('c.tmp') for p in tmp_path.iterdir())
    with open(root / 'meta.json') as f:
        meta = json.load(f)
    assert (meta['format'], meta['fingerprint'], meta['dtype'],
            meta['extra']) == (FMT, 'fp', 'float32', 'x')
    assert 0 <= meta['seconds'] < 600  # the build time
    assert cache.feats.dtype == np.float32
    assert (len(cache), cache.num_views, cache.num_rows) == (3, 2, 6)
    assert cache.sample_views is None and not cache.labels_per_view
    assert cache.describe_views() == '2 view(s)'
    views, idx = np.array([1, 0, 1]), np.array([2, 2, 0])
    x = cache.gather(views, idx)
    assert x.dtype == torch.float32
    # rows (view 1, sample 2), (0, 2), (1, 0): 100 k + 10 i + (0, 1)
    torch.testing.assert_close(
        x, torch.tensor([[120., 121.], [20., 21.], [100., 101.]]))
    # labels per sample: the view does not matter
    np.testing.assert_array_equal(cache.gather_labels(views, idx), [9, 9, 7])
    assert FeatureCache.is_complete(str(root), 'fp', FMT)
    assert not FeatureCache.is_complete(str(root), 'other', FMT)
    assert not FeatureCache.is_complete(str(root), 'fp', FMT + '2')
    # float16 storage, read back as float32
    half = _write(tmp_path / 'h', _feats(1, 2), np.array([0, 1]), None,
                  'float16')
    assert half.feats.dtype == np.float16 and half.meta['dtype'] == 'float16'
    assert half.gather(np.array([0]), np.array([1])).dtype == torch.float32


def test_labels_per_view_and_views_per_sample(tmp_path):
    # K = 3, N = 2; labels (K, N) = 10 k + i; sample 0 has 1 view, 1 has 3
    labels = 10 * np.arange(3)[:, None] + np.arange(2)[None]
    cache = _write(
        tmp_path / 'c',
        _feats(3, 2),
        labels,
        views=np.array([1, 3]),
        labels_per_view=True)
    assert cache.labels_per_view
    np.testing.assert_array_equal(cache.sample_views, [1, 3])
    np.testing.assert_array_equal(
        cache.gather_labels(np.array([2, 0, 1]), np.array([1, 0, 1])),
        [21, 0, 11])
    # rows that hold data: 1 + 3 of K x N = 6
    assert cache.num_rows == 4 and cache.num_views == 3
    assert cache.describe_views() == '1-3 views (4 rows)'


@pytest.mark.parametrize(
    'feats, labels, views, per_view',
    [
        (_feats(2, 3), np.zeros(4, np.int64), None, False),  # N 3 vs 4 labels
        (_feats(2, 3)[:, :, 0], np.zeros(3, np.int64), None, False),  # 2-D
        (_feats(2, 3), np.zeros((1, 3), np.int64), None, True),  # K 2 vs 1
        (_feats(2, 3), np.zeros((2, 4), np.int64), None, True),  # N 3 vs 4
        (_feats(2, 3), np.zeros(3, np.int64), np.array([1, 0, 2]), False),
        (_feats(2, 3), np.zeros(3, np.int64), np.array([1, 3, 2]), False),
        (_feats(2, 3), np.zeros(3, np.int64), np.array([1, 2]), False),
    ])
def test_inconsistent_cache_is_refused(tmp_path, feats, labels, views,
                                       per_view):
    with pytest.raises(ValueError, match='is inconsistent'):
        _write(tmp_path / 'c', feats, labels, views, labels_per_view=per_view)


def test_consistent_edge_cases_open(tmp_path):
    # views at the bounds 1 and K; labels per view with K = N = 2; labels
    # (N, L) per sample; a meta.json without the optional keys
    _write(tmp_path / 'a', _feats(2, 3), np.zeros(3), np.array([1, 2, 2]))
    _write(
        tmp_path / 'b',
        _feats(2, 2),
        np.zeros((2, 2), np.int64),
        labels_per_view=True)
    cache = _write(tmp_path / 'c', _feats(2, 3), np.zeros((3, 2), np.int64))
    assert 'sample_views' not in cache.meta and cache.sample_views is None
    assert not cache.labels_per_view


def test_half_written_cache_is_never_complete(tmp_path):
    root = tmp_path / 'c'
    # an exception inside the writer: no cache, no temporary folder
    with pytest.raises(RuntimeError, match='corrupt image'):
        with CacheWriter(str(root), FMT, 'fp', 'float32') as w:
            w.array('feats', (1, 2, 2))[:] = 1.0
            raise RuntimeError('corrupt image')
    assert list(tmp_path.iterdir()) == []
    assert not FeatureCache.is_complete(str(root), 'fp', FMT)
    # nothing written: the training set was empty
    with pytest.raises(ValueError, match='training set is empty'):
        with CacheWriter(str(root), FMT, 'fp', 'float32') as w:
            w.array('labels', (2, ), np.int64)
            w.finish()
    with pytest.raises(ValueError, match='training set is empty'):
        with CacheWriter(str(root), FMT, 'fp', 'float32') as w:
            w.array('feats', (1, 2, 2))
            w.finish()
    # the arrays without meta.json (killed before finish) / a broken one
    _write(root, _feats(1, 2), np.zeros(2, np.int64))
    assert FeatureCache.is_complete(str(root), 'fp', FMT)
    with open(root / 'meta.json', 'w') as f:
        f.write('{"format": "' + FMT)  # truncated
    assert not FeatureCache.is_complete(str(root), 'fp', FMT)
    os.remove(root / 'meta.json')
    assert not FeatureCache.is_complete(str(root), 'fp', FMT)
    # a finished cache replaces the old folder (no stale file survives)
    (root / 'views.npy').write_bytes(b'stale')
    cache = _write(root, _feats(2, 2), np.array([3, 4]), fp='new')
    assert not osp.exists(root / 'views.npy')
    assert cache.meta['fingerprint'] == 'new' and cache.num_views == 2
    assert FeatureCache.is_complete(str(root), 'new', FMT)


def test_view_rows_by_hand():
    np.testing.assert_array_equal(view_rows(None, 3, 5), [0, 1, 2])
    # views per sample [1, 3, 2]: view 0 all, view 1 samples 1 and 2,
    # view 2 sample 1 only
    sv = np.array([1, 3, 2])
    np.testing.assert_array_equal(view_rows(sv, 3, 0), [0, 1, 2])
    np.testing.assert_array_equal(view_rows(sv, 3, 1), [1, 2])
    np.testing.assert_array_equal(view_rows(sv, 3, 2), [1])


def test_cache_options_by_hand():
    assert check_cache_options(None) == dict(
        views=1,
        dtype='float16',
        pipeline='train',
        dir=None,
        batch_size=None,
        reuse=True,
        keep=True)
    out = check_cache_options(
        dict(views=2.0, batch_size=4.0, reuse=0, keep=1, dir='d'),
        dict(a=1, b='x'))
    assert out == dict(
        views=2,
        dtype='float16',
        pipeline='train',
        dir='d',
        batch_size=4,
        reuse=False,
        keep=True,
        a=1,
        b='x')
    assert type(out['views']) is int and type(out['batch_size']) is int
    assert check_cache_options(dict(b='y'), dict(b='x'))['b'] == 'y'
    assert check_cache_options(dict(pipeline='test'))['pipeline'] == 'test'
    assert check_cache_options(dict(batch_size=1))['batch_size'] == 1
    for bad, msg in ((dict(views=True), 'positive integer'),
                     (dict(views=1.5), 'positive integer'),
                     (dict(views=0), 'views'), (dict(batch_size=0),
                                                'batch_size'),
                     (dict(batch_size=True), 'batch_size=True'),
                     (dict(batch_size=2.5),
                      'batch_size=2.5'), (dict(a=1), 'unknown keys')):
        with pytest.raises(ValueError, match=msg):
            check_cache_options(bad)


class _Buffers(nn.Module):
    """A module holding the given buffers (persistent or not)."""

    def __init__(self, persistent=True, **buffers):
        super().__init__()
        for k, v in buffers.items():
            self.register_buffer(k, v, persistent=persistent)


def test_state_fingerprint_hashes_names_dtypes_shapes_and_bytes():
    base = state_fingerprint(_Buffers(a=torch.zeros(2, 3)))
    assert state_fingerprint(_Buffers(a=torch.zeros(2, 3))) == base
    # the same 24 zero bytes under another name / shape / dtype
    for other in (dict(b=torch.zeros(2, 3)), dict(a=torch.zeros(3, 2)),
                  dict(a=torch.zeros(6, dtype=torch.int32).reshape(2, 3))):
        assert state_fingerprint(_Buffers(**other)) != base, other
    assert state_fingerprint(_Buffers(a=torch.eye(2, 3))) != base
    # non-persistent buffers (not in the state dict) count too
    hidden = state_fingerprint(_Buffers(False, m=torch.zeros(2)))
    assert state_fingerprint(_Buffers(False, m=torch.ones(2))) != hidden
    # skip leaves entries out: a changed skipped entry keeps the key
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    head = state_fingerprint(net, lambda k: k.startswith('1.'))
    full = state_fingerprint(net)
    with torch.no_grad():
        net[1].weight.add_(1.0)
    assert state_fingerprint(net, lambda k: k.startswith('1.')) == head
    assert state_fingerprint(net) != full


class _Pre(_Buffers):
    """A data preprocessor-like module with plain settings."""

    def __init__(self, mean=(0.0, ), pad=(1, 2), opts=None):
        super().__init__(False, mean=torch.tensor(mean))
        self.pad = list(pad)
        self.opts = dict(opts or {'to_rgb': True})
        self.fn = lambda x: x  # not a plain setting: ignored


class _OtherPre(_Pre):
    pass


def test_preprocessor_fingerprint_by_parts():
    # two live instances: their non-plain attributes (a lambda, objects in
    # a dict) have other reprs (addresses) and must stay out of the key
    a, b = _Pre(opts={'o': object()}), _Pre(opts={'o': object()})
    assert preprocessor_fingerprint(a) == preprocessor_fingerprint(b)
    base = preprocessor_fingerprint(_Pre())
    assert preprocessor_fingerprint(_Pre()) == base
    for other in (_Pre(mean=(1.0, )), _Pre(pad=(1, 3)),
                  _Pre(opts={'to_rgb': False}), _OtherPre()):
        assert preprocessor_fingerprint(other) != base
    # the train / eval mode is not a setting
    assert preprocessor_fingerprint(_Pre().eval()) == base
    assert preprocessor_fingerprint(None) == preprocessor_fingerprint(None)


def test_dataset_fingerprint_by_parts(tmp_path):
    paths, labels = ['a.png', 'b.png'], [0, 1]
    base = dataset_fingerprint(_Tiny(paths, labels))

    class _Renamed(_Tiny):
        pass

    assert dataset_fingerprint(_Renamed(paths, labels)) != base
    # the pipeline (repr) is part of the key
    piped = _Tiny(paths, labels)
    piped.pipeline = Compose([LoadImageFromFile()])
    other = _Tiny(paths, labels)
    other.pipeline = Compose([LoadImageFromFile(to_float32=True)])
    assert len({base,
                dataset_fingerprint(piped),
                dataset_fingerprint(other)}) == 3
    # the caller's keys also inside a wrapper: labels count with gt_label
    keys = ('img_path', 'gt_label')
    cat = ConcatDataset([_Tiny(paths, labels)])
    relabelled = ConcatDataset([_Tiny(paths, [1, 1])])
    assert dataset_fingerprint(cat) == dataset_fingerprint(relabelled)
    assert dataset_fingerprint(cat,
                               keys) != dataset_fingerprint(relabelled, keys)
    # any *_path field is stamped (size, mtime), not only img_path
    seg = tmp_path / 'a_seg.png'
    seg.write_bytes(b'first')

    def with_map():
        ds = _Tiny(paths, labels)
        for info in ds.data_list:
            info['seg_map_path'] = str(seg)
        return ds

    keys = ('img_path', 'seg_map_path')
    before = dataset_fingerprint(with_map(), keys)
    assert dataset_fingerprint(with_map(), keys) == before
    seg.write_bytes(b'second map')
    assert dataset_fingerprint(with_map(), keys) != before


def test_dataset_fingerprint_follows_the_repeated_images():
    # ClassBalancedDataset(oversample_thr=0.5) over 3 images: class
    # frequencies 2/3 and 1/3, r = max(1, sqrt(0.5 / f)) = 1 and 1.22, so
    # the image of the rarer class is visited twice (ceil): the same images
    # and length, another image repeated (the labels are not hashed here)
    paths = ['a.png', 'b.png', 'c.png']
    a = ClassBalancedDataset(_Tiny(paths, [0, 0, 1]), oversample_thr=0.5)
    b = ClassBalancedDataset(_Tiny(paths, [1, 0, 0]), oversample_thr=0.5)
    assert list(a.repeat_indices) == [0, 1, 2, 2]
    assert list(b.repeat_indices) == [0, 0, 1, 2]
    assert dataset_fingerprint(a) != dataset_fingerprint(b)


def test_outputs_match_at_the_bounds():
    # scale max(|a|) = 0: the tolerance floor 1e-12 * rtol, so any
    # difference is a mismatch; equal zeros and empty tensors match
    z = torch.zeros(2)
    assert outputs_match(z, z.clone())
    assert not outputs_match(z, z + 1e-6)
    assert outputs_match(torch.zeros(0, 3), torch.ones(0, 3))
    assert not outputs_match(torch.zeros(0, 3), torch.zeros(0, 2))
    # the floor itself: rtol 1, |diff| 5e-13 <= 1 * 1e-12
    z = torch.zeros(1, dtype=torch.float64)
    assert outputs_match(z, z + 5e-13, rtol=1.0)
    assert not outputs_match(z, z + 2e-12, rtol=1.0)
    # at the tolerance exactly: |3 - 2| = 1 <= 0.5 * 2 (exact in binary)
    assert outputs_match(torch.tensor([2.0]), torch.tensor([3.0]), rtol=0.5)
    # a tensor is not a tuple, even one that iterates into the same rows
    row = torch.tensor([1.0, 2.0])
    assert not outputs_match(row[None], (row, ))
    assert not outputs_match((row, ), row[None])


def test_class_balanced_views_without_any_class():
    # no sample has a class: one view each (no rarest class to scale by)
    np.testing.assert_array_equal(class_balanced_views([[], []], 3), [1, 1])
    assert class_balanced_views([], 3).shape == (0, )


class _Serialized(_Tiny):
    """``_Tiny`` with mmengine's default ``serialize_data=True``, which
    empties ``data_list`` after loading."""

    def __init__(self, paths, labels):
        self._items = [
            dict(img_path=p, gt_label=y) for p, y in zip(paths, labels)
        ]
        BaseDataset.__init__(self, serialize_data=True, lazy_init=False)


def test_dataset_fingerprint_of_a_serialized_dataset():
    keys = ('img_path', 'gt_label')
    a = _Serialized(['a.png', 'b.png'], [0, 1])
    assert a.data_list == [] and a.get_data_info(1)['gt_label'] == 1
    same = _Serialized(['a.png', 'b.png'], [0, 1])
    assert dataset_fingerprint(a, keys) == dataset_fingerprint(same, keys)
    for other in (_Serialized(['a.png', 'b.png'],
                              [9, 1]), _Serialized(['a.png', 'c.png'],
                                                   [0, 1])):
        assert dataset_fingerprint(a, keys) != dataset_fingerprint(other, keys)
