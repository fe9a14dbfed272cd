"""Classification stage 2 on cached features.

Stage 2 of the decoupled methods -- DisAlign (Zhang et al., CVPR 2021,
Sec. 3.2: alpha, beta, sigma of Eq. 5/6 learned with the GRW loss of
Eq. 8-11), LWS (Kang et al., ICLR 2020, Eq. 4) and cRT (ibid., Sec. 4) --
trains a few thousand parameters on top of a frozen network. The stage-2
parameters see only the classifier's input: the pooled neck feature
``x`` (N, D). :class:`CachedFeatureEpochBasedTrainLoop` therefore runs the
frozen part (``data_preprocessor`` -> backbone -> neck, eval mode, no
gradient) ONCE over the training set (optionally K augmented views),
stores ``x`` in a memory-mapped ``.npy`` file (float16 by default) with
the labels, and then trains the head on the cache:

* the same loss: ``head.loss((x,), data_samples)`` (the head's own loss
  module, e.g. ``GRWLoss``), parsed and stepped exactly as
  ``BaseModel.train_step`` does (``optim_wrapper.optim_context`` +
  ``parse_losses`` + ``update_params``);
* the same sampler: each epoch the configured sampler of the training
  dataloader (``DefaultSampler``, ``ClassBalancedSampler`` ...) is
  re-seeded by ``DistSamplerSeedHook`` and its ``batch_sampler`` yields
  the dataset indices of every batch -- the very index order the standard
  loop would load -- which select rows of the cache;
* the same schedule, optimizer wrapper and hooks (``before_run`` /
  ``before_train`` / ``before_train_epoch`` / ``before_train_iter`` /
  ``after_train_iter`` / ``after_train_epoch`` / ``after_train``, so
  ``Stage2FreezeHook``, ``ParamSchedulerHook``, ``CheckpointHook`` and the
  logger work unchanged); validation runs the normal val loop on images;
* the checkpoint is a normal checkpoint of the full model (the frozen
  tensors are the stage-1 tensors), so ``tools/test.py`` tests it
  unchanged.

When it matches the standard stage 2: the frozen part behaves the same
in train and eval mode (``Stage2FreezeHook(freeze_bn_stats=True)``, the
default: BatchNorm keeps its stage-1 statistics; no dropout / drop-path in
the backbone) and the training pipeline is deterministic (or
``pipeline='test'`` is chosen). Then the only difference is the storage
precision of ``x``: float16 rounds each feature with a relative error
``<= 2**-11`` (``dtype='float32'`` removes it). When it does not: with
random augmentation (``RandomCrop``, ``RandomFlip`` ...) the standard
stage 2 draws a new view of every image each epoch, the cache holds
``views`` draws (each epoch picks one of them per image, seeded by
``seed + epoch``); with one view it is stage 2 on a fixed augmentation.

Cost: building the cache costs about one standard epoch per view, so a
single run that builds its own cache is at most about ``epochs / views``
times faster; the cache is kept (``keep=True``) under a fingerprint of the
frozen weights, the data list, the pipeline, ``views``, ``dtype`` and -- for
the random ``'train'`` pipeline -- the seed, and later runs with the same
fingerprint (other stage-2 methods from the same stage-1 checkpoint,
re-runs) reuse it and only pay the cheap epochs
(``benchmarks/bench_stage2.py``).

Refused (``ValueError`` before any training step): a parameter outside
``head`` would train (e.g. no ``Stage2FreezeHook``); the head needs more
than the pooled feature (``head.pre_logits(feats)`` is not
``feats[-1]``, e.g. a stacked-linear or ViT head); batch augmentation
(Mixup / CutMix) in the data preprocessor; BatchNorm layers of the frozen
part in training mode (their batch statistics would differ); distributed
training (one process is enough on the cache); a model that is not an
``ImageClassifier``-like model (``extract_feat`` + ``head``).

Switched on by one config change::

    train_cfg = dict(
        _delete_=True,
        type='CachedFeatureEpochBasedTrainLoop',
        max_epochs=10,
        val_interval=5,
        cache=dict(views=1, dtype='float16', pipeline='train', dir=None))

or, in Python, :func:`use_cached_features` on a loaded config.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import os.path as osp
import shutil
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.model import is_model_wrapper
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lt_mm.core.checks import check_choice, check_range

CACHE_FORMAT = 'lt_mm.cls_feature_cache/v1'
CACHE_DTYPES = ('float16', 'float32')
CACHE_PIPELINES = ('train', 'test')
_CACHE_KEYS = ('views', 'dtype', 'pipeline', 'dir', 'batch_size', 'reuse',
               'keep')


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------
def check_cache_options(cache: Optional[dict]) -> Dict[str, Any]:
    """Validate the ``cache`` options of the loop and fill the defaults.

    Args:
        cache: ``dict(views=1, dtype='float16', pipeline='train', dir=None,
            batch_size=None, reuse=True, keep=True)`` or None (defaults).

            * ``views`` (int >= 1): K passes over the training set; each
              epoch uses one of them per image (random, seeded by
              ``seed + epoch``). Only useful with a random pipeline.
            * ``dtype``: ``'float16'`` (half the disk / memory; relative
              rounding error <= 2**-11) or ``'float32'`` (exact).
            * ``pipeline``: ``'train'`` (the configured training pipeline,
              as the standard stage 2) or ``'test'`` (the test pipeline on
              the training images: no augmentation; ``views`` must be 1).
            * ``dir``: folder of the cache files; None =
              ``<work_dir>/feature_cache``.
            * ``batch_size``: images per extraction batch (default: the
              training batch size).
            * ``reuse``: reuse a cache with the same fingerprint (frozen
              weights, data list, pipeline, views, dtype and -- for the
              random ``'train'`` pipeline -- the seed).
            * ``keep``: keep the files after training (for reuse).

    Returns:
        dict: the complete options.
    """
    cache = dict(cache or {})
    unknown = sorted(set(cache) - set(_CACHE_KEYS))
    if unknown:
        raise ValueError(f'cache has unknown keys {unknown}; allowed: '
                         f'{list(_CACHE_KEYS)}.')
    views = cache.get('views', 1)
    if isinstance(views, bool) or int(views) != views:
        raise ValueError(f'cache views={views!r} must be a positive integer '
                         '(the number of augmented views per image).')
    check_range('cache views', views, low=1)
    out: Dict[str, Any] = dict(
        views=int(views),
        dtype=check_choice('cache dtype', cache.get('dtype', 'float16'),
                           CACHE_DTYPES),
        pipeline=check_choice('cache pipeline', cache.get('pipeline', 'train'),
                              CACHE_PIPELINES),
        dir=cache.get('dir', None),
        batch_size=cache.get('batch_size', None),
        reuse=bool(cache.get('reuse', True)),
        keep=bool(cache.get('keep', True)))
    if out['pipeline'] == 'test' and out['views'] != 1:
        raise ValueError(
            f"cache views={out['views']} with pipeline='test': the test "
            'pipeline is deterministic, every view would be identical. Use '
            "views=1, or pipeline='train' for augmented views.")
    if out['batch_size'] is not None:
        bs = out['batch_size']
        if isinstance(bs, bool) or int(bs) != bs:
            raise ValueError(f'cache batch_size={bs!r} must be a positive '
                             'integer or None.')
        check_range('cache batch_size', bs, low=1)
        out['batch_size'] = int(bs)
    return out


def use_cached_features(cfg, **cache: Any):
    """Turn an epoch-based stage-2 config into stage 2 on cached features.

    Replaces ``cfg.train_cfg = dict(by_epoch=True, max_epochs=E, ...)`` by
    ``dict(type='CachedFeatureEpochBasedTrainLoop', max_epochs=E, ...,
    cache=cache)`` keeping ``max_epochs``, ``val_begin``, ``val_interval``
    and ``dynamic_intervals``. The config file equivalent is
    ``configs/quickstart/digits_cls_disalign_cached.py``.

    Args:
        cfg: an mmengine ``Config`` (changed in place and returned).
        **cache: see :func:`check_cache_options`.

    Returns:
        the same ``cfg``.
    """
    train_cfg = dict(cfg.get('train_cfg') or {})
    loop_type = train_cfg.pop('type', None)
    by_epoch = train_cfg.pop('by_epoch', loop_type is None)
    if loop_type not in (None, 'EpochBasedTrainLoop',
                         'CachedFeatureEpochBasedTrainLoop') or not by_epoch:
        raise ValueError(
            f'use_cached_features: train_cfg {cfg.get("train_cfg")!r} is not '
            'an epoch-based loop; stage 2 on cached features replaces '
            "dict(by_epoch=True, max_epochs=...) only.")
    if 'max_epochs' not in train_cfg:
        raise ValueError('use_cached_features: train_cfg has no max_epochs.')
    merged = dict(train_cfg.pop('cache', None) or {})
    merged.update(cache)
    check_cache_options(merged)
    cfg.train_cfg = dict(
        type='CachedFeatureEpochBasedTrainLoop', cache=merged, **train_cfg)
    return cfg


# ---------------------------------------------------------------------------
# model checks
# ---------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _in_head(name: str) -> bool:
    return name == 'head' or name.startswith('head.')


def check_cacheable_model(model: nn.Module) -> None:
    """Raise unless stage 2 of ``model`` can run on cached features.

    Structural checks (before training): an mmpretrain
    ``ImageClassifier``-like model (``extract_feat`` and ``head`` with
    ``loss``), no batch augmentation in the data preprocessor.
    """
    model = _unwrap(model)
    head = getattr(model, 'head', None)
    if not callable(getattr(model, 'extract_feat', None)) or head is None \
            or not callable(getattr(head, 'loss', None)):
        raise ValueError(
            'CachedFeatureEpochBasedTrainLoop supports classification models '
            '(mmpretrain ImageClassifier: extract_feat + head.loss); got '
            f'{type(model).__name__}. Segmentation / detection stage 2 on '
            'cached features is not implemented: use the standard loop '
            "(train_cfg=dict(by_epoch=..., ...)).")
    pre = getattr(model, 'data_preprocessor', None)
    if getattr(pre, 'batch_augments', None) is not None:
        raise ValueError(
            'CachedFeatureEpochBasedTrainLoop: the data preprocessor applies '
            'batch augmentation (Mixup / CutMix), which mixes images before '
            'the frozen backbone; a feature cache cannot reproduce it. '
            'Remove model.data_preprocessor.batch_augments or use the '
            'standard loop.')


def check_trainable_in_head(model: nn.Module) -> List[str]:
    """Names of the trainable parameters; raise unless all are in ``head``.

    Call after ``Stage2FreezeHook.before_run`` has set ``requires_grad``.
    """
    model = _unwrap(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    outside = [n for n in trainable if not _in_head(n)]
    if outside:
        raise ValueError(
            f'CachedFeatureEpochBasedTrainLoop: {len(outside)} trainable '
            f'parameters are outside the head (e.g. {outside[0]!r}); the '
            'cache holds the output of a frozen backbone + neck, so only '
            "head parameters may train. Add custom_hooks=[dict(type="
            "'Stage2FreezeHook')] (or narrow its `trainable`) or use the "
            'standard loop.')
    if not trainable:
        raise ValueError(
            'CachedFeatureEpochBasedTrainLoop: no parameter requires a '
            'gradient, nothing would train.')
    return trainable


def check_frozen_part_eval_like(model: nn.Module, runner) -> List[str]:
    """Check that the frozen part acts in training as in eval mode.

    Puts the model in training mode as the standard loop does, lets the
    ``before_train_iter`` of every registered hook that freezes modules
    (``Stage2FreezeHook`` puts frozen BatchNorm layers back in eval mode)
    run, and inspects the modules outside ``head``. Raises on BatchNorm
    layers in training mode (the standard stage 2 would normalise with
    batch statistics and update the running ones); returns the names of
    dropout-like modules in training mode (a mismatch to warn about).
    """
    from lt_mm.engine.hooks import Stage2FreezeHook
    model = _unwrap(model)
    was_training = model.training
    model.train()
    for hook in getattr(runner, 'hooks', []):
        if isinstance(hook, Stage2FreezeHook):
            hook.before_train_iter(runner, 0)
    bn, drop = [], []
    for name, m in model.named_modules():
        if _in_head(name) or not name or not m.training:
            continue
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            bn.append(name)
        elif isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            drop.append(name)
        elif 'droppath' in type(m).__name__.lower() and getattr(
                m, 'drop_prob', 0) > 0:
            drop.append(name)
    model.train(was_training)
    if bn:
        raise ValueError(
            f'CachedFeatureEpochBasedTrainLoop: {len(bn)} BatchNorm layers '
            f'of the frozen part train with batch statistics (e.g. {bn[0]!r})'
            '; the standard stage 2 would then differ from cached eval-mode '
            "features. Use custom_hooks=[dict(type='Stage2FreezeHook', "
            'freeze_bn_stats=True)] (the default) or the standard loop.')
    return drop


# ---------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------
def _sha1_state(module: nn.Module, skip_head: bool = True) -> str:
    h = hashlib.sha1()
    for k, v in module.state_dict().items():
        if skip_head and _in_head(k):
            continue
        t = v.detach().cpu().contiguous()
        h.update(f'{k}|{t.dtype}|{tuple(t.shape)}|'.encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _dataset_fingerprint(dataset: Any) -> str:
    h = hashlib.sha1()
    h.update(f'{type(dataset).__name__}|{len(dataset)}|'.encode())
    h.update(repr(getattr(dataset, 'pipeline', None)).encode())
    data_list = getattr(dataset, 'data_list', None)
    if data_list:
        for info in data_list:
            h.update(
                f"{info.get('img_path')}|{info.get('gt_label')}\n".encode())
    return h.hexdigest()


class FeatureCache:
    """Memory-mapped classifier inputs of a training set (with labels).

    Files in ``root``: ``feats.npy`` (K, N, D) float16/32 (opened with
    ``mmap_mode='r'``), ``labels.npy`` (N,) int64 and ``meta.json`` (format,
    fingerprint, shapes, build time; written last: a folder without it is
    incomplete and rebuilt).

    Args:
        root: the cache folder.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        with open(osp.join(root, 'meta.json'), encoding='utf-8') as f:
            self.meta = json.load(f)
        self.feats = np.load(osp.join(root, 'feats.npy'), mmap_mode='r')
        self.labels = np.load(osp.join(root, 'labels.npy'))
        if self.feats.ndim != 3 or self.feats.shape[1] != len(self.labels):
            raise ValueError(
                f'feature cache {root!r} is inconsistent: feats '
                f'{self.feats.shape}, labels {self.labels.shape}; delete it.')

    @property
    def num_views(self) -> int:
        """K."""
        return int(self.feats.shape[0])

    def __len__(self) -> int:
        """N, the number of training samples."""
        return int(self.feats.shape[1])

    def gather(self, views: np.ndarray, indices: np.ndarray) -> Tensor:
        """Rows ``feats[views[i], indices[i]]`` as float32, (B, D)."""
        return torch.from_numpy(
            np.asarray(self.feats[views, indices], dtype=np.float32))

    @staticmethod
    def is_complete(root: str, fingerprint: str) -> bool:
        """Whether ``root`` holds a finished cache with ``fingerprint``."""
        path = osp.join(root, 'meta.json')
        if not osp.isfile(path):
            return False
        try:
            with open(path, encoding='utf-8') as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError):
            return False
        return meta.get('format') == CACHE_FORMAT and meta.get(
            'fingerprint') == fingerprint


@torch.no_grad()
def extract_to_cache(model: nn.Module, loaders: Sequence[Any], root: str,
                     dtype: str, fingerprint: str) -> FeatureCache:
    """Run the frozen part over the training set and write the cache.

    For view k, ``loaders[k]`` yields the whole training set in dataset
    order (unshuffled ``DefaultSampler``); every batch goes through
    ``data_preprocessor(data, training=False)`` -> ``extract_feat`` (eval
    mode). The classifier input is ``feats[-1]`` (N, D); on the first batch
    ``head.pre_logits`` is checked to return it unchanged (otherwise the
    head needs more than the pooled feature and the cache is refused).

    Args:
        model: an mmpretrain ``ImageClassifier`` (unwrapped).
        loaders: one built dataloader per view.
        root: the cache folder (written atomically: ``root + '.tmp<pid>'``
            then renamed).
        dtype: ``'float16'`` or ``'float32'``.
        fingerprint: stored in ``meta.json``.

    Returns:
        FeatureCache: the opened cache.
    """
    t0 = time.time()
    np_dtype = np.float16 if dtype == 'float16' else np.float32
    tmp = f'{root}.tmp{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    was_training = model.training
    model.eval()
    n = len(loaders[0].dataset)
    mm = None
    labels = np.full(n, -1, dtype=np.int64)
    try:
        for k, loader in enumerate(loaders):
            if len(loader.dataset) != n:
                raise ValueError(
                    f'view {k} has {len(loader.dataset)} samples, view 0 has '
                    f'{n}; the cache needs the same training list.')
            pos = 0
            for data in loader:
                data = model.data_preprocessor(data, False)
                feats = model.extract_feat(data['inputs'])
                if mm is None:
                    x = _check_pre_logits(model.head, feats)
                    mm = np.lib.format.open_memmap(
                        osp.join(tmp, 'feats.npy'),
                        mode='w+',
                        dtype=np_dtype,
                        shape=(len(loaders), n, x.shape[1]))
                x = feats[-1]
                b = x.shape[0]
                if pos + b > n:
                    raise ValueError(
                        'the extraction loader yields more samples than the '
                        'dataset has; it must visit every index once.')
                mm[k, pos:pos + b] = x.float().cpu().numpy().astype(np_dtype)
                lab = _labels_of(data['data_samples'])
                if k == 0:
                    labels[pos:pos + b] = lab
                elif not np.array_equal(labels[pos:pos + b], lab):
                    raise ValueError(
                        f'view {k} visits the samples in another order than '
                        'view 0; the cache needs dataset order.')
                pos += b
            if pos != n:
                raise ValueError(f'view {k} yielded {pos} samples, the '
                                 f'dataset has {n}.')
        if mm is None:
            raise ValueError('the training set is empty.')
        mm.flush()
        del mm
        np.save(osp.join(tmp, 'labels.npy'), labels)
        meta = dict(
            format=CACHE_FORMAT,
            fingerprint=fingerprint,
            views=len(loaders),
            num_samples=n,
            dtype=dtype,
            seconds=time.time() - t0)
        with open(osp.join(tmp, 'meta.json'), 'w', encoding='utf-8') as f:
            json.dump(meta, f)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    return FeatureCache(root)


def _check_pre_logits(head: nn.Module, feats: Any) -> Tensor:
    """The pooled feature (N, D); raise if the head needs more than it."""
    if not isinstance(feats, (tuple, list)) or not feats or not isinstance(
            feats[-1], Tensor) or feats[-1].ndim != 2:
        last = feats[-1] if isinstance(feats, (tuple, list)) and feats \
            else feats
        shape = getattr(last, 'shape', None)
        raise ValueError(
            'CachedFeatureEpochBasedTrainLoop: the neck output must be a '
            'tuple whose last item is the pooled feature (N, D); got '
            f'{type(feats).__name__} with last item shape {shape}. Add a '
            "pooling neck (dict(type='GlobalAveragePooling')) or use the "
            'standard loop.')
    x = feats[-1]
    try:
        same = head.pre_logits(tuple(feats))
        alone = head.pre_logits((x, ))
    except Exception as e:  # noqa: BLE001  (report the head's failure)
        raise ValueError(
            f'CachedFeatureEpochBasedTrainLoop: {type(head).__name__}.'
            f'pre_logits fails on the pooled feature alone ({e}); the head '
            'needs more than the pooled feature. Use the standard loop.'
        ) from None
    if not (isinstance(same, Tensor) and isinstance(alone, Tensor)
            and same.shape == x.shape and alone.shape == x.shape
            and torch.equal(same, x) and torch.equal(alone, x)):
        raise ValueError(
            f'CachedFeatureEpochBasedTrainLoop: {type(head).__name__}.'
            'pre_logits transforms the neck output (it is not feats[-1]), '
            'so the head needs more than the pooled feature (e.g. '
            'StackedLinearClsHead, VisionTransformerClsHead). Only heads '
            'whose classifier reads the pooled feature directly (linear, '
            'cosine, DisAlign, LWS, cRT) can train on cached features.')
    return x


def _labels_of(data_samples: Sequence[Any]) -> np.ndarray:
    out = []
    for ds in data_samples:
        if 'gt_score' in ds or 'gt_label' not in ds:
            raise ValueError(
                'CachedFeatureEpochBasedTrainLoop needs single-label samples '
                '(gt_label); got soft / missing labels.')
        lab = ds.gt_label.reshape(-1)
        if lab.numel() != 1:
            raise ValueError(
                'CachedFeatureEpochBasedTrainLoop needs single-label samples;'
                f' a sample has {lab.numel()} labels.')
        out.append(int(lab[0]))
    return np.asarray(out, dtype=np.int64)


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------
@LOOPS.register_module()
class CachedFeatureEpochBasedTrainLoop(EpochBasedTrainLoop):
    """Epoch-based stage 2 on cached classifier inputs (see module doc).

    Args:
        runner: the Runner.
        dataloader: the training dataloader (config or built); its sampler
            drives the cache, its dataset and pipeline build it.
        max_epochs, val_begin, val_interval, dynamic_intervals: as
            ``EpochBasedTrainLoop``.
        cache: see :func:`check_cache_options`.

    Attributes:
        cache (FeatureCache): the opened cache (after the run starts).
        cache_seconds (float): time spent building (or opening) it.
        cache_reused (bool): whether an existing cache was reused.
    """

    def __init__(self,
                 runner,
                 dataloader,
                 max_epochs: int,
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 cache: Optional[dict] = None) -> None:
        self.cache_cfg = check_cache_options(cache)
        _, world = get_dist_info()
        if world > 1:
            raise ValueError(
                'CachedFeatureEpochBasedTrainLoop runs in one process (world '
                f'size is {world}): stage 2 on cached features is cheap; '
                'launch tools/train.py without a launcher.')
        check_cacheable_model(runner.model)
        self._loader_cfg = copy.deepcopy(dataloader) if isinstance(
            dataloader, dict) else None
        super().__init__(runner, dataloader, max_epochs, val_begin,
                         val_interval, dynamic_intervals)
        self.cache: Optional[FeatureCache] = None
        self.cache_seconds = 0.0
        self.cache_reused = False

    # -- cache ---------------------------------------------------------------
    def _extraction_loaders(self) -> List[Any]:
        """One unshuffled loader per view over the training samples."""
        from functools import partial

        from mmengine.dataset import worker_init_fn
        from torch.utils.data import DataLoader, SequentialSampler
        opts = self.cache_cfg
        runner = self.runner
        seed = runner.seed if runner.seed is not None else 0
        dl = self.dataloader
        if opts['pipeline'] == 'test':
            if self._loader_cfg is None:
                raise ValueError(
                    "cache pipeline='test' needs the training dataloader as "
                    'a config dict (it swaps in the test pipeline).')
            from .hooks import eval_dataloader_cfg
            cfg = eval_dataloader_cfg(
                dict(
                    train_dataloader=self._loader_cfg,
                    test_dataloader=runner.cfg.get('test_dataloader'),
                    val_dataloader=runner.cfg.get('val_dataloader')), 'train')
            if opts['batch_size']:
                cfg['batch_size'] = opts['batch_size']
            return [runner.build_dataloader(cfg, seed=seed)]
        # the training dataset itself (its pipeline), in dataset order; view
        # k seeds the loader workers with seed + k so augmenting workers
        # draw new views (without workers the global RNG moves on)
        workers = dl.num_workers
        return [
            DataLoader(
                dl.dataset,
                batch_size=opts['batch_size'] or dl.batch_size or 1,
                sampler=SequentialSampler(dl.dataset),
                collate_fn=dl.collate_fn,
                num_workers=workers,
                worker_init_fn=partial(
                    worker_init_fn, num_workers=workers, rank=0, seed=seed +
                    k) if workers else None) for k in range(opts['views'])
        ]

    def _fingerprint(self, model: nn.Module, dataset: Any) -> str:
        opts = self.cache_cfg
        parts = [
            CACHE_FORMAT,
            _sha1_state(model),
            _dataset_fingerprint(dataset), opts['pipeline'],
            str(opts['views']), opts['dtype']
        ]
        if opts['pipeline'] == 'train':  # random views depend on the seed
            parts.append(f'seed={self.runner.seed}')
        return hashlib.sha1('|'.join(parts).encode()).hexdigest()

    def prepare_cache(self) -> FeatureCache:
        """Check the model and build (or reuse) the feature cache."""
        runner = self.runner
        model = _unwrap(runner.model)
        check_trainable_in_head(model)
        drop = check_frozen_part_eval_like(model, runner)
        if drop:
            warnings.warn(
                f'CachedFeatureEpochBasedTrainLoop: {len(drop)} dropout / '
                f'drop-path modules of the frozen part (e.g. {drop[0]!r}) '
                'are active in the standard stage 2 but not in the cached '
                'eval-mode features.')
        t0 = time.time()
        loaders = self._extraction_loaders()
        opts = self.cache_cfg
        fp = self._fingerprint(model, loaders[0].dataset)
        folder = opts['dir'] or osp.join(runner.work_dir, 'feature_cache')
        root = osp.join(folder, fp[:16])
        if opts['reuse'] and FeatureCache.is_complete(root, fp):
            cache = FeatureCache(root)
            self.cache_reused = True
        else:
            cache = extract_to_cache(model, loaders, root, opts['dtype'], fp)
        if len(cache) != len(self.dataloader.dataset):
            raise ValueError(
                f'the cache has {len(cache)} samples but the training set '
                f'{len(self.dataloader.dataset)}.')
        self.cache = cache
        self.cache_seconds = time.time() - t0
        runner.logger.info(
            f'CachedFeatureEpochBasedTrainLoop: '
            f"{'reused' if self.cache_reused else 'built'} the feature cache "
            f'{root} ({cache.num_views} view(s) x {len(cache)} samples x '
            f"{cache.feats.shape[2]}, {opts['dtype']}, pipeline="
            f"{opts['pipeline']!r}) in {self.cache_seconds:.2f}s." +
            (f" Random transforms of the training pipeline are drawn "
             f"{cache.num_views} time(s) per image, not every epoch as in "
             "the standard stage 2." if opts['pipeline'] == 'train' else ''))
        return cache

    # -- training ------------------------------------------------------------
    def run(self) -> nn.Module:
        """``before_train``, build the cache, then train the head on it
        epoch by epoch (validation and hooks as ``EpochBasedTrainLoop``)."""
        runner = self.runner
        runner.call_hook('before_train')
        self.prepare_cache()
        try:
            while self._epoch < self._max_epochs and not self.stop_training:
                self.run_epoch()
                self._decide_current_val_interval()
                if (runner.val_loop is not None
                        and self._epoch >= self.val_begin
                        and (self._epoch % self.val_interval == 0
                             or self._epoch == self._max_epochs)):
                    runner.val_loop.run()
        finally:
            if not self.cache_cfg['keep'] and self.cache is not None:
                root = self.cache.root
                self.cache = None
                shutil.rmtree(root, ignore_errors=True)
        runner.call_hook('after_train')
        return runner.model

    def _epoch_views(self) -> np.ndarray:
        k = self.cache.num_views
        n = len(self.cache)
        if k == 1:
            return np.zeros(n, dtype=np.int64)
        g = torch.Generator()
        g.manual_seed(int(self.runner.seed or 0) + self._epoch)
        return torch.randint(k, (n, ), generator=g).numpy()

    def run_epoch(self) -> None:
        """One epoch over the sampler's index batches (no image loading)."""
        from mmpretrain.structures import DataSample
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        views = self._epoch_views()
        model = _unwrap(self.runner.model)
        device = next(model.head.parameters()).device
        for idx, indices in enumerate(self.dataloader.batch_sampler):
            indices = np.asarray(list(indices), dtype=np.int64)
            x = self.cache.gather(views[indices], indices).to(device)
            samples = [
                DataSample().set_gt_label(int(c))
                for c in self.cache.labels[indices]
            ]
            self.run_iter(idx, dict(inputs=x, data_samples=samples))
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx, data_batch: dict) -> None:
        """``BaseModel.train_step`` with the head on cached features."""
        runner = self.runner
        runner.call_hook(
            'before_train_iter', batch_idx=idx, data_batch=data_batch)
        model = _unwrap(runner.model)
        optim_wrapper = runner.optim_wrapper
        with optim_wrapper.optim_context(model):
            losses = model.head.loss((data_batch['inputs'], ),
                                     data_batch['data_samples'])
        parsed, log_vars = model.parse_losses(losses)
        optim_wrapper.update_params(parsed)
        runner.call_hook(
            'after_train_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=log_vars)
        self._iter += 1
