"""Pinned by mutation testing of the cached stage-2 training loops
(``switch_train_loop`` and ``CachedFeatureLoopMixin`` /
``CachedFeatureEpochLoopMixin`` in lt_mm.engine.feature_cache, and the
overrides of the three adapters' loops), through real Runners of the
quickstart configs on the tiny data, from the configs' random initial
weights, and on hand-made configs:

* ``use_cached_features``: which ``train_cfg`` it accepts (a stock loop, a
  ``by_epoch`` / length-only dict, the cached loop itself) and refuses
  (another loop kind, a contradicting ``by_epoch``, no length), what it
  keeps (length, ``val_begin``, ``val_interval``, ``dynamic_intervals``)
  and the cache options merged over those already in the config;
* a loop given in the config (no ``use_cached_features``) still checks the
  adapter's own options when it is built;
* the epoch loop's schedule: hooks called in order with the batch index
  and the iteration, the model back in training mode after validation,
  validation at ``val_begin`` / ``val_interval`` / ``dynamic_intervals`` /
  the last epoch, ``stop_training``, the loss in the hooks' ``outputs``,
  ``Runner.train`` returning the model;
* every visit of epoch e reads the sampler's batch of that epoch with
  views drawn from one generator seeded by ``seed + e``;
* with loader workers, view k of the cache is the training pipeline drawn
  by a worker seeded with ``seed + k``;
* a failed run with ``keep=False`` still deletes its cache and
  ``drop_cache`` may be called again (a relabelled cls training list is
  pinned in tests/cls/test_pinned_feature_cache.py).
"""
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook

from lt_mm.cls.feature_cache import LOOP as CLS_LOOP
from lt_mm.cls.feature_cache import use_cached_features
from lt_mm.engine.feature_cache import unwrap_model
from lt_mm.engine.runner_utils import build_runner
from lt_mm.seg.feature_cache import LOOP as SEG_LOOP
from lt_mm.seg.feature_cache import \
    use_cached_features as seg_use_cached_features
from ..cls.test_feature_cache import data_env  # noqa: F401 (fixture)
from ..cls.test_feature_cache import _cfg, _train_recording_warnings
from ..cls.test_pinned_feature_cache import _runner as _cls_runner
from ..conftest import QUICKSTART, run_dist
from ..det.test_feature_cache import _cfg as _det_cfg
from ..seg.test_feature_cache import _cfg as _seg_cfg

pytestmark = pytest.mark.usefixtures('data_env')

RANDOM_WEIGHTS = dict(options=[], checkpoint=None)
#: Stage2FreezeHook for runs from the configs' random weights
FREEZE = [dict(type='Stage2FreezeHook', require_load_from=False)]
SEG_FREEZE = [
    dict(
        type='Stage2FreezeHook',
        trainable=['decode_head.conv_seg'],
        require_load_from=False)
]


def _trained_loop(cfg):
    """Build the runner of ``cfg``, train it, return its training loop."""
    runner = build_runner(cfg, 'none')
    runner.train()
    return runner.train_loop


# ---------------------------------------------------------------------------
# use_cached_features (switch_train_loop) on hand-made configs
# ---------------------------------------------------------------------------
def test_switch_keeps_the_schedule_and_merges_the_cache_options():
    dyn = [(3, 2)]
    cfg = Config(
        dict(
            train_cfg=dict(
                type='EpochBasedTrainLoop',
                max_epochs=5,
                val_begin=2,
                val_interval=3,
                dynamic_intervals=dyn,
                cache=dict(views=1, dtype='float32'))))
    assert use_cached_features(cfg, views=2, dir='x') is cfg
    # the options in the config updated by the call (not checked-and-filled)
    assert cfg.train_cfg == dict(
        type=CLS_LOOP,
        max_epochs=5,
        val_begin=2,
        val_interval=3,
        dynamic_intervals=dyn,
        cache=dict(views=2, dtype='float32', dir='x'))
    # the cached loop itself is accepted again (its by_epoch is the loop's)
    use_cached_features(cfg, keep=False)
    assert cfg.train_cfg.cache == dict(
        views=2, dtype='float32', dir='x', keep=False)
    # a stock config without a type: mmengine's Runner reads by_epoch=True
    # (or no max_iters) as epoch based; by_epoch is not passed on
    for train_cfg in (dict(by_epoch=True, max_epochs=4), dict(max_epochs=4)):
        cfg = Config(dict(train_cfg=train_cfg))
        use_cached_features(cfg)
        assert cfg.train_cfg == dict(type=CLS_LOOP, max_epochs=4, cache={})
    # the iteration-based adapter: the same with IterBasedTrainLoop
    for train_cfg in (dict(type='IterBasedTrainLoop',
                           max_iters=6), dict(by_epoch=False, max_iters=6),
                      dict(max_iters=6, val_interval=2)):
        cfg = Config(dict(train_cfg=train_cfg))
        seg_use_cached_features(cfg, views=1)
        want = dict(type=SEG_LOOP, max_iters=6, cache=dict(views=1))
        if 'val_interval' in train_cfg:
            want['val_interval'] = 2
        assert cfg.train_cfg == want


@pytest.mark.parametrize(
    'switch, train_cfg, match',
    [
        (use_cached_features, dict(type='IterBasedTrainLoop',
                                   max_iters=4), 'not an epoch-based'),
        (use_cached_features, dict(by_epoch=False,
                                   max_epochs=4), 'not an epoch-based'),
        (use_cached_features,
         dict(type='EpochBasedTrainLoop', by_epoch=False,
              max_epochs=4), 'not an epoch-based'),
        # no type, max_iters: mmengine builds an iteration-based loop
        (use_cached_features, dict(max_iters=4), 'not an epoch-based'),
        (use_cached_features, dict(type='MyLoop',
                                   max_epochs=4), 'not an epoch-based'),
        (use_cached_features, dict(type=SEG_LOOP,
                                   max_iters=4), 'not an epoch-based'),
        (use_cached_features, dict(type='EpochBasedTrainLoop'),
         'has no max_epochs'),
        (use_cached_features, dict(by_epoch=True), 'has no max_epochs'),
        (seg_use_cached_features, dict(
            type='EpochBasedTrainLoop', max_epochs=4), 'not an iteration'),
        (seg_use_cached_features, dict(max_epochs=4), 'not an iteration'),
        (seg_use_cached_features, dict(type=CLS_LOOP,
                                       max_epochs=4), 'not an iteration'),
        (seg_use_cached_features, dict(type='IterBasedTrainLoop'),
         'has no max_iters'),
        # the merged options are checked: views=0 came from the config
        (use_cached_features, dict(max_epochs=4, cache=dict(views=0)), 'views'
         ),
    ])
def test_switch_refusals(switch, train_cfg, match):
    cfg = Config(dict(train_cfg=train_cfg))
    with pytest.raises(ValueError, match=match):
        switch(cfg, dir='x')


# ---------------------------------------------------------------------------
# the adapters' own option checks when the loop is given in the config
# ---------------------------------------------------------------------------
def test_loop_given_in_the_config_checks_the_adapters_options(tmp_path):
    # (use_cached_features would refuse these before: the config-file form
    # reaches the loop with them)
    cfg = _cfg(RANDOM_WEIGHTS, 'lws', tmp_path / 'cls')
    cfg.custom_hooks = FREEZE
    cfg.train_cfg = dict(
        type=CLS_LOOP,
        max_epochs=1,
        cache=dict(views=1, view_allocation='class_balanced'))
    runner = build_runner(cfg, 'none')
    with pytest.raises(ValueError, match='every image would get one view'):
        runner.train_loop
    for build, loop, length, cache, match in (
        (_seg_cfg, SEG_LOOP, 'max_iters', dict(class_balanced=True),
         'needs pixels_per_image'),
        (_det_cfg, 'CachedRoIFeatureEpochBasedTrainLoop', 'max_epochs',
         dict(pipeline='test'), "supports pipeline='train' only"),
    ):
        cfg = build(RANDOM_WEIGHTS, tmp_path / loop)
        cfg.train_cfg = dict(type=loop, cache=cache, **{length: 1})
        runner = build_runner(cfg, 'none')
        with pytest.raises(ValueError, match=match):
            runner.train_loop


# ---------------------------------------------------------------------------
# the epoch loop's schedule, through a recording hook
# ---------------------------------------------------------------------------
class _Recorder(Hook):
    """Records the training hooks' calls; optionally stops or fails."""

    priority = 'LOWEST'

    def __init__(self,
                 stop_after_epoch=None,
                 stop_at_iter=None,
                 fail_at_iter=None):
        self.calls, self.inputs, self.outputs = [], [], []
        self.stop_after_epoch = stop_after_epoch
        self.stop_at_iter = stop_at_iter
        self.fail_at_iter = fail_at_iter

    def before_train(self, runner):
        self.calls.append(('before_train', ))

    def before_train_epoch(self, runner):
        self.calls.append(('before_train_epoch', runner.epoch))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.calls.append(('before_train_iter', runner.epoch, batch_idx,
                           runner.iter, runner.model.training))
        self.inputs.append(data_batch['inputs'].clone())

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.calls.append(('after_train_iter', runner.epoch, batch_idx))
        self.outputs.append(outputs)
        if runner.iter == self.fail_at_iter:
            raise RuntimeError('failing on purpose')
        if runner.iter == self.stop_at_iter:
            runner.train_loop.stop_training = True

    def after_train_epoch(self, runner):
        self.calls.append(('after_train_epoch', runner.epoch))
        if runner.epoch == self.stop_after_epoch:
            runner.train_loop.stop_training = True

    def after_val_epoch(self, runner, metrics=None):
        self.calls.append(('val', runner.epoch, runner.iter))

    def after_train(self, runner):
        self.calls.append(('after_train', ))


def _recorded(work_dir,
              recorder,
              seed=0,
              deterministic=True,
              val=False,
              schedule=None,
              **cache):
    """A cached LWS runner (the config's random weights) with ``recorder``
    registered; ``schedule`` updates ``train_cfg`` before the switch."""
    cfg = _cfg(
        RANDOM_WEIGHTS,
        'lws',
        work_dir,
        seed=seed,
        deterministic=deterministic)
    cfg.custom_hooks = FREEZE
    if val:  # validate on the test list
        cfg.val_dataloader = cfg.test_dataloader
        cfg.val_evaluator = cfg.test_evaluator
        cfg.val_cfg = dict()
    cfg.train_cfg.update(schedule or {})
    use_cached_features(cfg, **cache)
    runner = build_runner(cfg, 'none')
    runner.register_hook(recorder)
    return runner


def _per_epoch(calls, name):
    return [c[1] for c in calls if c[0] == name]


#: validation from 2, every 3, every 2 from 3 on (both loop kinds)
VAL_SCHEDULE = dict(val_begin=2, val_interval=3, dynamic_intervals=[(3, 2)])


def test_epoch_loop_schedule_hooks_and_validation(tmp_path):
    rec = _Recorder()
    runner = _recorded(
        tmp_path / 'a',
        rec,
        val=True,
        schedule=dict(max_epochs=5, **VAL_SCHEDULE),
        dtype='float32')
    assert runner.train() is runner.model
    loop = runner.train_loop
    n = len(runner.train_dataloader)  # index batches per epoch
    assert n >= 2
    assert rec.calls[:2] == [('before_train', ), ('before_train_epoch', 0)]
    assert rec.calls[-1] == ('after_train', )
    assert _per_epoch(rec.calls, 'before_train_epoch') == [0, 1, 2, 3, 4]
    assert _per_epoch(rec.calls, 'after_train_epoch') == [0, 1, 2, 3, 4]
    # validation after the epochs e (counted from 1) with e >= val_begin=2
    # and e % interval == 0 or e == max_epochs=5; the interval is 3 up to
    # epoch 2, then 2 (dynamic_intervals=[(3, 2)]: from epoch 3): e=2 (2 % 2,
    # the interval already 2 when deciding after epoch 2), 4, 5
    assert _per_epoch(rec.calls, 'val') == [2, 4, 5]
    # each iteration: before with (epoch, batch index, iteration), the model
    # in training mode (validation leaves it in eval mode), then after
    iters = [c for c in rec.calls if c[0] == 'before_train_iter']
    assert iters == [('before_train_iter', e, b, e * n + b, True)
                     for e in range(5) for b in range(n)]
    afters = [c for c in rec.calls if c[0] == 'after_train_iter']
    assert afters == [('after_train_iter', e, b) for e in range(5)
                      for b in range(n)]
    assert loop._epoch == 5 and loop._iter == 5 * n
    # the hooks get the parsed losses (the logged loss is the last one)
    assert all(set(o) == {'loss'} for o in rec.outputs)
    assert runner.message_hub.get_scalar('train/loss').current() == \
        pytest.approx(float(rec.outputs[-1]['loss']))


def test_stop_training_and_a_failed_run_without_keep(tmp_path):
    # a hook sets stop_training after the first epoch (of 3)
    rec = _Recorder(stop_after_epoch=0)
    runner = _recorded(
        tmp_path / 'a', rec, schedule=dict(max_epochs=3), dtype='float32')
    runner.train()
    assert _per_epoch(rec.calls, 'after_train_epoch') == [0]
    assert runner.train_loop._epoch == 1
    assert rec.calls[-1] == ('after_train', )
    # keep=False deletes the cache also when training fails; deleting again
    # is a no-op
    shared = tmp_path / 'cache'
    rec = _Recorder(fail_at_iter=1)
    runner = _recorded(
        tmp_path / 'b', rec, dtype='float32', keep=False, dir=str(shared))
    with pytest.raises(RuntimeError, match='failing on purpose'):
        runner.train()
    loop = runner.train_loop
    assert loop.cache is None and os.listdir(shared) == []
    loop.drop_cache()


def test_every_visit_reads_the_epochs_batch_and_seeded_views(tmp_path):
    # random crops: the two stored views of an image differ; epoch e visits
    # the sampler's batches of epoch e (set_epoch(e)) and draws the views
    # of all its batches from one generator seeded by seed + e = 3 + e
    rec = _Recorder()
    runner = _recorded(
        tmp_path / 'a',
        rec,
        seed=3,
        deterministic=False,
        schedule=dict(max_epochs=2),
        views=2,
        dtype='float32')
    runner.train()
    loop = runner.train_loop
    feats = np.asarray(loop.cache.feats)
    assert (np.abs(feats[0] - feats[1]).max(axis=1) > 1e-3).mean() > 0.8
    sampler = runner.train_dataloader.sampler
    got = iter(rec.inputs)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        g = torch.Generator().manual_seed(3 + epoch)
        for batch in runner.train_dataloader.batch_sampler:
            idx = np.asarray(batch)
            views = torch.randint(2, (len(idx), ), generator=g).numpy()
            np.testing.assert_array_equal(next(got).numpy(), feats[views, idx])
    assert next(got, None) is None


def _features_drawn_with_seed(runner, seed):
    """The pooled feature of every training image (dataset order) through
    the training pipeline with python / numpy / torch seeded by ``seed``
    first (one loader worker seeded by mmengine's worker_init_fn:
    num_workers * rank + worker_id + seed = seed)."""
    model = unwrap_model(runner.model).eval()
    ds = runner.train_dataloader.dataset
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    samples = [ds[i] for i in range(len(ds))]
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate(samples), False)
        return model.extract_feat(data['inputs'])[-1].numpy()


def test_views_with_loader_workers_are_seeded_by_seed_plus_view(tmp_path):
    # (channels_last=False: the unfolded backbone sees contiguous NCHW
    # batches, recorded by a forward pre-hook)
    cfg = _cfg(
        RANDOM_WEIGHTS, 'lws', tmp_path / 'a', seed=3, deterministic=False)
    cfg.custom_hooks = FREEZE
    cfg.train_cfg.max_epochs = 1
    cfg.train_dataloader.num_workers = 1
    use_cached_features(
        cfg, views=2, dtype='float32', channels_last=False, fuse_conv_bn=False)
    runner = build_runner(cfg, 'none')
    contiguous = []
    unwrap_model(runner.model).backbone.register_forward_pre_hook(
        lambda module, args: contiguous.append(args[0].is_contiguous()))
    runner.train()
    assert len(contiguous) == 2 * 5 and all(contiguous)  # 2 x 131 / 32
    feats = np.asarray(runner.train_loop.cache.feats)
    for k in range(2):  # view k: seed 3 + k
        np.testing.assert_allclose(
            feats[k],
            _features_drawn_with_seed(runner, 3 + k),
            rtol=1e-4,
            atol=1e-5)
    assert np.abs(feats[0] - feats[1]).max() > 1e-2


# ---------------------------------------------------------------------------
# the iteration loop (segmentation)
# ---------------------------------------------------------------------------
def _seg_recorded(work_dir,
                  recorder,
                  exact=True,
                  val=False,
                  schedule=None,
                  resume_from=None,
                  **cache):
    """A cached DisAlign segmentation runner (the config's random weights,
    a checkpoint every 2 iterations, all kept) with ``recorder``; with
    ``resume_from``: resumed from that checkpoint."""
    cfg = _seg_cfg(RANDOM_WEIGHTS, work_dir, exact=exact)
    cfg.custom_hooks = SEG_FREEZE
    if val:
        cfg.val_dataloader = cfg.test_dataloader
        cfg.val_evaluator = cfg.test_evaluator
        cfg.val_cfg = dict()
    cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=-1)
    # MessageHub / MMLogger instances are shared by name
    cfg.experiment_name = f'lt_mm_pinned_cached_seg_{osp.basename(work_dir)}'
    cfg.train_cfg.update(schedule or {})
    if resume_from is not None:
        cfg.resume = True
        cfg.load_from = resume_from
    seg_use_cached_features(cfg, **cache)
    runner = build_runner(cfg, 'none')
    runner.register_hook(recorder)
    return runner


def test_iteration_loop_schedule_hooks_and_validation(tmp_path):
    rec = _Recorder()
    runner = _seg_recorded(
        tmp_path / 'a',
        rec,
        val=True,
        schedule=dict(max_iters=5, **VAL_SCHEDULE),
        dtype='float32',
        keep=False)
    loop = runner.train_loop
    assert runner.visualizer.dataset_meta == \
        loop.dataloader.dataset.metainfo
    assert runner.train() is runner.model
    # one "epoch" around all iterations
    assert rec.calls[:2] == [('before_train', ), ('before_train_epoch', 0)]
    assert rec.calls[-2:] == [('after_train_epoch', 0), ('after_train', )]
    # batch index = iteration; the model in training mode at every one
    assert [c for c in rec.calls if c[0] == 'before_train_iter'
            ] == [('before_train_iter', 0, i, i, True) for i in range(5)]
    assert _per_epoch(rec.calls, 'after_train_iter') == [0] * 5
    # validation after the iterations i (from 1) with i >= val_begin=2 and
    # i % interval == 0 or i == max_iters=5; the interval 3 up to iteration
    # 2, then 2 (dynamic_intervals=[(3, 2)]): i = 2, 4, 5
    assert [c[2] for c in rec.calls if c[0] == 'val'] == [2, 4, 5]
    assert loop._iter == 5
    assert all(set(o) >= {'loss', 'decode.loss_ce'} for o in rec.outputs)
    # keep=False: deleted after the run
    assert loop.cache is None
    assert os.listdir(osp.join(str(tmp_path / 'a'), 'feature_cache')) == []


def test_iteration_loop_resumes_exactly_or_warns(tmp_path):
    # the straight run (4 iterations) builds the cache; resumed from its
    # iteration-2 checkpoint on that cache, iterations 2 and 3 read the
    # same batches (the index iterator advanced 2 steps, the views drawn by
    # iteration); a second straight run reuses the cache and trains the
    # same (random flips and dropout: the random state after opening the
    # cache is the one before building it)
    shared = str(tmp_path / 'cache')
    runs = {}
    for name in ('straight', 'again'):
        rec = _Recorder()
        runner = _seg_recorded(
            tmp_path / name,
            rec,
            exact=False,
            schedule=dict(max_iters=4),
            views=2,
            dtype='float32',
            dir=shared)
        runner.train()
        runs[name] = (runner, rec)
    straight, again = runs['straight'], runs['again']
    assert not straight[0].train_loop.cache_reused
    assert again[0].train_loop.cache_reused
    for a, b in zip(straight[1].inputs, again[1].inputs):
        assert torch.equal(a, b)
    for k, v in unwrap_model(straight[0].model).state_dict().items():
        assert torch.equal(v, unwrap_model(again[0].model).state_dict()[k]), k
    ckpt = osp.join(str(tmp_path / 'straight'), 'iter_2.pth')
    rec = _Recorder()
    resumed = _seg_recorded(
        tmp_path / 'resumed',
        rec,
        exact=False,
        schedule=dict(max_iters=4),
        resume_from=ckpt,
        views=2,
        dtype='float32',
        dir=shared)
    records = _train_recording_warnings(resumed)
    assert resumed.train_loop.cache_reused
    assert [c[3] for c in rec.calls if c[0] == 'before_train_iter'] == [2, 3]
    assert len(rec.inputs) == 2
    for a, b in zip(straight[1].inputs[2:], rec.inputs):
        assert torch.equal(a, b)
    assert not any(
        'does not continue the straight run exactly' in r.getMessage()
        for r in records)
    # resumed without that cache (another folder): its random views are
    # drawn anew, a warning says so; a hook stops it in the hooks after
    # iteration 2 (runner.iter counts the finished ones: 2 then)
    rec = _Recorder(stop_at_iter=2)
    fresh = _seg_recorded(
        tmp_path / 'fresh',
        rec,
        exact=False,
        schedule=dict(max_iters=4),
        resume_from=ckpt,
        views=2,
        dtype='float32',
        dir=str(tmp_path / 'other'))
    records = _train_recording_warnings(fresh)
    assert not fresh.train_loop.cache_reused
    assert any('resuming at epoch 0 / iteration 2 without the feature cache' in
               r.getMessage() for r in records)
    assert fresh.train_loop._iter == 3


def test_det_relabelled_annotations_are_not_served_the_old_cache(
        data_env, tmp_path):  # noqa: F811
    # the same images, one box of the first annotated image given another
    # category: a run on the same cache folder builds a new RoI cache
    import json
    src = osp.join(data_env, 'det', 'annotations', 'lvis_v1_train.json')
    with open(src) as f:
        ann = json.load(f)
    box = ann['annotations'][0]
    box['category_id'] = next(c['id'] for c in ann['categories']
                              if c['id'] != box['category_id'])
    relabelled = tmp_path / 'train.json'
    relabelled.write_text(json.dumps(ann))
    shared = str(tmp_path / 'cache')
    loops = []
    for name, ann_file in (('a', None), ('b', str(relabelled))):
        cfg = _det_cfg(RANDOM_WEIGHTS, tmp_path / name, dir=shared)
        cfg.custom_hooks = FREEZE
        if ann_file:
            cfg.train_dataloader.dataset.ann_file = ann_file
        loops.append(_trained_loop(cfg))
    assert not loops[1].cache_reused
    assert loops[1].cache.root != loops[0].cache.root


def test_extraction_loaders_follow_batch_size_views_and_pipeline(tmp_path):
    # the random training pipeline: one unshuffled loader per view over the
    # training set, the cache's batch_size (else the training loader's)
    runner = _cls_runner(
        tmp_path / 'a', deterministic=False, views=2, batch_size=5)
    n = len(runner.train_dataloader.dataset)
    loaders = runner.train_loop._extraction_loaders()
    assert [dl.batch_size for dl in loaders] == [5, 5]
    assert [list(dl.sampler) for dl in loaders] == [list(range(n))] * 2
    runner = _cls_runner(tmp_path / 'b', deterministic=False, views=1)
    (loader, ) = runner.train_loop._extraction_loaders()
    assert loader.batch_size == runner.train_dataloader.batch_size == 32
    # pipeline='test': one loader with the test pipeline (no RandomCrop)
    runner = _cls_runner(
        tmp_path / 'c', deterministic=False, pipeline='test', batch_size=5)
    (loader, ) = runner.train_loop._extraction_loaders()
    assert loader.batch_size == 5 and len(loader.dataset) == n
    assert 'RandomCrop' in repr(runner.train_dataloader.dataset.pipeline)
    assert 'RandomCrop' not in repr(loader.dataset.pipeline)


def test_pixel_subset_follows_the_seed_class_balanced_and_labels(
        data_env, tmp_path):  # noqa: F811
    # the same images (no random transforms) through pixel-subset caches in
    # one folder: the labels of the sampled pixels follow the run's seed and
    # the class_balanced option; other label maps (a copy of the folder, every
    # PNG value 1: class 0) are another cache, not the first run's
    from PIL import Image
    maps = tmp_path / 'maps'
    src = osp.join(data_env, 'seg', 'annotations', 'training')
    os.makedirs(maps)
    for name in os.listdir(src):
        shape = np.asarray(Image.open(osp.join(src, name))).shape
        Image.fromarray(np.ones(shape, np.uint8)).save(maps / name)
    shared = str(tmp_path / 'cache')
    loops = {}
    for name, seed, balanced, seg_maps in (('s1', 1, False,
                                            None), ('s2', 2, False, None),
                                           ('cb', 1, True, None),
                                           ('maps', 1, False, str(maps))):
        cfg = _seg_cfg(
            RANDOM_WEIGHTS,
            tmp_path / name,
            seed=seed,
            pixels_per_image=4,
            class_balanced=balanced,
            dir=shared)
        cfg.custom_hooks = SEG_FREEZE
        cfg.train_cfg.max_iters = 1
        if seg_maps:
            cfg.train_dataloader.dataset.data_prefix.seg_map_path = seg_maps
        loops[name] = _trained_loop(cfg)
    labels = {k: np.asarray(v.cache.labels) for k, v in loops.items()}
    assert labels['s1'].shape == (1, 8, 4)
    assert not any(loop.cache_reused for loop in loops.values())
    assert not np.array_equal(labels['s1'], labels['s2'])
    assert not np.array_equal(labels['s1'], labels['cb'])
    assert (labels['maps'] == 0).all() and (labels['s1'] > 0).any()


def test_cached_loop_refuses_a_distributed_run(cls_stage1, data_root,
                                               tmp_path):
    # tools/dist_train.sh with 2 gloo processes on the shipped cached
    # config: refused when the loop is built, naming the world size and
    # the fix (each rank would build and train on its own cache)
    config = osp.join(QUICKSTART, 'digits_cls_disalign_cached.py')
    proc = run_dist('dist_train.sh', [
        config, '2', '--work-dir',
        str(tmp_path / 'w'), '--cfg-options',
        f'load_from={cls_stage1["checkpoint"]}'
    ], data_root)
    assert proc.returncode != 0
    assert (f'{CLS_LOOP} runs in one process (world size is 2)'
            in proc.stdout), proc.stdout[-3000:]
    assert 'launch tools/train.py without a launcher' in proc.stdout
    assert not os.path.exists(str(tmp_path / 'w' / 'feature_cache'))
