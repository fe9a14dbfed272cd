"""Pinned by mutation testing of lt_mm.cls.feature_cache and the loop parts of
lt_mm.engine.feature_cache, through real Runners of the quickstart LWS
config on the tiny ImageNet-LT-format data, from the config's own random
initial weights (no stage-1 training: the cache does not care how the
frozen weights were obtained):

* the cache key follows every option (dtype, views, pipeline,
  channels_last, fuse_conv_bn, view_allocation), the views per sample, the
  seed (random pipeline only), the training set (length; labels of an
  in-memory data list), the frozen weights but not the head's;
* the rows: ``feats[0, i]`` is the pooled neck feature of training image i
  (dataset order), ``labels[i]`` its label; a second run reuses the cache,
  ``reuse=False`` rebuilds it, ``keep=False`` deletes it; a cache whose
  ``views.npy`` disagrees with the run is refused;
* the per-visit views: ``view_sampler`` / ``random_views`` against the
  generator seeded by ``seed + offset`` by hand;
* the extraction refusals (short / long / reordered views, soft or
  multi-label samples, a neck without a pooled feature).

The data-list key covers the samples of a serialized dataset (mmengine's
default empties ``data_list``; before, a relabelled training list got the
same key and a run reused the stale cache).
"""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.models import LinearClsHead, StackedLinearClsHead
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader

from lt_mm.cls.datasets import ImageNetLTDataset
from lt_mm.cls.feature_cache import (_check_pre_logits, _labels_of,
                                     extract_to_cache)
from lt_mm.engine.feature_cache import dataset_fingerprint, unwrap_model
from lt_mm.engine.runner_utils import build_runner
from ..engine.test_feature_cache import _Tiny
from .test_feature_cache import _cfg, data_env  # noqa: F401

pytestmark = pytest.mark.usefixtures('data_env')

KEYS = ('img_path', 'gt_label')


def _runner(work_dir, seed=0, deterministic=True, **cache):
    """A cached LWS runner (1 epoch) on the config's random weights."""
    cfg = _cfg(
        dict(options=['train_cfg.max_epochs=1'], checkpoint=None),
        'lws',
        work_dir,
        seed=seed,
        deterministic=deterministic,
        **cache)
    cfg.custom_hooks = [dict(type='Stage2FreezeHook', require_load_from=False)]
    return build_runner(cfg, 'none')


def _trained(work_dir, **kw):
    runner = _runner(work_dir, **kw)
    runner.train()
    return runner


def class_balanced_opts(cache_dir):
    """Cache options of a class-balanced cache of up to 3 views per
    sample, seed 3 (its per-visit views: a generator seeded 3 + offset)."""
    return dict(
        seed=3, views=3, view_allocation='class_balanced', dir=str(cache_dir))


def _key(runner, sample_views=None, **changes):
    """The loop's cache key with ``changes`` to its (checked) options."""
    loop = runner.train_loop
    saved = dict(loop.cache_cfg)
    loop.cache_cfg.update(changes)
    try:
        return loop._fingerprint(
            unwrap_model(runner.model), loop.dataloader.dataset, KEYS,
            sample_views)
    finally:
        loop.cache_cfg = saved


def test_cache_key_follows_options_views_seed_and_weights(tmp_path):
    runner = _runner(tmp_path / 'a', dtype='float32')
    base = _key(runner)
    assert _key(runner) == base
    n = len(runner.train_loop.dataloader.dataset)
    keys = [base] + [
        _key(runner, **change)
        for change in (dict(dtype='float16'), dict(views=2),
                       dict(pipeline='test'), dict(channels_last=False),
                       dict(fuse_conv_bn=False),
                       dict(view_allocation='class_balanced'))
    ]
    keys += [
        _key(runner, np.full(n, 2), views=2),
        _key(runner, np.r_[1, np.full(n - 1, 2)], views=2)
    ]
    assert len(set(keys)) == len(keys)
    # the training set: another length; a data list kept in memory
    # (serialize_data=False) with the labels among the hashed fields
    loop, model = runner.train_loop, unwrap_model(runner.model)
    assert loop._fingerprint(model, runner.test_dataloader.dataset,
                             KEYS) != base
    assert len({
        loop._fingerprint(model, _Tiny(['a.png', 'b.png'], labels), KEYS)
        for labels in ([0, 1], [0, 0])
    }) == 2
    # the random training pipeline draws by seed; the test pipeline not
    # (the seed also draws the initial weights: take the first run's)
    other_seed = _runner(tmp_path / 'b', seed=1, dtype='float32')
    unwrap_model(other_seed.model).load_state_dict(
        unwrap_model(runner.model).state_dict())
    assert _key(other_seed) != base
    assert _key(other_seed, pipeline='test') == _key(runner, pipeline='test')
    # the frozen weights count, the trained head's do not
    model = unwrap_model(runner.model)
    with torch.no_grad():
        next(model.head.parameters()).add_(1.0)
        assert _key(runner) == base
        next(model.backbone.parameters()).add_(1.0)
        assert _key(runner) != base


def _reference_feats(runner):
    """The pooled neck feature and label of every training image, one by
    one in dataset order (deterministic pipeline, eval mode)."""
    model = unwrap_model(runner.model).eval()
    ds = runner.train_dataloader.dataset
    feats, labels = [], []
    with torch.no_grad():
        for i in range(len(ds)):
            data = model.data_preprocessor(pseudo_collate([ds[i]]), False)
            feats.append(model.extract_feat(data['inputs'])[-1][0])
            labels.append(ds.get_data_info(i)['gt_label'])
    return torch.stack(feats).numpy(), np.asarray(labels)


def test_rows_follow_the_dataset_and_reuse_rules(tmp_path):
    shared = str(tmp_path / 'cache')
    first = _trained(
        tmp_path / 'a', seed=3, views=2, dtype='float32', dir=shared)
    loop = first.train_loop
    cache = loop.cache
    assert not loop.cache_reused
    assert 0 < loop.cache_seconds < 600  # the build time
    feats, labels = _reference_feats(first)
    assert len(set(labels.tolist())) == 10  # all classes, dataset order
    assert cache.feats.shape == (2, ) + feats.shape
    for k in range(2):  # deterministic pipeline: both views alike
        np.testing.assert_allclose(cache.feats[k], feats, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(cache.labels, labels)
    # per-visit views: seed 3 + offset 5, one generator per epoch / call
    idx = np.arange(6)
    draw, g = loop.view_sampler(5), torch.Generator().manual_seed(8)
    for _ in range(2):  # the generator moves on between batches
        want = torch.randint(2, (6, ), generator=g).numpy()
        np.testing.assert_array_equal(draw(idx), want)
    np.testing.assert_array_equal(
        loop.random_views(6, 5),
        torch.randint(2, (6, ), generator=torch.Generator().manual_seed(8)))
    # the same key: reused
    again = _trained(
        tmp_path / 'b', seed=3, views=2, dtype='float32', dir=shared)
    assert again.train_loop.cache_reused
    assert again.train_loop.cache.root == cache.root
    # reuse=False: rebuilt in the same folder; keep=False: deleted after
    fresh = _trained(
        tmp_path / 'c',
        seed=3,
        views=2,
        dtype='float32',
        dir=shared,
        reuse=False,
        keep=False)
    assert not fresh.train_loop.cache_reused
    assert fresh.train_loop.cache is None
    assert os.listdir(shared) == []


def test_class_balanced_views_drawn_by_hand_and_checked(tmp_path):
    opts = class_balanced_opts(tmp_path / 'cache')
    loop = _trained(tmp_path / 'a', **opts).train_loop
    per = loop.cache.sample_views
    assert set(per.tolist()) == {1, 2, 3}
    # v_i views: floor(u * v_i), u uniform float64 seeded 3 + 5
    idx = np.arange(len(per))
    u = torch.rand(
        len(idx),
        generator=torch.Generator().manual_seed(8),
        dtype=torch.float64).numpy()
    got = loop.view_sampler(5)(idx)
    np.testing.assert_array_equal(got, (u * per).astype(np.int64))
    assert (got < per).all() and got.max() == 2
    # a cache whose views.npy disagrees with this run's allocation
    np.save(osp.join(loop.cache.root, 'views.npy'), 4 - per)  # 1..3 each
    with pytest.raises(ValueError, match='other views per sample'):
        _trained(tmp_path / 'b', **opts)


def _loader(runner, indices):
    ds = runner.train_dataloader.dataset
    return DataLoader(
        ds, batch_size=8, sampler=list(indices), collate_fn=pseudo_collate)


def test_extraction_refusals(tmp_path):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model).train()
    n = len(runner.train_dataloader.dataset)
    order = np.arange(n)
    root = str(tmp_path / 'c')

    def extract(*index_lists, **kw):
        return extract_to_cache(model,
                                [_loader(runner, i) for i in index_lists],
                                root, 'float32', 'fp', **kw)

    with pytest.raises(ValueError, match=f'yielded {n - 1} samples'):
        extract(order[:-1])
    with pytest.raises(ValueError, match='yields more samples'):
        extract(np.r_[order, 0])
    # view 1 in another order: its labels disagree with view 0's
    with pytest.raises(ValueError, match='another order'):
        extract(order, order[::-1])
    assert not osp.exists(root)
    # views per sample: view 1 visits only the samples with 2 views
    sv = np.ones(n, np.int64)
    sv[::2] = 2
    cache = extract(order, order[::2], sample_views=sv)
    feats = np.asarray(cache.feats)
    np.testing.assert_allclose(
        feats[1, ::2], feats[0, ::2], rtol=1e-5, atol=1e-6)
    assert not feats[1, 1::2].any()
    np.testing.assert_array_equal(cache.sample_views, sv)
    assert model.training  # restored


def test_sample_views_refusal_restores_the_mode(tmp_path):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model).train()
    n = len(runner.train_dataloader.dataset)
    loaders = [_loader(runner, np.arange(n))] * 2
    # two loaders, every sample one view: the most (1) is not K = 2
    with pytest.raises(ValueError, match='sample_views must give'):
        extract_to_cache(
            model,
            loaders,
            str(tmp_path / 'c'),
            'float32',
            'fp',
            sample_views=np.ones(n, np.int64))
    assert model.training


def test_labels_of_by_hand():
    np.testing.assert_array_equal(
        _labels_of(
            [DataSample().set_gt_label(3),
             DataSample().set_gt_label(0)]), [3, 0])
    for bad, msg in ((DataSample().set_gt_score(torch.tensor([.2, .8])),
                      'soft / missing'), (DataSample(), 'soft / missing'),
                     (DataSample().set_gt_label([1, 2]), 'has 2 labels')):
        with pytest.raises(ValueError, match=msg):
            _labels_of([DataSample().set_gt_label(1), bad])


class _TwoFeatureHead(LinearClsHead):
    """A head whose classifier reads the last two neck outputs."""

    def pre_logits(self, feats):
        _, last = feats
        return last


class _SumHead(LinearClsHead):
    """A head whose classifier reads the sum of the neck outputs."""

    def pre_logits(self, feats):
        return sum(feats)


def test_pre_logits_check_by_hand():
    head = LinearClsHead(num_classes=3, in_channels=4)
    x, fmap = torch.randn(2, 4), torch.randn(2, 4, 3, 3)
    assert _check_pre_logits(head, (fmap, x)) is x
    assert _check_pre_logits(head, ([fmap], x)) is x  # only the last counts
    for feats in (x, (fmap, ), ()):
        with pytest.raises(ValueError, match='pooled feature'):
            _check_pre_logits(head, feats)
    with pytest.raises(ValueError, match=r'last item shape .*2, 4, 3, 3'):
        _check_pre_logits(head, (x, fmap))
    with pytest.raises(ValueError, match='pre_logits transforms'):
        _check_pre_logits(
            StackedLinearClsHead(
                num_classes=3, in_channels=4, mid_channels=[5]), (x, ))
    # the same shape, but sum((y, x)) = x + y is not x (alone it is)
    with pytest.raises(ValueError, match='pre_logits transforms'):
        _check_pre_logits(
            _SumHead(num_classes=3, in_channels=4), (torch.ones(2, 4), x))
    # the pooled feature alone is not enough for this head
    with pytest.raises(ValueError, match='pre_logits fails'):
        _check_pre_logits(
            _TwoFeatureHead(num_classes=3, in_channels=4), (fmap, x))


def test_relabelled_training_list_changes_the_key(data_root, tmp_path):
    # the quickstart list and the same images with image 0 relabelled
    # (class 0 -> 9): the cache rows would hold other labels
    root = osp.join(data_root, 'cls')
    with open(osp.join(root, 'ImageNet_LT_train.txt')) as f:
        lines = f.read().splitlines()
    path, label = lines[0].rsplit(' ', 1)
    assert label == '0'
    ann = tmp_path / 'train.txt'
    ann.write_text('\n'.join([f'{path} 9'] + lines[1:]) + '\n')
    sets = [
        ImageNetLTDataset(ann_file=a, data_root=root, pipeline=[])
        for a in ('ImageNet_LT_train.txt', str(ann))
    ]
    assert [ds.get_data_info(0)['gt_label'] for ds in sets] == [0, 9]
    assert dataset_fingerprint(sets[0],
                               KEYS) != dataset_fingerprint(sets[1], KEYS)
