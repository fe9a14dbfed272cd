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
stage 2 draws a new view at every visit of an image (class-balanced
sampling visits a tail image many times per epoch), the cache holds
``views`` draws (every visit picks one of them, seeded by
``seed + epoch``); with one view it is stage 2 on a fixed augmentation.
``view_allocation='class_balanced'`` gives each image views in proportion
to its visits under class-balanced sampling (the rarest class ``views``,
the head classes one), so that the often visited tail images are not
trained on one fixed crop.

Cost: building the cache costs about one standard epoch per view (one
forward pass per stored view and image, ``FeatureCache.num_rows`` in all;
measured 0.75-0.9 of an epoch on the quickstart CPU with channels_last
input and BatchNorm folded into the convolutions), so a single run that
builds its own cache is at most about ``epochs / views`` times faster
(``epochs * N / num_rows`` with a class-balanced allocation); the cache is
kept (``keep=True``) under a fingerprint of the frozen weights, the data
list, the pipeline, ``views``, ``dtype`` and -- for the random ``'train'``
pipeline -- the seed, and later runs with the same fingerprint (other
stage-2 methods from the same stage-1 checkpoint, re-runs) reuse it and
only pay the cheap epochs (``benchmarks/bench_stage2.py``).

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
        cache=dict(views=1, dtype='float16', pipeline='train', dir=None,
                   channels_last=True, view_allocation='uniform'))

or, in Python, :func:`use_cached_features` on a loaded config.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch import Tensor, nn

from lt_mm.core.checks import check_choice
from lt_mm.engine.feature_cache import (CACHE_DTYPES, CACHE_PIPELINES,
                                        FUSE_CHECK_RTOL,
                                        CachedFeatureEpochLoopMixin,
                                        CacheWriter, FeatureCache,
                                        cached_loop_switch)
from lt_mm.engine.feature_cache import \
    check_cache_options as _check_cache_options
from lt_mm.engine.feature_cache import \
    check_frozen_part_eval_like as _check_eval_like
from lt_mm.engine.feature_cache import (check_trainable_within,
                                        check_view_lengths,
                                        class_balanced_views, fuse_conv_bn,
                                        outputs_match, state_fingerprint,
                                        unwrap_model, view_rows,
                                        warn_active_dropout)
from lt_mm.engine.sample_classes import get_sample_classes

CACHE_FORMAT = 'lt_mm.cls_feature_cache/v1'
LOOP = 'CachedFeatureEpochBasedTrainLoop'
__all__ = [
    'CACHE_FORMAT', 'CACHE_DTYPES', 'CACHE_PIPELINES', 'CLS_CACHE_KEYS',
    'VIEW_ALLOCATIONS', 'FeatureCache', 'check_cache_options',
    'use_cached_features', 'check_cacheable_model', 'check_trainable_in_head',
    'check_frozen_part_eval_like', 'extract_to_cache',
    'CachedFeatureEpochBasedTrainLoop'
]

#: the classification loop's own ``cache`` keys and their defaults
CLS_CACHE_KEYS = dict(
    channels_last=True, fuse_conv_bn=True, view_allocation='uniform')
#: how the ``views`` are spread over the training samples
VIEW_ALLOCATIONS = ('uniform', 'class_balanced')


def check_cache_options(cache: Optional[dict]) -> dict:
    """Validate the ``cache`` options of the loop and fill the defaults.

    The options of
    :func:`lt_mm.engine.feature_cache.check_cache_options` (``views``,
    ``dtype``, ``pipeline``, ``dir``, ``batch_size``, ``reuse``, ``keep``)
    and

    * ``channels_last`` (bool, default True): the extraction feeds the
      image batches to the frozen network in ``torch.channels_last``
      memory format (the weights are untouched). The features are the same
      up to the summation order of the convolutions (measured ~1e-7
      relative, far below the float16 storage); on the quickstart CPU the
      frozen forward is 15-25 % faster, the whole cache build ~10 %
      (``benchmarks/bench_stage2.py --no-channels-last``). False keeps
      the contiguous (NCHW) input, e.g. for a backbone that calls
      ``view`` on its input.
    * ``fuse_conv_bn`` (bool, default True): the extraction runs a copy of
      the frozen backbone with every Conv-BatchNorm pair folded into one
      convolution (:func:`lt_mm.engine.feature_cache.fuse_conv_bn`; the
      same function up to rounding, ~4e-7 relative; on the quickstart CPU
      the frozen forward ~27 % faster). The copy is used only if its
      features on the first two images match the original backbone's
      (relative difference <= 1e-4); otherwise, or when ``torch.fx``
      cannot trace the backbone, the original runs (with a warning). The
      model and its checkpoint are untouched.
    * ``view_allocation`` (default ``'uniform'``): every image gets
      ``views`` views; ``'class_balanced'``: an image of class c gets
      ``ceil(views * N_min / N_c)`` views
      (:func:`lt_mm.engine.feature_cache.class_balanced_views`), in
      proportion to how often a class-balanced sampler (cRT, LWS) visits
      it: the rarest class ``views``, the head classes 1. The cache build
      runs one forward pass per stored view, so this buys the often
      visited tail images many views for little more than one pass over
      the training set (quickstart: ``views=8`` stores 1-8 views, 1.24
      passes; cRT then stays within 0.6 point of the standard stage 2
      where one view per image loses 3.9 few-shot points,
      ``benchmarks/README.md``). ``feats.npy`` keeps its (K, N, D) shape,
      of which ``num_rows`` rows are written (a sparse file on most
      filesystems). Needs ``views >= 2`` and the ``'train'`` pipeline.
    """
    out = _check_cache_options(cache, CLS_CACHE_KEYS)
    for key in ('channels_last', 'fuse_conv_bn'):
        if not isinstance(out[key], bool):
            raise ValueError(f'cache {key}={out[key]!r} must be True or '
                             'False.')
    check_choice('cache view_allocation', out['view_allocation'],
                 VIEW_ALLOCATIONS)
    if out['view_allocation'] == 'class_balanced' and out['views'] < 2:
        raise ValueError(
            f"cache view_allocation='class_balanced' with views="
            f"{out['views']}: every image would get one view. Set views >= "
            "2 (the views of the rarest class) or view_allocation="
            "'uniform'.")
    return out


use_cached_features = cached_loop_switch(
    LOOP, True, check_cache_options,
    'configs/quickstart/digits_cls_disalign_cached.py')


def _in_head(name: str) -> bool:
    """Whether a parameter / module name belongs to ``head``."""
    return name == 'head' or name.startswith('head.')


def check_cacheable_model(model: nn.Module) -> None:
    """Raise unless stage 2 of ``model`` can run on cached features.

    Structural checks (before training): an mmpretrain
    ``ImageClassifier``-like model (``extract_feat`` and ``head`` with
    ``loss``), no batch augmentation in the data preprocessor.
    """
    model = unwrap_model(model)
    head = getattr(model, 'head', None)
    if not callable(getattr(model, 'extract_feat', None)) or head is None \
            or not callable(getattr(head, 'loss', None)):
        raise ValueError(
            'CachedFeatureEpochBasedTrainLoop supports classification models '
            '(mmpretrain ImageClassifier: extract_feat + head.loss); got '
            f'{type(model).__name__}. Segmentation: '
            "CachedFeatureIterBasedTrainLoop (lt_mm.seg); detection: "
            'CachedRoIFeatureEpochBasedTrainLoop (lt_mm.det).')
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
    return check_trainable_within(model, _in_head, 'the head', LOOP)


def check_frozen_part_eval_like(model: nn.Module, runner) -> List[str]:
    """Check that the frozen part (outside ``head``) acts in training as
    in eval mode: raises on BatchNorm layers in training mode, returns the
    active dropout-like modules (see
    :func:`lt_mm.engine.feature_cache.check_frozen_part_eval_like`)."""
    return _check_eval_like(model, runner, _in_head, LOOP)


@torch.no_grad()
def extract_to_cache(model: nn.Module,
                     loaders: Sequence[Any],
                     root: str,
                     dtype: str,
                     fingerprint: str,
                     channels_last: bool = False,
                     sample_views: Optional[np.ndarray] = None,
                     fuse: bool = False) -> FeatureCache:
    """Run the frozen part over the training set and write the cache.

    For view k, ``loaders[k]`` yields the whole training set in dataset
    order (unshuffled) -- with ``sample_views`` only the samples i with
    ``sample_views[i] > k``, in dataset order; every batch goes through
    ``data_preprocessor(data, training=False)`` -> ``extract_feat`` (eval
    mode; with ``channels_last`` a 4-D image batch is passed in
    ``torch.channels_last`` memory format; with ``fuse`` through a copy of
    the backbone with Conv-BatchNorm folded, once its features on the first
    two images match the original's). The classifier input is
    ``feats[-1]`` (N, D); on the first batch
    ``head.pre_logits`` is checked to return it unchanged (otherwise the
    head needs more than the pooled feature and the cache is refused).
    Files: ``feats.npy`` (K, N, D), ``labels.npy`` (N,) int64 and, with
    ``sample_views``, ``views.npy`` (N,) (rows ``k >= sample_views[i]`` of
    sample i stay empty; :class:`lt_mm.engine.feature_cache.FeatureCache`).

    Args:
        model: an mmpretrain ``ImageClassifier`` (unwrapped).
        loaders: one built dataloader per view.
        root: the cache folder (written atomically: ``root + '.tmp<pid>'``
            then renamed).
        dtype: ``'float16'`` or ``'float32'``.
        fingerprint: stored in ``meta.json``.
        channels_last: feed 4-D image batches as ``torch.channels_last``
            (:func:`check_cache_options`).
        sample_views: (N, ) views per sample in [1, K], K =
            ``len(loaders)``; None = K for every sample.
        fuse: run a Conv-BatchNorm folded copy of ``model.backbone``
            (:func:`lt_mm.engine.feature_cache.fuse_conv_bn`), checked
            against the original on the first two images (eval mode:
            every sample on its own); ``meta['fused']``
            records whether it ran.

    Returns:
        FeatureCache: the opened cache.
    """
    n = check_view_lengths(loaders)
    if sample_views is not None and (np.shape(sample_views) != (n, )
                                     or np.min(sample_views) < 1
                                     or np.max(sample_views) != len(loaders)):
        raise ValueError(
            f'sample_views must give 1..{len(loaders)} views for each of the '
            f'{n} samples (the most = the number of loaders).')
    was_training = model.training
    model.eval()
    try:
        fused = _fused_backbone(model) if fuse else None
        checked = fused is None
        with CacheWriter(root, CACHE_FORMAT, fingerprint, dtype) as writer:
            labels = writer.array('labels', (n, ), np.int64)
            for k, loader in enumerate(loaders):
                rows = view_rows(sample_views, n, k)
                pos = 0
                for data in loader:
                    data = model.data_preprocessor(data, False)
                    inputs = data['inputs']
                    if channels_last and inputs.ndim == 4:
                        inputs = inputs.contiguous(
                            memory_format=torch.channels_last)
                    if not checked:  # the folded copy computes the same
                        # (eval mode: per sample; two samples suffice)
                        if not _fused_matches(
                                model.extract_feat(inputs[:2]),
                                _extract_with(model, inputs[:2], fused)):
                            fused = None
                        checked = True
                    feats = _extract_with(model, inputs, fused)
                    if 'feats' not in writer.arrays:
                        x = _check_pre_logits(model.head, feats)
                        writer.array('feats', (len(loaders), n, x.shape[1]))
                    mm = writer.arrays['feats']
                    x = feats[-1]
                    b = x.shape[0]
                    if pos + b > len(rows):
                        raise ValueError(
                            'the extraction loader yields more samples than '
                            'the dataset has; it must visit every index '
                            'once.')
                    at = rows[pos:pos + b]
                    mm[k, at] = x.float().cpu().numpy().astype(mm.dtype)
                    lab = _labels_of(data['data_samples'])
                    if k == 0:
                        labels[at] = lab
                    elif not np.array_equal(labels[at], lab):
                        raise ValueError(
                            f'view {k} visits the samples in another order '
                            'than view 0; the cache needs dataset order.')
                    pos += b
                if pos != len(rows):
                    raise ValueError(f'view {k} yielded {pos} samples, it '
                                     f'has {len(rows)}.')
            if 'feats' not in writer.arrays:
                raise ValueError('the training set is empty.')
            if sample_views is not None:
                writer.array('views', (n, ), np.int64)[:] = sample_views
            return writer.finish(
                views=len(loaders),
                num_samples=n,
                sample_views=sample_views is not None,
                fused=fused is not None)
    finally:
        model.train(was_training)


def _fused_backbone(model: nn.Module) -> Optional[nn.Module]:
    """A Conv-BatchNorm folded copy of ``model.backbone`` (eval mode), or
    None (with a warning) when it cannot be traced."""
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, nn.Module):
        return None
    fused = fuse_conv_bn(backbone)
    if fused is None:
        print_log(
            f'{LOOP}: torch.fx cannot trace {type(backbone).__name__}; the '
            'cache extraction runs it without folding BatchNorm into the '
            'convolutions (cache fuse_conv_bn=False silences this).',
            logger='current',
            level=logging.WARNING)
    return fused


def _extract_with(model: nn.Module, inputs: Tensor,
                  backbone: Optional[nn.Module]) -> Any:
    """``model.extract_feat(inputs)``, with ``backbone`` in place of
    ``model.backbone`` when given (restored afterwards)."""
    if backbone is None:
        return model.extract_feat(inputs)
    original = model.backbone
    model.backbone = backbone
    try:
        return model.extract_feat(inputs)
    finally:
        model.backbone = original


def _fused_matches(reference: Any, fused_feats: Any) -> bool:
    """Whether the folded backbone's features match the original's
    (:func:`outputs_match`); warns if not."""
    if outputs_match(reference, fused_feats):
        return True
    print_log(
        f'{LOOP}: the Conv-BatchNorm folded copy of the backbone gives other '
        f'features than the backbone on the first images (relative '
        f'difference > {FUSE_CHECK_RTOL}); the cache extraction runs the '
        'original backbone.',
        logger='current',
        level=logging.WARNING)
    return False


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
def _head_loss(model: nn.Module, data_batch: dict) -> dict:
    """The head's own loss on the cached pooled features."""
    return model.head.loss((data_batch['inputs'], ),
                           data_batch['data_samples'])


@LOOPS.register_module()
class CachedFeatureEpochBasedTrainLoop(CachedFeatureEpochLoopMixin,
                                       EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` on cached pooled features (module doc);
    ``cache``: :func:`check_cache_options`."""

    cache_format = CACHE_FORMAT
    cache_loss = staticmethod(_head_loss)
    extra_cache_keys = CLS_CACHE_KEYS

    def check_options(self, cache_cfg: dict) -> dict:
        """:func:`check_cache_options` (``channels_last``)."""
        return check_cache_options(cache_cfg)

    def build_cache(self, model: nn.Module, loaders: List[Any], root: str,
                    fingerprint: str) -> FeatureCache:
        """:func:`extract_to_cache` with the ``channels_last`` option."""
        return extract_to_cache(
            model,
            loaders,
            root,
            self.cache_cfg['dtype'],
            fingerprint,
            channels_last=self.cache_cfg['channels_last'],
            sample_views=self.sample_views,
            fuse=self.cache_cfg['fuse_conv_bn'])

    def allocate_views(self, dataset: Any) -> Optional[np.ndarray]:
        """``view_allocation='class_balanced'``: the views of each image
        from its class count (:func:`class_balanced_views`); else None."""
        if self.cache_cfg['view_allocation'] != 'class_balanced':
            return None
        return class_balanced_views(
            get_sample_classes(dataset), self.cache_cfg['views'])

    def check_cacheable(self, model: nn.Module) -> None:
        """:func:`check_cacheable_model`."""
        check_cacheable_model(model)

    # -- cache ---------------------------------------------------------------
    def check_model_before_cache(self, model: nn.Module) -> None:
        """Only ``head`` trains; frozen BN in eval mode; warn on dropout."""
        check_trainable_in_head(model)
        drop = check_frozen_part_eval_like(model, self.runner)
        warn_active_dropout(drop, LOOP)

    def fingerprint_parts(self, model: nn.Module) -> List[str]:
        """The frozen weights (everything but ``head``)."""
        return [state_fingerprint(model, _in_head)]

    def describe_cache(self, cache: FeatureCache) -> str:
        return (f'{cache.describe_views()} x {len(cache)} samples x '
                f'{cache.feats.shape[2]}')

    def prepare_cache(self) -> FeatureCache:
        """Check the model and build (or reuse) the feature cache."""
        return super().prepare_cache(keys=('img_path', 'gt_label'))

    # -- training ------------------------------------------------------------
    def cached_batch(self, views: np.ndarray, indices: np.ndarray) -> dict:
        """``dict(inputs, data_samples)``: the cached pooled features (N, D)
        on the head's device and one ``DataSample`` per label."""
        from mmpretrain.structures import DataSample
        model = unwrap_model(self.runner.model)
        device = next(model.head.parameters()).device
        x = self.cache.gather(views, indices).to(device)
        samples = [
            DataSample().set_gt_label(int(c))
            for c in self.cache.gather_labels(views, indices)
        ]
        return dict(inputs=x, data_samples=samples)
