"""Tests of the mmengine class re-balancing samplers (lt_mm.engine.samplers).

Datasets are small real ``mmengine.dataset.BaseDataset`` subclasses.
"""
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset, ConcatDataset, RepeatDataset
from mmengine.registry import DATA_SAMPLERS
from PIL import Image
from torch.testing import assert_close

import lt_mm.engine.samplers  # noqa: F401  (registers the samplers)
from lt_mm.engine.samplers import (BaseClassSampler, ClassBalancedSampler,
                                   ProgressivelyBalancedSampler,
                                   SquareRootSampler, get_sample_classes)


class ToyClsDataset(BaseDataset):
    """Single-label classification dataset (like mmpretrain's)."""

    METAINFO = dict(classes=('a', 'b', 'c', 'd'))

    def __init__(self, labels, **kwargs):
        self._labels = list(labels)
        super().__init__(**kwargs)

    def load_data_list(self):
        return [dict(gt_label=int(v)) for v in self._labels]

    def get_cat_ids(self, idx):
        return [self.get_data_info(idx)['gt_label']]


class ToyDetDataset(BaseDataset):
    """Images with several instances (like mmdet's get_cat_ids)."""

    METAINFO = dict(classes=('a', 'b', 'c'))

    def __init__(self, instance_labels, **kwargs):
        self._inst = instance_labels
        super().__init__(**kwargs)

    def load_data_list(self):
        return [
            dict(instances=[dict(bbox_label=v) for v in labels])
            for labels in self._inst
        ]

    def get_cat_ids(self, idx):
        return [i['bbox_label'] for i in self.get_data_info(idx)['instances']]


class ToySegDataset(BaseDataset):
    """Data infos like mmseg 1.x BaseSegDataset (no get_cat_ids)."""

    METAINFO = dict(classes=('a', 'b', 'c', 'd'))

    def __init__(self,
                 seg_paths,
                 reduce_zero_label=False,
                 label_map=None,
                 ignore_index=255,
                 **kwargs):
        self._paths = list(seg_paths)
        self.reduce_zero_label = reduce_zero_label
        self.label_map = label_map
        self.ignore_index = ignore_index
        super().__init__(**kwargs)

    def load_data_list(self):
        return [
            dict(
                img_path=p,
                seg_map_path=p,
                label_map=self.label_map,
                reduce_zero_label=self.reduce_zero_label,
                seg_fields=[]) for p in self._paths
        ]


# 10 samples: class 0 x6, class 1 x3, class 2 x1, class 3 x0
LABELS = [0, 1, 0, 0, 2, 1, 0, 0, 1, 0]


def _build(type_, ds, **kw):
    return DATA_SAMPLERS.build(dict(type=type_, dataset=ds, **kw))


def test_registered_in_root_registry():
    for name in ('ClassBalancedSampler', 'SquareRootSampler',
                 'ProgressivelyBalancedSampler'):
        cls = DATA_SAMPLERS.get(name)
        assert cls is not None and issubclass(cls, BaseClassSampler)
    assert DATA_SAMPLERS.get('BaseClassSampler') is None


def test_class_lists_and_counts_from_get_cat_ids():
    ds = ToyClsDataset(LABELS)
    s = _build('ClassBalancedSampler', ds, seed=0)
    assert isinstance(s, ClassBalancedSampler)
    assert s.num_classes == 4
    assert s.sample_classes == [[v] for v in LABELS]
    assert s.class_to_indices == [[0, 2, 3, 6, 7, 9], [1, 5, 8], [4], []]
    assert_close(s.class_counts,
                 torch.tensor([6., 3., 1., 0.], dtype=torch.float64))
    # multi-label (detection): an image counts once per class it contains
    det = ToyDetDataset([[0, 0, 2], [1], [], [2, 2]])
    assert get_sample_classes(det) == [[0, 2], [1], [], [2]]
    s = _build('SquareRootSampler', det, seed=0)
    assert s.class_to_indices == [[0], [1], [0, 3]]
    assert_close(s.class_counts, torch.tensor([1., 1., 2.],
                                              dtype=torch.float64))
    assert 2 not in list(s)  # the image without instances is never drawn


def test_wrappers_and_errors():
    a, b = ToyClsDataset([0, 1]), ToyClsDataset([3, 2, 2])
    assert get_sample_classes(ConcatDataset([a, b])) == [[0], [1], [3], [2],
                                                         [2]]
    assert get_sample_classes(RepeatDataset(a, times=2)) == [[0], [1], [0],
                                                             [1]]

    class NoClasses:

        def __len__(self):
            return 3

    with pytest.raises(ValueError, match='cannot determine the classes'):
        _build('ClassBalancedSampler', NoClasses(), seed=0)
    # explicit sample_classes work for any dataset
    s = _build(
        'ClassBalancedSampler',
        NoClasses(),
        seed=0,
        num_samples=16,
        sample_classes=[[0], [1], [1]])
    assert s.num_classes == 2 and sorted(set(s)) == [0, 1, 2]
    with pytest.raises(ValueError, match='sample_classes has 2 entries'):
        _build(
            'ClassBalancedSampler',
            NoClasses(),
            seed=0,
            sample_classes=[[0], [1]])
    with pytest.raises(ValueError, match='class index 5'):
        _build('ClassBalancedSampler', ToyClsDataset([0, 5]), seed=0)
    with pytest.raises(ValueError, match='samples_per_class=0'):
        _build(
            'ClassBalancedSampler',
            ToyClsDataset(LABELS),
            seed=0,
            samples_per_class=0)
    with pytest.raises(ValueError, match='num_samples=0'):
        _build(
            'SquareRootSampler', ToyClsDataset(LABELS), seed=0, num_samples=0)
    with pytest.raises(ValueError, match='rank=2'):
        _build(
            'SquareRootSampler',
            ToyClsDataset(LABELS),
            seed=0,
            rank=2,
            world_size=2)
    with pytest.raises(ValueError, match='total_epochs=0'):
        _build(
            'ProgressivelyBalancedSampler',
            ToyClsDataset(LABELS),
            seed=0,
            total_epochs=0)


@pytest.mark.parametrize('type_, kw', [
    ('ClassBalancedSampler', {}),
    ('SquareRootSampler', {}),
    ('ProgressivelyBalancedSampler', dict(total_epochs=4)),
])
def test_determinism_length_and_epochs(type_, kw):
    ds = ToyClsDataset(LABELS)
    s1 = _build(type_, ds, seed=0, **kw)
    s2 = _build(type_, ds, seed=0, **kw)
    s3 = _build(type_, ds, seed=1, **kw)
    assert len(s1) == len(ds) == 10
    first = list(s1)
    assert first == list(s2) == list(s1)  # same seed + epoch -> same order
    assert first != list(s3)
    assert all(0 <= i < 10 for i in first)
    s1.set_epoch(1)
    assert list(s1) != first
    s1.set_epoch(0)
    assert list(s1) == first
    s = _build(type_, ds, seed=0, num_samples=25, **kw)
    assert len(s) == 25 and len(list(s)) == 25


@pytest.mark.parametrize('type_, kw', [
    ('ClassBalancedSampler', {}),
    ('SquareRootSampler', {}),
    ('ProgressivelyBalancedSampler', dict(total_epochs=4)),
])
def test_two_ranks_are_disjoint_and_cover_the_epoch(type_, kw):
    ds = ToyClsDataset(LABELS)
    # 11 indices rounded up to 12 = 2 * 6
    r0 = _build(type_, ds, seed=3, num_samples=11, rank=0, world_size=2, **kw)
    r1 = _build(type_, ds, seed=3, num_samples=11, rank=1, world_size=2, **kw)
    for s in (r0, r1):
        s.set_epoch(2)
    assert len(r0) == len(r1) == 6 == math.ceil(11 / 2)
    assert r0.total_size == 12
    glob = r0.global_indices()
    assert glob == r1.global_indices() and len(glob) == 12
    a, b = list(r0), list(r1)
    assert a == glob[0::2] and b == glob[1::2]
    # positions 0, 2, .. and 1, 3, ..: disjoint and together the whole epoch
    merged = [None] * 12
    merged[0::2], merged[1::2] = a, b
    assert merged == glob
    # the global list does not depend on world_size (only on total_size)
    single = _build(
        type_, ds, seed=3, num_samples=12, rank=0, world_size=1, **kw)
    single.set_epoch(2)
    assert list(single) == glob


def test_class_balanced_sampler_balances_classes():
    ds = ToyClsDataset(LABELS)
    s = _build('ClassBalancedSampler', ds, seed=0, num_samples=24)
    out = list(s)
    owner = [LABELS[i] for i in out]
    # 3 non-empty classes x 4 consecutive samples x 2 passes = 24
    blocks = [owner[k:k + 4] for k in range(0, 24, 4)]
    assert all(len(set(b)) == 1 for b in blocks)
    assert Counter(owner) == {0: 8, 1: 8, 2: 8}
    assert all(
        sorted(b[0] for b in blocks[k:k + 3]) == [0, 1, 2] for k in (0, 3))
    s2 = _build(
        'ClassBalancedSampler',
        ds,
        seed=0,
        num_samples=12,
        samples_per_class=2)
    owner = [LABELS[i] for i in s2]
    assert all(owner[k] == owner[k + 1] for k in range(0, 12, 2))


def test_square_root_sampler_probabilities():
    ds = ToyClsDataset(LABELS)
    s = _build('SquareRootSampler', ds, seed=0, num_samples=6000)
    assert isinstance(s, SquareRootSampler) and s.q == 0.5
    # sqrt(6), sqrt(3), sqrt(1), 0 normalised
    w = torch.tensor([6**0.5, 3**0.5, 1.0, 0.0], dtype=torch.float64)
    assert_close(s.class_probs, w / w.sum())
    freq = Counter(LABELS[i] for i in s)
    emp = torch.tensor([freq[j] / 6000 for j in range(4)], dtype=torch.float64)
    # std <= sqrt(0.25 / 6000) = 0.0065; tolerance ~ 4 std
    assert_close(emp, w / w.sum(), atol=0.025, rtol=0)


def test_progressive_sampler_changes_with_set_epoch():
    ds = ToyClsDataset(LABELS)
    s = _build('ProgressivelyBalancedSampler', ds, seed=0, total_epochs=4)
    assert isinstance(s, ProgressivelyBalancedSampler)
    ib = torch.tensor([0.6, 0.3, 0.1, 0.0], dtype=torch.float64)  # n_j/10
    cb = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0], dtype=torch.float64)
    assert_close(s.class_probs, ib)  # epoch 0
    s.set_epoch(2)  # t/T = 1/2: class 0 = 0.3 + 1/6
    assert_close(s.class_probs, 0.5 * ib + 0.5 * cb)
    assert_close(s.class_probs[0], torch.tensor(0.3 + 1 / 6).double())
    s.set_epoch(3)  # paper Eq. 2: last epoch is 3/4 balanced
    assert_close(s.class_probs, 0.25 * ib + 0.75 * cb)
    s.set_epoch(4)
    assert_close(s.class_probs, cb)
    # reference-code schedule t / (T - 1): the last epoch is balanced
    s2 = _build(
        'ProgressivelyBalancedSampler',
        ds,
        seed=0,
        total_epochs=4,
        last_epoch_balanced=True)
    s2.set_epoch(3)
    assert_close(s2.class_probs, cb)
    # the drawn classes follow the epoch's probabilities
    big = _build(
        'ProgressivelyBalancedSampler',
        ds,
        seed=0,
        total_epochs=4,
        num_samples=6000)
    f0 = Counter(LABELS[i] for i in big)[2] / 6000  # class 2: 0.1
    big.set_epoch(4)
    f4 = Counter(LABELS[i] for i in big)[2] / 6000  # class 2: 1/3
    assert abs(f0 - 0.1) < 0.025 and abs(f4 - 1 / 3) < 0.025


# --------------------------------------------------------------------------
# segmentation label maps
# --------------------------------------------------------------------------
def _write_maps(tmp_path):
    maps = {
        'a.png': [[0, 1], [2, 2]],  # reduce_zero_label -> {255, 0, 1}
        'b.png': [[3, 255], [3, 3]],  # reduce -> {2, 255}
        'c.png': [[0, 0], [0, 0]],  # reduce -> {255}: no class
    }
    paths = []
    for name, arr in maps.items():
        p = tmp_path / name
        Image.fromarray(np.array(arr, dtype=np.uint8), mode='L').save(p)
        paths.append(str(p))
    return paths


def test_seg_label_maps(tmp_path):
    paths = _write_maps(tmp_path)
    ds = ToySegDataset(paths, reduce_zero_label=True)
    assert get_sample_classes(ds) == [[0, 1], [2], []]
    s = _build('ClassBalancedSampler', ds, seed=0)
    assert s.class_to_indices == [[0], [0], [1], []]
    assert_close(s.class_counts,
                 torch.tensor([1., 1., 1., 0.], dtype=torch.float64))
    assert 2 not in set(
        _build('ClassBalancedSampler', ds, seed=0, num_samples=40))
    # without reduce_zero_label: 0 is a class, 255 is ignored
    ds = ToySegDataset(paths, reduce_zero_label=False)
    assert get_sample_classes(ds) == [[0, 1, 2], [3], [0]]
    # label_map (old -> new) after reduce_zero_label, applied on a copy as
    # mmseg does: a -> {0, 1} -> 0->1, 1->255 -> {1}; b -> {2}
    ds = ToySegDataset(paths, reduce_zero_label=True, label_map={0: 1, 1: 255})
    assert get_sample_classes(ds) == [[1], [2], []]


def test_seg_cache_file(tmp_path):
    root = tmp_path / 'data'
    root.mkdir()
    paths = _write_maps(root)
    ds = ToySegDataset(paths, reduce_zero_label=True, data_root=str(root))
    s = _build('ClassBalancedSampler', ds, seed=0, cache_file='classes.json')
    cache = root / 'classes.json'  # relative to data_root
    assert cache.is_file()
    saved = json.loads(cache.read_text())
    assert saved['classes'] == [[0, 1], [2], []]
    assert s.sample_classes == [[0, 1], [2], []]
    # a hit is not read from the maps: a tampered cache is returned as is
    saved['classes'][2] = [3]
    cache.write_text(json.dumps(saved))
    s2 = _build('SquareRootSampler', ds, seed=0, cache_file=str(cache))
    assert s2.sample_classes == [[0, 1], [2], [3]]
    # a map rewritten under the same name (a regenerated data set)
    # invalidates it: c.png now holds class 2 (3 - 1 after reduce)
    Image.fromarray(
        np.full((3, 2), 3, dtype=np.uint8), mode='L').save(paths[2])
    s3 = _build('ClassBalancedSampler', ds, seed=0, cache_file=str(cache))
    assert s3.sample_classes == [[0, 1], [2], [2]]
    # other settings invalidate the cache (and the maps are gone now)
    for p in paths:
        (root / p).unlink()
    other = ToySegDataset(paths, reduce_zero_label=False, data_root=str(root))
    with pytest.raises(FileNotFoundError):
        _build(
            'ClassBalancedSampler', other, seed=0, cache_file='classes.json')


def test_runner_calls_set_epoch(tmp_path):
    """A real mmengine Runner builds the sampler (seed from ``randomness``)
    and its DistSamplerSeedHook calls ``set_epoch`` before every epoch."""
    import torch.nn as nn
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class TinyModel(BaseModel):

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 1)

        def forward(self, inputs=None, data_samples=None, mode='loss'):
            return dict(loss=self.fc(torch.ones(1, 1)).sum())

    class TinyDataset(ToyClsDataset):

        def __getitem__(self, idx):
            return dict(inputs=torch.zeros(1))

    seen = []

    class Record(Hook):

        def before_train_epoch(self, runner):
            s = runner.train_dataloader.sampler
            seen.append((runner.epoch, s.epoch, s.seed, s.class_probs[2]))

    runner = Runner(
        model=TinyModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=TinyDataset(LABELS),
            batch_size=5,
            num_workers=0,
            sampler=dict(type='ProgressivelyBalancedSampler', total_epochs=2),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=[dict(type=Record, priority='LOWEST')],
        default_hooks=dict(checkpoint=None, logger=None),
        randomness=dict(seed=7),
        default_scope='mmengine')
    runner.train()
    # class 2 (n = 1 of N = 10, C = 3): epoch 0 -> 0.1; epoch 1 of T = 2 ->
    # 0.5 * 0.1 + 0.5 / 3 = 0.216667
    assert [(e, se, sd) for e, se, sd, _ in seen] == [(0, 0, 7), (1, 1, 7)]
    assert_close(seen[0][3], torch.tensor(0.1, dtype=torch.float64))
    assert_close(seen[1][3], torch.tensor(0.05 + 0.5 / 3, dtype=torch.float64))


def test_dataset_without_labels_names_the_key(tmp_path):
    """mmpretrain's ``CustomDataset(with_label=False)`` implements
    ``get_cat_ids`` but its data infos have no ``gt_label``: a ValueError
    naming the dataset, the key and the fix, not a bare KeyError."""
    from mmpretrain.datasets import CustomDataset
    root = tmp_path / 'images'
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / f'{i}.png')
    ds = CustomDataset(data_root=str(root), with_label=False, pipeline=[])
    with pytest.raises(ValueError) as err:
        _build('ClassBalancedSampler', ds, seed=0)
    msg = str(err.value)
    assert 'cannot determine the classes' in msg and 'CustomDataset' in msg
    assert str(root) in msg and "'gt_label'" in msg
    assert 'sample_classes=' in msg

    # a label missing from a later sample: named with its index
    class Partial(ToyClsDataset):

        def load_data_list(self):
            return super().load_data_list()[:2] + [dict(img_path='x.png')]

    with pytest.raises(ValueError, match=r"sample 2 has no 'gt_label'"):
        get_sample_classes(Partial([0, 1, 2]))
