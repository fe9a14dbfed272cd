"""Regression tests of the sampler audit (lt_mm.engine.samplers / dist).

Real mmengine datasets and configs on tiny generated data.
"""
import numpy as np
import pytest
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dataset import ConcatDataset
from PIL import Image

import lt_mm.engine.dist as lt_dist
from lt_mm.engine.samplers import (ClassBalancedSampler,
                                   ProgressivelyBalancedSampler,
                                   SquareRootSampler, get_sample_classes)
from tests.conftest import free_port
from tests.engine.test_samplers import ToyClsDataset, ToySegDataset

LABELS = [0, 1, 0, 0, 2, 1, 0, 0, 1, 0]


@pytest.mark.parametrize('kw, match', [
    (dict(num_classes=3.5), 'num_classes=3.5'),
    (dict(rank=0, world_size=2.7), 'world_size=2.7'),
    (dict(rank=0.9, world_size=2), 'rank=0.9'),
    (dict(num_samples=float('inf')), 'num_samples=inf'),
    (dict(num_samples=12.5), 'num_samples=12.5'),
    (dict(samples_per_class=2.5), 'samples_per_class=2.5'),
])
def test_non_integer_sizes_are_refused(kw, match):
    # before: int() truncated 3.5 -> 3, 2.7 -> 2, 0.9 -> 0 silently and
    # num_samples=inf raised OverflowError
    with pytest.raises(ValueError, match=match):
        ClassBalancedSampler(ToyClsDataset(LABELS), seed=0, **kw)


def test_non_integer_total_epochs_is_refused():
    # before: T = 2.5 was kept, the last epoch got t/T = 0.8
    with pytest.raises(ValueError, match='total_epochs=2.5'):
        ProgressivelyBalancedSampler(
            ToyClsDataset(LABELS), total_epochs=2.5, seed=0)


def test_num_classes_must_match_metainfo():
    ds = ToyClsDataset(LABELS)  # metainfo: 4 classes
    with pytest.raises(ValueError, match='num_classes=7 but the dataset'):
        SquareRootSampler(ds, seed=0, num_classes=7)
    assert SquareRootSampler(ds, seed=0, num_classes=4).num_classes == 4


def test_sample_classes_are_validated():
    ds = ToyClsDataset(LABELS)
    with pytest.raises(ValueError, match=r'sample_classes\[0\]=0 is not'):
        ClassBalancedSampler(ds, seed=0, sample_classes=LABELS)
    bad = [[1.5]] + [[0]] * 9  # before: silently class 1
    with pytest.raises(ValueError, match='class index 1.5'):
        ClassBalancedSampler(ds, seed=0, sample_classes=bad)
    ok = [[np.int64(v), float(v)] for v in LABELS]
    s = ClassBalancedSampler(ds, seed=0, sample_classes=ok)
    assert s.sample_classes == [[v] for v in LABELS]


def _write_maps(tmp_path):
    paths = []
    for k, arr in enumerate([[[0, 1], [3, 3]], [[2, 2], [3, 3]]]):
        p = tmp_path / f'{k}.png'
        Image.fromarray(np.array(arr, dtype=np.uint8), mode='L').save(p)
        paths.append(str(p))
    return paths


def test_seg_classes_use_the_dataset_ignore_index(tmp_path):
    # label 3 is the dataset's ignore_index: not a class. Before, 255 was
    # always used: [[0, 1, 3], [2, 3]] and the sampler raised "class index
    # 3 but num_classes=3".
    ds = ToySegDataset(
        _write_maps(tmp_path),
        ignore_index=3,
        metainfo=dict(classes=('a', 'b', 'c')))
    assert get_sample_classes(ds) == [[0, 1], [2]]
    s = ClassBalancedSampler(ds, seed=0)
    assert s.class_to_indices == [[0], [0], [1]]
    # through mmengine's wrappers, and an explicit value still wins
    cat = ConcatDataset([ds, ds])
    assert get_sample_classes(cat) == [[0, 1], [2]] * 2
    assert get_sample_classes(ds, ignore_index=255) == [[0, 1, 3], [2, 3]]


def test_setup_distributed_keeps_the_backend(monkeypatch):
    """An ``env_cfg`` (a ConfigDict) without ``dist_cfg`` gets
    ``dist_cfg.backend='gloo'``; before, ``setdefault`` stored a converted
    copy and the backend was lost (``dist_cfg={}``)."""
    if torch_dist.is_initialized():
        pytest.skip('a process group already exists')
    monkeypatch.setattr(lt_dist, 'cuda_usable', lambda: False)
    for key, value in dict(
            RANK='0',
            WORLD_SIZE='1',
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    cfg = Config(dict(env_cfg=dict(cudnn_benchmark=False)))
    try:
        lt_dist.setup_distributed(cfg, 'pytorch')
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.env_cfg.cudnn_benchmark is False
    assert cfg.model_wrapper_cfg.type == 'CPUDistributedDataParallel'
