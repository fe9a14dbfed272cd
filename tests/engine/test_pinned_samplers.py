"""Pins sampler guards and the documented epoch seeding of
:mod:`lt_mm.engine.samplers` that no other test fixed (found by mutation
testing). Real ``mmengine.dataset.BaseDataset`` subclasses."""
import json

import numpy as np
import pytest
from PIL import Image

from lt_mm.engine.samplers import (ClassBalancedSampler,
                                   ProgressivelyBalancedSampler,
                                   SquareRootSampler)
from tests.engine.test_samplers import (ToyClsDataset, ToyDetDataset,
                                        ToySegDataset)

LABELS = [0, 1, 0, 0, 2, 1, 0, 0, 1, 0]


@pytest.mark.parametrize(
    'cls',
    [ClassBalancedSampler, SquareRootSampler, ProgressivelyBalancedSampler])
def test_no_sample_with_a_class_is_refused_at_build(cls):
    # a detection set whose images have no instances at all
    ds = ToyDetDataset([[], [], []])
    kw = dict(total_epochs=3) if cls is ProgressivelyBalancedSampler else {}
    with pytest.raises(ValueError) as err:
        cls(ds, seed=0, **kw)
    assert 'ToyDetDataset' in str(err.value)
    assert 'no sample' in str(err.value)


def test_negative_class_index_is_refused_naming_it():
    ds = ToyClsDataset(LABELS)
    bad = [[0]] * 9 + [[-1]]
    with pytest.raises(ValueError) as err:
        ClassBalancedSampler(ds, seed=0, sample_classes=bad)
    assert 'class index -1' in str(err.value)
    assert 'num_classes' in str(err.value)


def test_epoch_e_uses_seed_plus_e():
    """Documented: epoch e draws with seed + e (the same order as a
    sampler seeded seed + e at epoch 0)."""
    ds = ToyClsDataset(LABELS)
    for cls in (ClassBalancedSampler, SquareRootSampler):
        a = cls(ds, seed=3, num_samples=40)
        a.set_epoch(2)
        b = cls(ds, seed=5, num_samples=40)
        assert list(a) == list(b)
        c = cls(ds, seed=1, num_samples=40)
        assert list(a) != list(c)


def test_empty_dataset_is_refused():
    with pytest.raises(ValueError, match='the dataset is empty'):
        SquareRootSampler(ToyClsDataset([], serialize_data=False), seed=0)


def test_multichannel_label_map_is_refused_naming_it(tmp_path):
    good = str(tmp_path / 'good.png')
    Image.fromarray(np.array([[0, 1], [2, 255]], dtype=np.uint8)).save(good)
    rgb = str(tmp_path / 'rgb.png')
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8) + 1).save(rgb)
    ds = ToySegDataset([good, rgb])
    with pytest.raises(ValueError) as err:
        ClassBalancedSampler(ds, seed=0)
    assert repr(rgb) in str(err.value) and '(2, 2, 3)' in str(err.value)


def test_seg_cache_file_in_a_new_subfolder(tmp_path):
    root = tmp_path / 'data'
    root.mkdir()
    path = str(root / 'a.png')
    Image.fromarray(np.array([[0, 2], [2, 0]], dtype=np.uint8)).save(path)
    ds = ToySegDataset([path], data_root=str(root))
    s = ClassBalancedSampler(ds, seed=0, cache_file='cache/new/classes.json')
    assert s.sample_classes == [[0, 2]]
    saved = json.loads((root / 'cache' / 'new' / 'classes.json').read_text())
    assert saved['classes'] == [[0, 2]]
