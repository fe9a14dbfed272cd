"""Stage 2 on cached classifier inputs: the parts shared by every toolbox.

Stage 2 of the decoupled methods -- DisAlign (Zhang et al., CVPR 2021,
Sec. 3.2, Eq. 5/6 with the GRW loss of Eq. 8-11), LWS (Kang et al., ICLR
2020, Eq. 4) and cRT (ibid., Sec. 4) -- trains a few parameters on top of
a frozen network, so the frozen part can run ONCE over the training set and
the classifier can train on its stored output. The toolbox adapters
(:mod:`lt_mm.cls.feature_cache`, :mod:`lt_mm.seg.feature_cache`,
:mod:`lt_mm.det.feature_cache`) say what
the classifier input is and how the loss reads it; this module holds what
does not depend on the toolbox:

* :func:`check_cache_options` -- the ``cache=dict(...)`` options of the
  loops (views, dtype, pipeline, dir, batch_size, reuse, keep, plus the
  adapter's own keys); :func:`switch_train_loop` -- the one config switch
  (each adapter's ``use_cached_features``);
* :func:`state_fingerprint` / :func:`dataset_fingerprint` /
  :func:`preprocessor_fingerprint` -- SHA-1 of the frozen weights, of the
  training list + pipeline (through dataset wrappers) and of the data
  preprocessor's normalisation (the cache key);
* :func:`check_trainable_within` / :func:`check_frozen_part_eval_like` --
  the refusals shared by the loops (a parameter outside the cached
  classifier would train; frozen BatchNorm in training mode);
* :class:`FeatureCache` / :class:`CacheWriter` -- the memory-mapped
  ``.npy`` files (``feats.npy`` (K, N, ...) float16/32, ``labels.npy``,
  optional ``views.npy`` (N, ) views per sample, ``meta.json`` written
  last; atomic rename);
* :func:`class_balanced_views` -- views per sample in proportion to its
  visits under class-balanced sampling;
* :func:`fuse_conv_bn` / :func:`outputs_match` -- a Conv-BatchNorm folded
  copy of the frozen network for the extraction, and the check that it
  computes the same;
* :class:`CachedFeatureLoopMixin` -- the loop machinery: extraction
  loaders (one unshuffled pass per view), fingerprint + reuse, the random
  view per visit, and one optimisation step on a cached batch exactly as
  ``BaseModel.train_step`` does it (``optim_context`` + ``parse_losses`` +
  ``update_params`` between the ``before_train_iter`` /
  ``after_train_iter`` hooks);
* :class:`InfiniteIndexIterator` -- the index batches of a dataloader's
  batch sampler, restarted like mmengine's ``_InfiniteDataloaderIterator``.

No toolbox import: only mmengine, numpy and torch.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import os.path as osp
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.model import is_model_wrapper
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lt_mm.core.checks import check_choice, check_range
from .file_stamp import file_stamp

CACHE_DTYPES = ('float16', 'float32')
CACHE_PIPELINES = ('train', 'test')
#: the ``data_list`` field that identifies an image in a dataset fingerprint
IMAGE_KEYS = ('img_path', )
BASE_CACHE_KEYS = ('views', 'dtype', 'pipeline', 'dir', 'batch_size', 'reuse',
                   'keep')


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------
def check_cache_options(
        cache: Optional[dict],
        extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Validate the ``cache`` options of a cached-feature loop.

    Args:
        cache: ``dict(views=1, dtype='float16', pipeline='train', dir=None,
            batch_size=None, reuse=True, keep=True, **adapter_keys)`` or
            None (defaults).

            * ``views`` (int >= 1): K passes over the training set; every
              visit of an image uses one of them (random, seeded). Only
              useful with a random pipeline.
            * ``dtype``: ``'float16'`` (half the disk / memory; relative
              rounding error <= 2**-11) or ``'float32'`` (exact).
            * ``pipeline``: ``'train'`` (the configured training pipeline,
              as the standard stage 2) or ``'test'`` (the test pipeline on
              the training images: no augmentation; ``views`` must be 1).
            * ``dir``: folder of the cache files; None =
              ``<work_dir>/feature_cache``.
            * ``batch_size``: images per extraction batch (default: the
              training dataloader's ``batch_size``; 1 when it batches
              through a ``batch_sampler``, as mmdet's
              ``AspectRatioBatchSampler``: dataset-order batches would mix
              aspect ratios and pad far more than the training batches).
            * ``reuse``: reuse a cache with the same fingerprint (frozen
              weights, data list, pipeline, views, dtype, the adapter's
              options and -- for the random ``'train'`` pipeline -- the
              seed).
            * ``keep``: keep the files after training (for reuse).
        extra: the adapter's own keys with their defaults (validated by
            the adapter); None = none.

    Returns:
        dict: the complete options (``extra`` keys filled with defaults).
    """
    cache = dict(cache or {})
    extra = dict(extra or {})
    allowed = list(BASE_CACHE_KEYS) + list(extra)
    unknown = sorted(set(cache) - set(allowed))
    if unknown:
        raise ValueError(f'cache has unknown keys {unknown}; allowed: '
                         f'{allowed}.')
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
    for key, default in extra.items():
        out[key] = cache.get(key, default)
    return out


# ---------------------------------------------------------------------------
# fingerprints
# ---------------------------------------------------------------------------
def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP-like wrapper (or the model itself)."""
    return model.module if is_model_wrapper(model) else model


def state_fingerprint(module: nn.Module,
                      skip: Callable[[str], bool] = lambda name: False) -> str:
    """SHA-1 of ``module.state_dict()`` (names, dtypes, shapes, bytes).

    Args:
        module: the model.
        skip: entries whose name it accepts are left out (the trained
            classifier: the cache holds its *input*).

    Returns:
        str: 40 hex digits.
    """
    h = hashlib.sha1()
    state = module.state_dict()
    # non-persistent buffers (e.g. the data preprocessor's ``mean`` /
    # ``std``) are not in the state dict but change the features too
    extra = {
        k: v
        for k, v in module.named_buffers() if k not in state and v is not None
    }
    for k, v in list(state.items()) + sorted(extra.items()):
        if skip(k):
            continue
        t = v.detach().cpu().contiguous()
        h.update(f'{k}|{t.dtype}|{tuple(t.shape)}|'.encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    """Whether ``value`` is a plain setting (numbers, strings, None and
    lists / tuples / dicts of them) whose ``repr`` is stable."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def preprocessor_fingerprint(preprocessor: Any) -> str:
    """SHA-1 of what a data preprocessor does to the images.

    Its buffers -- ``mean`` / ``std`` are *non-persistent* in every
    OpenMMLab preprocessor, so :func:`state_fingerprint` of a state dict
    alone misses them -- and its plain settings (``_channel_conversion`` /
    ``to_rgb``, ``_enable_normalize``, padding sizes and values...): a
    changed normalisation or channel order changes every cached feature.

    Args:
        preprocessor: the model's ``data_preprocessor`` (or None).

    Returns:
        str: 40 hex digits.
    """
    h = hashlib.sha1(type(preprocessor).__name__.encode())
    if isinstance(preprocessor, nn.Module):
        for k, v in sorted(preprocessor.named_buffers()):
            t = v.detach().cpu().contiguous()
            h.update(f'|{k}|{t.dtype}|{tuple(t.shape)}|'.encode())
            if t.numel():
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    for k, v in sorted(
            vars(preprocessor).items() if preprocessor is not None else ()):
        if k != 'training' and _plain(v):
            h.update(f'|{k}={v!r}'.encode())
    return h.hexdigest()


def _stamp(key: str, value: Any) -> str:
    # a local file behind a path field: its size and mtime (a file
    # rewritten under the same name is another sample)
    stamp = file_stamp(value) if key.endswith('_path') else ''
    return f'@{stamp}' if stamp else ''


# yapf: disable
def dataset_fingerprint(
        dataset: Any, keys: Sequence[str] = ('img_path', )) -> str:
    # yapf: enable
    """SHA-1 of a dataset's type, length, pipeline and data list (with
    the size and modification time of each local file named by a
    ``*_path`` field, :func:`lt_mm.engine.file_stamp.file_stamp`).

    The samples of a dataset that serialized its data list (mmengine's
    default ``serialize_data=True`` empties ``data_list`` after loading)
    are read with ``get_data_info``, so relabelled or replaced samples
    change the key of a serialized dataset too.

    mmengine's dataset wrappers (``ClassBalancedDataset`` -- e.g. mmdet's
    LVIS repeat-factor sampling --, ``RepeatDataset``, ``ConcatDataset``)
    have no ``data_list``; for them the hash covers the wrapper's type and
    repeat settings and, recursively, the fingerprints of the wrapped
    datasets, so a changed image list inside a wrapper changes the key.

    Args:
        dataset: an mmengine ``BaseDataset``-like object or wrapper.
        keys: the ``data_list`` fields hashed per sample (e.g.
            ``('img_path', 'gt_label')`` or ``('img_path',
            'seg_map_path')``).

    Returns:
        str: 40 hex digits.
    """
    h = hashlib.sha1()
    h.update(f'{type(dataset).__name__}|{len(dataset)}|'.encode())
    h.update(repr(getattr(dataset, 'pipeline', None)).encode())
    inner = list(getattr(dataset, 'datasets', None) or [])
    if getattr(dataset, 'dataset', None) is not None:
        inner.append(dataset.dataset)
    for attr in ('repeat_indices', 'times', 'oversample_thr'):
        if inner and hasattr(dataset, attr):
            h.update(f'|{attr}={getattr(dataset, attr)!r}'.encode())
    for ds in inner:
        h.update(dataset_fingerprint(ds, keys).encode())
    data_list = getattr(dataset, 'data_list', None)
    if not data_list and not inner and callable(
            getattr(dataset, 'get_data_info', None)):
        # mmengine's serialize_data=True (the default) empties data_list
        # after loading; the samples are then read back one by one
        data_list = (dataset.get_data_info(i) for i in range(len(dataset)))
    for info in data_list or ():
        h.update(('|'.join(f'{info.get(k)}{_stamp(k, info.get(k))}'
                           for k in keys) + '\n').encode())
    return h.hexdigest()


def switch_train_loop(cfg, loop: str, by_epoch: bool,
                      check: Callable[[dict], dict], **cache: Any):
    """Turn a stage-2 config's ``train_cfg`` into a cached-feature loop.

    Replaces ``dict(type='EpochBasedTrainLoop', max_epochs=E, ...)`` (or
    ``dict(by_epoch=True, max_epochs=E, ...)``; ``IterBasedTrainLoop`` /
    ``max_iters`` when ``by_epoch=False``) by ``dict(type=loop,
    max_epochs=E, ..., cache=cache)``, keeping the length, ``val_begin``,
    ``val_interval`` and ``dynamic_intervals``; a ``cache`` already in the
    config is updated by ``cache``. The adapters' ``use_cached_features``.

    Args:
        cfg: an mmengine ``Config`` (changed in place and returned).
        loop: the cached loop's registered name.
        by_epoch: whether ``loop`` is epoch based.
        check: the adapter's option check (``check_*_cache_options``).
        **cache: the cache options.

    Returns:
        the same ``cfg``.
    """
    stock, length = (('EpochBasedTrainLoop', 'max_epochs') if by_epoch else
                     ('IterBasedTrainLoop', 'max_iters'))
    kind = 'an epoch-based' if by_epoch else 'an iteration-based'
    train_cfg = dict(cfg.get('train_cfg') or {})
    loop_type = train_cfg.pop('type', None)
    given = train_cfg.pop('by_epoch', None)
    if given is None:  # as mmengine's Runner decides without a type
        given = by_epoch if loop_type == loop else (
            loop_type == 'EpochBasedTrainLoop' or
            (loop_type is None and 'max_iters' not in train_cfg))
    if loop_type not in (None, stock, loop) or bool(given) != by_epoch:
        raise ValueError(
            f'use_cached_features: train_cfg {cfg.get("train_cfg")!r} is not '
            f'{kind} loop; {loop} replaces dict(type={stock!r}, '
            f'{length}=...) only.')
    if length not in train_cfg:
        raise ValueError(f'use_cached_features: train_cfg has no {length}.')
    merged = dict(train_cfg.pop('cache', None) or {})
    merged.update(cache)
    check(merged)
    cfg.train_cfg = dict(type=loop, cache=merged, **train_cfg)
    return cfg


def cached_loop_switch(loop: str, by_epoch: bool, check: Callable[[dict],
                                                                  dict],
                       example: str) -> Callable[..., Any]:
    """An adapter's ``use_cached_features(cfg, **cache)``:
    :func:`switch_train_loop` bound to its loop and option check;
    ``example`` names the config file that does the same."""

    def use_cached_features(cfg, **cache: Any):
        return switch_train_loop(cfg, loop, by_epoch, check, **cache)

    use_cached_features.__doc__ = (
        f'Switch ``cfg.train_cfg`` to ``{loop}`` in place (options: '
        f'``{check.__name__}``); the config-file form is ``{example}``.')
    return use_cached_features


# ---------------------------------------------------------------------------
# model checks
# ---------------------------------------------------------------------------
def is_under(name: str, *prefixes: str) -> bool:
    """Whether a parameter / module ``name`` is one of ``prefixes`` or
    inside one (``'head.fc.weight'`` is under ``'head'``)."""
    return any(name == p or name.startswith(p + '.') for p in prefixes)


def under(*prefixes: str) -> Callable[[str], bool]:
    """The predicate ``name -> is_under(name, *prefixes)``."""
    return lambda name: is_under(name, *prefixes)


def check_trainable_within(model: nn.Module, inside: Callable[[str], bool],
                           where: str, loop: str) -> List[str]:
    """Names of the trainable parameters; raise unless ``inside`` all.

    Call after ``Stage2FreezeHook.before_run`` has set ``requires_grad``.

    Args:
        model: the (possibly wrapped) model.
        inside: whether a parameter name belongs to the cached classifier.
        where: its description in the message (``'the head'``).
        loop: the loop's name for the message.
    """
    model = unwrap_model(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    outside = [n for n in trainable if not inside(n)]
    if outside:
        raise ValueError(
            f'{loop}: {len(outside)} trainable parameters are outside '
            f'{where} (e.g. {outside[0]!r}); the cache holds the output of '
            f'the frozen part, so only parameters of {where} may train. Add '
            "custom_hooks=[dict(type='Stage2FreezeHook')] (or narrow its "
            '`trainable`) or use the standard loop.')
    if not trainable:
        raise ValueError(
            f'{loop}: no parameter requires a gradient, nothing would train.')
    return trainable


def check_frozen_part_eval_like(model: nn.Module, runner,
                                exempt: Callable[[str], bool],
                                loop: str) -> List[str]:
    """Check that the frozen part acts in training as in eval mode.

    Puts the model in training mode as the standard loop does, lets the
    ``before_train_iter`` of every ``Stage2FreezeHook`` run (it puts frozen
    BatchNorm layers back in eval mode) and inspects the modules that
    ``exempt`` does not accept (``exempt``: the classifier and what runs
    after the cache). Raises on BatchNorm layers in training mode (the
    standard stage 2 would normalise with batch statistics and update the
    running ones); returns the names of dropout-like modules in training
    mode (a mismatch the caller warns about).
    """
    from lt_mm.engine.hooks import Stage2FreezeHook
    model = unwrap_model(model)
    was_training = model.training
    model.train()
    bn, drop = [], []
    try:
        for hook in getattr(runner, 'hooks', []):
            if isinstance(hook, Stage2FreezeHook):
                hook.before_train_iter(runner, 0)
        for name, m in model.named_modules():
            if not name or exempt(name) or not m.training:
                continue
            if isinstance(m, _BatchNorm) and m.track_running_stats:
                bn.append(name)
            elif isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
                drop.append(name)
            elif 'droppath' in type(m).__name__.lower() and getattr(
                    m, 'drop_prob', 0) > 0:
                drop.append(name)
    finally:
        model.train(was_training)
    if bn:
        raise ValueError(
            f'{loop}: {len(bn)} BatchNorm layers of the frozen part train '
            f'with batch statistics (e.g. {bn[0]!r}); the standard stage 2 '
            'would then differ from cached eval-mode features. Use '
            "custom_hooks=[dict(type='Stage2FreezeHook', "
            'freeze_bn_stats=True)] (the default) or the standard loop.')
    return drop


# ---------------------------------------------------------------------------
# the cache files
# ---------------------------------------------------------------------------
class FeatureCache:
    """Memory-mapped classifier inputs of a training set (with labels).

    Files in ``root``: ``feats.npy`` (K, N, \\*F) float16/32, ``labels.npy``
    (N, \\*L) or, with ``meta['labels_per_view']``, (K, N, \\*L) (both
    opened with ``mmap_mode='r'``) and ``meta.json`` (format, fingerprint,
    shapes, build time; written last: a folder without it is incomplete
    and rebuilt). K views, N training samples.

    Args:
        root: the cache folder.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        with open(osp.join(root, 'meta.json'), encoding='utf-8') as f:
            self.meta = json.load(f)
        self.feats = np.load(osp.join(root, 'feats.npy'), mmap_mode='r')
        self.labels = np.load(osp.join(root, 'labels.npy'), mmap_mode='r')
        #: (N, ) int64 views per sample (its first ``sample_views[i]`` rows
        #: of ``feats`` hold data), or None: every sample has all K views
        self.sample_views: Optional[np.ndarray] = None
        if self.meta.get('sample_views', False):
            self.sample_views = np.load(osp.join(root, 'views.npy'))
        self.labels_per_view = bool(self.meta.get('labels_per_view', False))
        lab_n = self.labels.shape[1] if self.labels_per_view else \
            self.labels.shape[0]
        if self.feats.ndim < 3 or self.feats.shape[1] != lab_n or (
                self.labels_per_view
                and self.labels.shape[0] != self.feats.shape[0]):
            raise ValueError(
                f'feature cache {root!r} is inconsistent: feats '
                f'{self.feats.shape}, labels {self.labels.shape}; delete it.')
        sv = self.sample_views
        if sv is not None and (sv.shape != (self.feats.shape[1], ) or sv.min()
                               < 1 or sv.max() > self.feats.shape[0]):
            raise ValueError(
                f'feature cache {root!r} is inconsistent: views.npy '
                f'{sv.shape} must give 1..{self.feats.shape[0]} views for '
                f'each of the {self.feats.shape[1]} samples; delete it.')

    @property
    def num_views(self) -> int:
        """K (the most views a sample has)."""
        return int(self.feats.shape[0])

    def describe_views(self) -> str:
        """``'K view(s)'``, or ``'1-K views (R rows)'`` with views per
        sample (for log lines)."""
        if self.sample_views is None:
            return f'{self.num_views} view(s)'
        return (f'{int(self.sample_views.min())}-{self.num_views} views '
                f'({self.num_rows} rows)')

    @property
    def num_rows(self) -> int:
        """The feature rows that hold data: ``sum(sample_views)`` or K x N
        (one forward pass of the frozen part each)."""
        if self.sample_views is None:
            return self.num_views * len(self)
        return int(self.sample_views.sum())

    def __len__(self) -> int:
        """N, the number of training samples."""
        return int(self.feats.shape[1])

    def gather(self, views: np.ndarray, indices: np.ndarray) -> Tensor:
        """Rows ``feats[views[i], indices[i]]`` as float32, (B, \\*F)."""
        return torch.from_numpy(
            np.asarray(self.feats[views, indices], dtype=np.float32))

    def gather_labels(self, views: np.ndarray,
                      indices: np.ndarray) -> np.ndarray:
        """Labels of the rows, (B, \\*L) (the view's labels if per view)."""
        if self.labels_per_view:
            return np.asarray(self.labels[views, indices])
        return np.asarray(self.labels[indices])

    @staticmethod
    def is_complete(root: str, fingerprint: str, fmt: str) -> bool:
        """Whether ``root`` holds a finished cache of format ``fmt`` with
        ``fingerprint``."""
        path = osp.join(root, 'meta.json')
        if not osp.isfile(path):
            return False
        try:
            with open(path, encoding='utf-8') as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError):
            return False
        return meta.get('format') == fmt and meta.get(
            'fingerprint') == fingerprint


def class_balanced_views(sample_classes: Sequence[Sequence[int]],
                         max_views: int) -> np.ndarray:
    """Views per sample in proportion to its visits under class-balanced
    sampling.

    A class-balanced sampler (Decoupling, Kang et al., ICLR 2020, Eq. 1
    with q = 0) visits every class equally often, so it visits a sample of
    class c in proportion to ``1 / N_c`` (N_c = training samples of class
    c). Sample i of class c gets::

        v_i = ceil(K * N_min / N_c)     (1 <= v_i <= K)

    views, K = ``max_views``, N_min the smallest class: the rarest class K
    views, every other class in proportion to its visits (at least 1), so
    the visits per stored view are about equal across classes. A sample
    with several classes counts as its rarest class; one without a class
    gets 1 view.

    Example: classes ``[0] * 10 + [1] * 5 + [2] * 2`` and K = 4 give 1, 2
    and 4 views (ceil(0.8), ceil(1.6), ceil(4)).

    Args:
        sample_classes: the classes of each sample
            (:func:`lt_mm.engine.sample_classes.get_sample_classes`).
        max_views: K >= 1.

    Returns:
        np.ndarray: (N, ) int64 in [1, K].
    """
    check_range('max_views', max_views, low=1)
    counts: Dict[int, int] = {}
    for classes in sample_classes:
        for c in set(classes):
            counts[int(c)] = counts.get(int(c), 0) + 1
    out = np.ones(len(sample_classes), dtype=np.int64)
    if not counts:
        return out
    n_min = min(counts.values())
    k = int(max_views)
    for i, classes in enumerate(sample_classes):
        if classes:
            n_c = min(counts[int(c)] for c in classes)
            out[i] = -(-k * n_min // n_c)  # integer ceil
    return out


def view_rows(sample_views: Optional[np.ndarray], n: int,
              k: int) -> np.ndarray:
    """The samples that have a view ``k``, in dataset order: all ``n`` or,
    with ``sample_views``, those with more than ``k`` views."""
    if sample_views is None:
        return np.arange(n)
    return np.flatnonzero(np.asarray(sample_views) > k)


def check_view_lengths(loaders: Sequence[Any]) -> int:
    """The number of training samples N; every view's loader must hold the
    same N (the cache rows are the dataset indices)."""
    n = len(loaders[0].dataset)
    for k, loader in enumerate(loaders):
        if len(loader.dataset) != n:
            raise ValueError(
                f'view {k} has {len(loader.dataset)} samples, view 0 has '
                f'{n}; the cache needs the same training list.')
    return n


class CacheWriter:
    """Write a :class:`FeatureCache` atomically.

    Use as a context manager: the arrays are created lazily (shape known at
    the first batch) as ``.npy`` memmaps in ``root + '.tmp<pid>'``;
    :meth:`finish` writes ``meta.json`` and renames the folder to ``root``
    (replacing an older cache); an exception removes the temporary folder.

    Args:
        root: the final cache folder.
        fmt: the cache format string (``meta['format']``).
        fingerprint: stored in ``meta.json``.
        dtype: ``'float16'`` or ``'float32'`` (the features).
    """

    def __init__(self, root: str, fmt: str, fingerprint: str,
                 dtype: str) -> None:
        self.root = root
        self.fmt = fmt
        self.fingerprint = fingerprint
        self.dtype = dtype
        self.np_dtype = np.float16 if dtype == 'float16' else np.float32
        self.tmp = f'{root}.tmp{os.getpid()}'
        self.arrays: Dict[str, np.ndarray] = {}
        self.t0 = time.time()

    def __enter__(self) -> 'CacheWriter':
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.arrays.clear()
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def array(self,
              name: str,
              shape: Tuple[int, ...],
              dtype: Any = None) -> np.ndarray:
        """The memmap ``<name>.npy`` (created on the first call)."""
        if name not in self.arrays:
            self.arrays[name] = np.lib.format.open_memmap(
                osp.join(self.tmp, f'{name}.npy'),
                mode='w+',
                dtype=self.np_dtype if dtype is None else dtype,
                shape=tuple(int(s) for s in shape))
        return self.arrays[name]

    def finish(self, **meta: Any) -> FeatureCache:
        """Flush, write ``meta.json`` (format, fingerprint, dtype, build
        seconds and ``meta``), rename to ``root`` and open it."""
        if 'feats' not in self.arrays or 'labels' not in self.arrays:
            raise ValueError('the training set is empty.')
        for arr in self.arrays.values():
            arr.flush()
        self.arrays.clear()
        info = dict(
            format=self.fmt,
            fingerprint=self.fingerprint,
            dtype=self.dtype,
            seconds=time.time() - self.t0)
        info.update(meta)
        with open(osp.join(self.tmp, 'meta.json'), 'w', encoding='utf-8') as f:
            json.dump(info, f)
        shutil.rmtree(self.root, ignore_errors=True)
        os.replace(self.tmp, self.root)
        return FeatureCache(self.root)


# ---------------------------------------------------------------------------
# the loop machinery
# ---------------------------------------------------------------------------
class InfiniteIndexIterator:
    """Index batches of a dataloader's ``batch_sampler``, without end.

    Yields what the standard iteration-based loop would load: the indices
    of each batch in the order of the configured sampler
    (``InfiniteSampler`` never ends; a finite sampler is restarted with
    ``set_epoch(epoch + 1)`` like mmengine's
    ``_InfiniteDataloaderIterator``). No image is loaded.

    Every (re)start draws the one number a torch ``DataLoader`` iterator
    draws from the global torch generator (its workers' base seed), so the
    global random state stays that of the standard loop -- mmengine's
    ``Runner.train`` builds the loop (whose iterator draws it) *before*
    initialising the weights that the stage-1 checkpoint lacks (e.g.
    DisAlign's confidence layer, drawn from that state).

    Args:
        dataloader: a built dataloader.
    """

    def __init__(self, dataloader) -> None:
        self._dataloader = dataloader
        self._epoch = 0
        self._iterator = self._start()

    def _start(self):
        torch.empty((), dtype=torch.int64).random_(
            generator=getattr(self._dataloader, 'generator', None))
        return iter(self._dataloader.batch_sampler)

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._epoch += 1
            sampler = getattr(self._dataloader, 'sampler', None)
            if not hasattr(sampler, 'set_epoch'):
                sampler = getattr(self._dataloader.batch_sampler, 'sampler',
                                  None)
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(self._epoch)
            self._iterator = self._start()
            batch = next(self._iterator)
        return np.asarray(list(batch), dtype=np.int64)


#: fused vs. original output of the frozen part on the first images of the
#: extraction: the largest difference accepted, relative to the output's
#: largest magnitude (folding BatchNorm into the convolution changes the
#: rounding only, measured ~4e-7; float16 storage rounds by up to 4.9e-4)
FUSE_CHECK_RTOL = 1e-4


def fuse_conv_bn(module: nn.Module) -> Optional[nn.Module]:
    """A copy of an eval-mode ``module`` with every Conv-BatchNorm pair
    folded into one convolution, or None when ``torch.fx`` cannot trace it.

    Frozen BatchNorm in eval mode is the affine map
    ``y = (x - mean) / sqrt(var + eps) * w + b``, so a convolution followed
    by it is one convolution with scaled weights and a bias
    (``torch.fx.experimental.optimization.fuse``): the same function up to
    rounding, one memory pass less per layer (the quickstart ResNet's
    forward ~27 % faster on CPU). ``module`` itself is untouched. Callers
    compare the copy's output with the original's before using it
    (:data:`FUSE_CHECK_RTOL`): tracing may bake in a branch.
    """
    from torch.fx.experimental.optimization import fuse
    if module.training:
        raise ValueError('fuse_conv_bn needs the module in eval mode.')
    try:
        return fuse(module, inplace=False)
    except Exception:  # noqa: BLE001  (not traceable: use the original)
        return None


def outputs_match(a: Any, b: Any, rtol: float = FUSE_CHECK_RTOL) -> bool:
    """Whether two outputs (tensors or nested tuples / lists of them) have
    the same structure and shapes and differ by at most ``rtol`` times the
    largest magnitude of ``a``."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.shape != b.shape:
            return False
        if a.numel() == 0:
            return True
        scale = float(a.detach().abs().max())
        diff = float((a.detach() - b.detach()).abs().max())
        return diff <= rtol * max(scale, 1e-12)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(
            outputs_match(x, y, rtol) for x, y in zip(a, b))
    return False


def warn_active_dropout(drop: List[str], loop: str) -> None:
    """Warn that dropout / drop-path modules of the frozen part are active
    in the standard stage 2 but not in the cached (eval-mode) features."""
    if drop:
        import warnings
        warnings.warn(
            f'{loop}: {len(drop)} dropout / drop-path modules of the frozen '
            f'part (e.g. {drop[0]!r}) are active in the standard stage 2 but '
            'not in the cached eval-mode features.')


class CachedFeatureLoopMixin:
    """Shared machinery of the cached-feature training loops.

    A loop class mixes it in before mmengine's loop
    (``class L(CachedFeatureLoopMixin, EpochBasedTrainLoop)``) and defines

    * ``cache_format`` (str) and ``extra_cache_keys`` (dict of its own
      ``cache`` keys and defaults);
    * :meth:`check_model_before_cache` (refusals needing the frozen model);
    * :meth:`build_cache` (run the frozen part, write with
      :class:`CacheWriter`);
    * :meth:`fingerprint_parts` (what else keys the cache) and
      :meth:`describe_cache` (the log line).

    Attributes:
        cache (FeatureCache): the opened cache (after the run starts).
        cache_seconds (float): time spent building (or opening) it.
        cache_reused (bool): whether an existing cache was reused.
    """

    cache_format = 'lt_mm.feature_cache/v1'
    #: the class that opens a complete cache folder (an adapter may extend
    #: :class:`FeatureCache` with its own arrays)
    cache_class = FeatureCache
    extra_cache_keys: Dict[str, Any] = {}
    #: restore the python / numpy / torch random states after building or
    #: opening the cache, so that a run on a reused cache and a run that
    #: builds it continue from the same random state (extraction loaders
    #: and random transforms draw from the global generators)
    restore_rng_after_cache = False

    def _init_cache_options(self, runner, dataloader,
                            cache: Optional[dict]) -> None:
        """Validate options, refuse distributed runs (call first)."""
        self.cache_cfg = check_cache_options(cache, self.extra_cache_keys)
        _, world = get_dist_info()
        if world > 1:
            raise ValueError(
                f'{type(self).__name__} runs in one process (world size is '
                f'{world}): stage 2 on cached features is cheap; launch '
                'tools/train.py without a launcher.')
        self._loader_cfg = copy.deepcopy(dataloader) if isinstance(
            dataloader, dict) else None
        self.cache: Optional[FeatureCache] = None
        self.sample_views: Optional[np.ndarray] = None
        self.cache_seconds = 0.0
        self.cache_reused = False

    # -- hooks for the adapters ---------------------------------------------
    def check_model_before_cache(self, model: nn.Module) -> None:
        """Refusals on the frozen model (trainable set, BN mode, ...)."""
        raise NotImplementedError

    #: ``(model, loaders, root, dtype, fingerprint) -> cache``: the
    #: adapter's extraction (used by the default :meth:`build_cache`)
    cache_extract: Callable[..., FeatureCache]

    def build_cache(self, model: nn.Module, loaders: List[Any], root: str,
                    fingerprint: str) -> FeatureCache:
        """Run the frozen part over ``loaders`` and write the cache
        (``cache_extract`` unless the adapter needs more options)."""
        return type(self).cache_extract(model, loaders, root,
                                        self.cache_cfg['dtype'], fingerprint)

    def fingerprint_parts(self, model: nn.Module) -> List[str]:
        """Strings keying the cache besides options and data (e.g. the
        frozen weights' :func:`state_fingerprint`)."""
        raise NotImplementedError

    def describe_cache(self, cache: FeatureCache) -> str:
        """Shape description for the log line."""
        return f'{cache.describe_views()} x {len(cache)} samples'

    def allocate_views(self, dataset: Any) -> Optional[np.ndarray]:
        """Views per sample ((N, ) int64 in [1, K]) when they differ
        between samples, or None: every sample gets ``views``."""
        return None

    # -- cache ---------------------------------------------------------------
    def _extraction_loaders(self,
                            sample_views: Optional[np.ndarray] = None
                            ) -> List[Any]:
        """One unshuffled loader per view over the training samples (with
        ``sample_views``: view k over the samples that have more than k
        views, in dataset order)."""
        from functools import partial

        from mmengine.dataset import worker_init_fn
        from torch.utils.data import DataLoader

        from lt_mm.engine.features import eval_dataloader_cfg
        opts = self.cache_cfg
        runner = self.runner
        seed = runner.seed if runner.seed is not None else 0
        dl = self.dataloader
        if opts['pipeline'] == 'test':
            if self._loader_cfg is None:
                raise ValueError(
                    "cache pipeline='test' needs the training dataloader as "
                    'a config dict (it swaps in the test pipeline).')
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
        # a batch_sampler (mmdet's AspectRatioBatchSampler) leaves
        # dl.batch_size None: one image per batch (see check_cache_options)
        return [
            DataLoader(
                dl.dataset,
                batch_size=opts['batch_size'] or dl.batch_size or 1,
                sampler=view_rows(sample_views, len(dl.dataset), k).tolist(),
                collate_fn=dl.collate_fn,
                num_workers=workers,
                worker_init_fn=partial(
                    worker_init_fn, num_workers=workers, rank=0, seed=seed +
                    k) if workers else None) for k in range(opts['views'])
        ]

    def _fingerprint(self,
                     model: nn.Module,
                     dataset: Any,
                     keys: Sequence[str],
                     sample_views: Optional[np.ndarray] = None) -> str:
        opts = self.cache_cfg
        parts = [self.cache_format] + list(self.fingerprint_parts(model)) + [
            'preprocessor=' + preprocessor_fingerprint(
                getattr(model, 'data_preprocessor', None)),
            dataset_fingerprint(dataset, keys), opts['pipeline'],
            str(opts['views']), opts['dtype']
        ]
        parts += [f'{k}={opts[k]!r}' for k in self.extra_cache_keys]
        if sample_views is not None:
            parts.append('sample_views=' + hashlib.sha1(
                np.ascontiguousarray(sample_views, np.int64)).hexdigest())
        if opts['pipeline'] == 'train':  # random views depend on the seed
            parts.append(f'seed={self.runner.seed}')
        return hashlib.sha1('|'.join(parts).encode()).hexdigest()

    def prepare_cache(self, keys: Sequence[str] = IMAGE_KEYS) -> FeatureCache:
        """Check the model and build (or reuse) the feature cache.

        Args:
            keys: the ``data_list`` fields of the dataset fingerprint.
        """
        runner = self.runner
        model = unwrap_model(runner.model)
        self.check_model_before_cache(model)
        if self.restore_rng_after_cache:
            from lt_mm.engine.hooks import get_rng_state, set_rng_state
            state = get_rng_state()
            try:
                return self._open_or_build(keys)
            finally:
                set_rng_state(state)
        return self._open_or_build(keys)

    def _open_or_build(self, keys: Sequence[str]) -> FeatureCache:
        runner = self.runner
        model = unwrap_model(runner.model)
        t0 = time.time()
        self.sample_views = self.allocate_views(self.dataloader.dataset)
        loaders = self._extraction_loaders(self.sample_views)
        opts = self.cache_cfg
        fp = self._fingerprint(model, loaders[0].dataset, keys,
                               self.sample_views)
        folder = opts['dir'] or osp.join(runner.work_dir, 'feature_cache')
        root = osp.join(folder, fp[:16])
        if opts['reuse'] and FeatureCache.is_complete(root, fp,
                                                      self.cache_format):
            cache = self.cache_class(root)
            self.cache_reused = True
        else:
            self._warn_rebuild_on_resume(root)
            cache = self.build_cache(model, loaders, root, fp)
        if len(cache) != len(self.dataloader.dataset):
            raise ValueError(
                f'the cache has {len(cache)} samples but the training set '
                f'{len(self.dataloader.dataset)}.')
        if not (cache.sample_views is None and self.sample_views is None
                or cache.sample_views is not None
                and self.sample_views is not None
                and np.array_equal(cache.sample_views, self.sample_views)):
            raise ValueError(
                f'the feature cache {root!r} holds other views per sample '
                'than this run allocates; delete it.')
        self.cache = cache
        self.cache_seconds = time.time() - t0
        runner.logger.info(
            f'{type(self).__name__}: '
            f"{'reused' if self.cache_reused else 'built'} the feature cache "
            f'{root} ({self.describe_cache(cache)}, {opts["dtype"]}, '
            f"pipeline={opts['pipeline']!r}) in {self.cache_seconds:.2f}s." +
            (f" Random transforms of the training pipeline are drawn once "
             f"per stored view ({cache.describe_views()} per image), not at "
             "every visit as in the standard stage 2." if opts['pipeline'] ==
             'train' else ''))
        return cache

    def _warn_rebuild_on_resume(self, root: str) -> None:
        """A resumed run that must build the cache with the random training
        pipeline draws new views: warn that it is not the straight run."""
        if self.cache_cfg['pipeline'] != 'train' or not (self._epoch
                                                         or self._iter):
            return
        from mmengine.logging import print_log
        print_log(
            f'{type(self).__name__}: resuming at epoch {self._epoch} / '
            f'iteration {self._iter} without the feature cache of the '
            f'interrupted run ({root} is missing or incomplete): its random '
            'views are drawn anew, so the resumed run does not continue the '
            'straight run exactly. Keep the cache (cache keep=True, the '
            'default, and the same cache dir) for an exact resume.',
            logger='current',
            level=logging.WARNING)

    def drop_cache(self) -> None:
        """Delete the cache files unless ``keep``."""
        if not self.cache_cfg['keep'] and self.cache is not None:
            root = self.cache.root
            self.cache = None
            shutil.rmtree(root, ignore_errors=True)

    def _view_generator(self, seed_offset: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(int(self.runner.seed or 0) + int(seed_offset))
        return g

    def view_sampler(self,
                     seed_offset: int) -> Callable[[np.ndarray], np.ndarray]:
        """A function ``draw(indices)`` giving one view per visit of the
        samples ``indices`` (B, ), from one generator seeded by
        ``seed + offset``: uniform in [0, K), or in [0, v_i) when the cache
        holds ``v_i`` views of sample i (``sample_views``); all zeros with
        one view.

        The standard stage 2 draws new random transforms at every visit of
        an image, including repeated visits within an epoch (class-balanced
        sampling repeats tail images); drawing the view per visit, not per
        image, keeps that as far as the stored views allow.
        """
        k = self.cache.num_views
        if k == 1:
            return lambda idx: np.zeros(len(idx), dtype=np.int64)
        g = self._view_generator(seed_offset)
        per = self.cache.sample_views
        if per is None:
            return lambda idx: torch.randint(
                k, (len(idx), ), generator=g).numpy()

        def draw(idx: np.ndarray) -> np.ndarray:
            u = torch.rand(len(idx), generator=g, dtype=torch.float64)
            return (u.numpy() * per[idx]).astype(np.int64)  # floor: < v_i

        return draw

    def random_views(self, n: int, seed_offset: int) -> np.ndarray:
        """``n`` views uniform in [0, K), seeded by ``seed + offset``
        (all zeros with one view)."""
        k = self.cache.num_views
        if k == 1:
            return np.zeros(n, dtype=np.int64)
        return torch.randint(
            k, (n, ), generator=self._view_generator(seed_offset)).numpy()

    # -- training ------------------------------------------------------------
    def train_on_cache(self, batch_idx: int, data_batch: dict,
                       loss_fn: Callable[[nn.Module, dict], dict]) -> None:
        """One step ``BaseModel.train_step`` would take, on a cached batch.

        ``before_train_iter`` hooks; under ``optim_wrapper.optim_context``
        the losses ``loss_fn(model, data_batch)``; ``model.parse_losses``;
        ``optim_wrapper.update_params``; ``after_train_iter`` hooks with the
        log variables; ``self._iter += 1``.
        """
        runner = self.runner
        runner.call_hook(
            'before_train_iter', batch_idx=batch_idx, data_batch=data_batch)
        model = unwrap_model(runner.model)
        optim_wrapper = runner.optim_wrapper
        with optim_wrapper.optim_context(model):
            losses = loss_fn(model, data_batch)
        parsed, log_vars = model.parse_losses(losses)
        optim_wrapper.update_params(parsed)
        runner.call_hook(
            'after_train_iter',
            batch_idx=batch_idx,
            data_batch=data_batch,
            outputs=log_vars)
        self._iter += 1


class CachedFeatureEpochLoopMixin(CachedFeatureLoopMixin):
    """The epoch-based cached loop (``run`` / ``run_epoch`` / ``run_iter``).

    Mixed in before ``EpochBasedTrainLoop``; the adapter defines
    :meth:`cached_batch` (the batch its loss reads, built from cache rows)
    and ``cache_loss`` (``(model, data_batch) -> losses``, e.g. the head's
    own loss); validation, hooks and the epoch counter behave as in
    ``EpochBasedTrainLoop``, each epoch visits the sampler's index batches
    (no image loading) with one random view per visit
    (:meth:`CachedFeatureLoopMixin.view_sampler`).
    """

    cache_loss: Callable[[nn.Module, dict], dict]

    def __init__(self,
                 runner,
                 dataloader,
                 max_epochs: int,
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 cache: Optional[dict] = None) -> None:
        self._init_cache_options(runner, dataloader, cache)
        self.cache_cfg = self.check_options(self.cache_cfg)
        self.check_cacheable(runner.model)
        super().__init__(runner, dataloader, max_epochs, val_begin,
                         val_interval, dynamic_intervals)

    def check_options(self, cache_cfg: dict) -> dict:
        """The adapter's own checks of the (validated) cache options."""
        return cache_cfg

    def check_cacheable(self, model: nn.Module) -> None:
        """Refuse a model the adapter cannot cache (at construction)."""

    def cached_batch(self, views: np.ndarray, indices: np.ndarray) -> dict:
        """The batch of cache rows ``feats[views[i], indices[i]]`` (both
        (B, ): one view per visit)."""
        raise NotImplementedError

    def run(self) -> nn.Module:
        """``before_train``, build the cache, then train on it epoch by
        epoch (validation and hooks as ``EpochBasedTrainLoop``)."""
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
            self.drop_cache()
        runner.call_hook('after_train')
        return runner.model

    def run_epoch(self) -> None:
        """One epoch over the sampler's index batches."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        draw_views = self.view_sampler(self._epoch)
        for idx, indices in enumerate(self.dataloader.batch_sampler):
            indices = np.asarray(list(indices), dtype=np.int64)
            self.run_iter(idx, self.cached_batch(draw_views(indices), indices))
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx, data_batch: dict) -> None:
        """``BaseModel.train_step`` with ``cache_loss`` on a cached batch."""
        self.train_on_cache(idx, data_batch, type(self).cache_loss)
