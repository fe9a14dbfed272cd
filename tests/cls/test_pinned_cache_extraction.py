"""Pinned by mutation testing of ``lt_mm.cls.feature_cache.extract_to_cache``
(round 2 of the feature-cache audit: the extraction itself), called on a
real Runner of the quickstart LWS config (its own random initial weights)
over the tiny ImageNet-LT-format data:

* the stored row is the neck's last pooled feature (the classifier input)
  also when the backbone returns several stages;
* ``meta.json`` records the views, the samples, whether views per sample
  were given and whether the folded backbone ran; ``labels.npy`` is int64;
* the model's mode before the extraction (eval as well as train) is
  restored afterwards;
* ``sample_views`` with a sample of 0 views is refused (the least is 1),
  and so is an empty training set;
* ``fuse=True`` runs the Conv-BatchNorm folded backbone (``meta['fused']``)
  and stores the same features as the original backbone, which is back in
  the model afterwards.
"""
import os.path as osp

import numpy as np
import pytest
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader, Subset

from lt_mm.cls.feature_cache import extract_to_cache
from lt_mm.engine.feature_cache import unwrap_model
from .test_feature_cache import data_env  # noqa: F401
from .test_pinned_feature_cache import _loader, _reference_feats, _runner

pytestmark = pytest.mark.usefixtures('data_env')


def _extract(runner, root, views=2, **kw):
    n = len(runner.train_dataloader.dataset)
    loaders = [_loader(runner, np.arange(n)) for _ in range(views)]
    return extract_to_cache(
        unwrap_model(runner.model), loaders, str(root), 'float32', 'fp', **kw)


def test_meta_labels_and_the_eval_mode_is_restored(tmp_path):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model).eval()
    # two stages out of the backbone: the neck pools both, (N, 64) and
    # (N, 128); the classifier (and the cache) read the last one
    model.backbone.out_indices = (2, 3)
    n = len(runner.train_dataloader.dataset)
    cache = _extract(runner, tmp_path / 'c')
    assert cache.feats.shape == (2, n, 128)
    assert not model.training  # eval before: eval after
    assert cache.meta['views'] == 2
    assert cache.meta['num_samples'] == n
    assert cache.meta['sample_views'] is False
    assert cache.meta['fused'] is False
    assert cache.labels.dtype == np.int64
    feats, labels = _reference_feats(runner)
    np.testing.assert_array_equal(cache.labels, labels)
    for k in range(2):  # both views: every image's pooled feature
        np.testing.assert_allclose(cache.feats[k], feats, rtol=1e-4, atol=1e-5)


def test_a_sample_without_views_is_refused(tmp_path):
    runner = _runner(tmp_path / 'a')
    n = len(runner.train_dataloader.dataset)
    sv = np.full(n, 2, np.int64)
    sv[0] = 0  # the most is K = 2, but sample 0 would have no view at all
    with pytest.raises(ValueError, match='sample_views must give 1..2'):
        _extract(runner, tmp_path / 'c', sample_views=sv)


def test_an_empty_training_set_is_refused(tmp_path):
    runner = _runner(tmp_path / 'a')
    empty = DataLoader(
        Subset(runner.train_dataloader.dataset, []),
        batch_size=8,
        collate_fn=pseudo_collate)
    root = str(tmp_path / 'c')
    with pytest.raises(ValueError, match='the training set is empty'):
        extract_to_cache(
            unwrap_model(runner.model), [empty], root, 'float32', 'fp')
    assert not osp.exists(root)


def test_folded_backbone_runs_and_stores_the_same_features(tmp_path):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model).train()
    backbone = model.backbone
    cache = _extract(runner, tmp_path / 'c', views=1, fuse=True)
    assert model.training
    assert model.backbone is backbone  # the folded copy is swapped out
    assert cache.meta['fused'] is True
    assert cache.meta['views'] == 1
    # folding BatchNorm into the convolutions only reorders float32 sums
    feats, _ = _reference_feats(runner)
    np.testing.assert_allclose(cache.feats[0], feats, rtol=1e-4, atol=1e-5)
