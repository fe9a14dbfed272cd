"""Segmentation stage 2 on cached pre-classifier feature maps.

Stage 2 of the decoupled methods -- DisAlign (Zhang et al., CVPR 2021,
Sec. 3.2: alpha, beta and the per-pixel sigma(x) of Eq. 5/6 learned with
the GRW loss of Eq. 8-11), LWS (Kang et al., ICLR 2020, Eq. 4) and cRT
(ibid., Sec. 4) -- trains only ``decode_head.conv_seg`` of a frozen
segmentor. That classifier sees only the feature map ``feat`` (N, D, h, w)
that :meth:`lt_mm.seg.heads.LTDecodeHeadMixin.cls_seg` receives (the
decode head's output before its dropout).
:class:`CachedFeatureIterBasedTrainLoop` therefore runs the frozen part
(``data_preprocessor`` in training mode -- the same normalisation and
padding as the standard loop -- -> backbone ->
decode head up to ``conv_seg``, eval mode, no gradient) ONCE over the
training set (optionally K views of the training pipeline), stores ``feat``
with the padded ground-truth label map in memory-mapped ``.npy`` files
(float16 by default; :class:`lt_mm.engine.feature_cache.FeatureCache`) and
then trains ``conv_seg`` on the cache, iteration by iteration:

* the same loss: the segmentor's ``_decode_head_forward_train`` --
  ``LTDecodeHead.loss`` -> ``cls_seg(feat)`` (dropout, classifier, valid
  mask) -> ``loss_by_feat`` (bilinear resize of the logits to the label
  size, the configured ``loss_decode``, ``acc_seg``) with the head's
  ``forward`` replaced by ``cls_seg`` of the cached map for the step;
* the same sampler: the configured sampler of the training dataloader
  (``InfiniteSampler``, ``ClassBalancedSampler`` ...) yields the dataset
  indices of every batch -- the index order the standard
  ``IterBasedTrainLoop`` would load -- which select cache rows;
* the same schedule, optimizer wrapper and hooks (``Stage2FreezeHook``,
  ``ParamSchedulerHook``, ``CheckpointHook``, logger, ``ResumeRNGHook``);
  validation runs the normal val loop on images; the checkpoint is a
  normal full-model checkpoint, tested by ``tools/test.py`` unchanged.

Equivalence (full maps, the default). When the frozen part behaves the
same in train and eval mode (``Stage2FreezeHook(freeze_bn_stats=True)``,
no dropout / drop-path before ``cls_seg``) and the training pipeline is
deterministic (or ``pipeline='test'``), every step sees the same ``feat``
and labels as the standard stage 2, so the result equals it up to the
float16 storage of ``feat`` (relative error <= 2**-11;
``dtype='float32'`` removes it). The cache keeps what the loss needs:
the whole (D, h, w) map -- the logits are computed from it and resized
to the label size inside ``loss_by_feat`` exactly as in the standard
loop -- and the whole (H, W) label map after the training-mode padding
(``seg_pad_val``). Two things are not cached and stay as in the standard
loop but draw other random numbers: the decode head's dropout
(``dropout_ratio``) is applied to the cached ``feat`` at every step
(after the cache), so it is re-drawn at every iteration, with other
draws than the standard run's; and a random training pipeline
(``RandomFlip``, ``RandomCrop`` ...) is drawn ``views`` times per image
(each visit picks one view, seeded by ``seed + iteration``) instead of at
every visit. With ``dropout_ratio=0`` (or an equal torch random state)
and a deterministic pipeline the two runs are equal. The auxiliary head
is skipped: it reads backbone features, is frozen, and its loss has no
gradient with respect to ``decode_head.conv_seg``, so the parameter
updates are unchanged; only the logged total ``loss`` lacks its (stage-2
quickstart: zero-weighted) term.

Pixel subset (large data): ``pixels_per_image=P`` stores, per image and
view, the features of at most P pixels at the *feature* resolution
(uniformly drawn among the labelled pixels, or with
``class_balanced=True`` drawn without replacement with probability
proportional to 1 / (pixels of its class in the image)) with their
labels resized to the feature map by nearest-neighbour sampling (as
:func:`lt_mm.seg.hooks.iter_pixel_features`); images with fewer labelled
pixels keep all of them (the empty slots are ``ignore_index``). The loss
is then computed at feature resolution on those pixels -- an
approximation of the standard loss, which averages over the label-size
pixels of the bilinearly upsampled logits: (1) nearest-resized labels
instead of the bilinear interpolation of logits between feature pixels,
(2) a random subset instead of all pixels (uniform: an unbiased estimate
of the feature-resolution mean; class-balanced: a re-weighted objective
that favours rare classes *in addition* to any loss re-weighting such as
GRW), (3) the subset is drawn once per view, not per iteration, and (4)
a trainable BatchNorm inside the classifier (DisAlign
``confidence='conv_module'``) normalises with statistics of the sampled
pixels. Only point-wise (1x1) classifiers are accepted in this mode.
Storage: P x D per image instead of D x h x w + H x W.

Refused (``ValueError`` before any training step): a trainable parameter
outside ``decode_head.conv_seg`` (e.g. no ``Stage2FreezeHook``); a decode
head that is not an :func:`lt_mm.seg.LTDecodeHead` (or a cascade) or
whose output is not ``cls_seg(feat)`` of the captured ``conv_seg`` input;
batch augmentation in the data preprocessor; BatchNorm layers of the
frozen part in training mode; training images whose padded size differs
(``data_preprocessor.size`` unset and images of several sizes: the
padding would depend on the batch); a classifier with a spatial kernel in
pixel-subset mode; distributed training.

Switched on by one config change (``configs/quickstart/
digits_seg_disalign_cached.py``)::

    train_cfg = dict(
        _delete_=True,
        type='CachedFeatureIterBasedTrainLoop',
        max_iters=200,
        val_interval=200,
        cache=dict(views=1, dtype='float16', pipeline='train', dir=None,
                   pixels_per_image=None, class_balanced=False))

or, in Python, :func:`use_cached_features` on a loaded config.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.utils import calc_dynamic_intervals
from torch import Tensor, nn

# yapf: disable
from lt_mm.engine.feature_cache import (CachedFeatureLoopMixin, CacheWriter,
                                        FeatureCache, InfiniteIndexIterator,
                                        cached_loop_switch,
                                        check_cache_options,
                                        check_frozen_part_eval_like,
                                        check_trainable_within,
                                        check_view_lengths, state_fingerprint,
                                        under, unwrap_model,
                                        warn_active_dropout)
# yapf: enable
from .heads import LTDecodeHeadMixin
from .hooks import capture_classifier_input

CACHE_FORMAT = 'lt_mm.seg_feature_cache/v1'
LOOP = 'CachedFeatureIterBasedTrainLoop'
#: the segmentation keys of ``cache=dict(...)`` and their defaults
SEG_CACHE_KEYS = dict(pixels_per_image=None, class_balanced=False)
CLASSIFIER = 'decode_head.conv_seg'
#: the data-info fields of the cache key: the images, the label maps and
#: how they are decoded (``reduce_zero_label``, a class subset's
#: ``label_map``)
SEG_FINGERPRINT_KEYS = ('img_path', 'seg_map_path', 'reduce_zero_label',
                        'label_map')

__all__ = [
    'CACHE_FORMAT', 'SEG_CACHE_KEYS', 'check_seg_cache_options',
    'use_cached_features', 'check_cacheable_segmentor', 'sample_pixels',
    'extract_seg_cache', 'CachedFeatureIterBasedTrainLoop'
]


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------
def check_seg_cache_options(cache: Optional[dict]) -> dict:
    """Validate the ``cache`` options of the segmentation loop.

    The keys of :func:`lt_mm.engine.feature_cache.check_cache_options`
    plus ``pixels_per_image`` (None = whole maps, the exact mode; or an
    int >= 1: at most that many pixels per image at feature resolution)
    and ``class_balanced`` (bool, needs ``pixels_per_image``).

    Returns:
        dict: the complete options.
    """
    out = check_cache_options(cache, SEG_CACHE_KEYS)
    p = out['pixels_per_image']
    if p is not None:
        if isinstance(p, bool) or not isinstance(p,
                                                 (int, np.integer)) or p < 1:
            raise ValueError(
                f'cache pixels_per_image={p!r} must be None (whole feature '
                'maps, exact) or a positive integer (pixels sampled per '
                'image).')
        out['pixels_per_image'] = int(p)
    if not isinstance(out['class_balanced'], bool):
        raise ValueError(f"cache class_balanced={out['class_balanced']!r} "
                         'must be True or False.')
    if out['class_balanced'] and p is None:
        raise ValueError(
            'cache class_balanced=True needs pixels_per_image=N: whole '
            'feature maps hold every pixel, there is nothing to balance.')
    return out


use_cached_features = cached_loop_switch(
    LOOP, False, check_seg_cache_options,
    'configs/quickstart/digits_seg_disalign_cached.py')

# ---------------------------------------------------------------------------
# model checks
# ---------------------------------------------------------------------------
_in_classifier = under(CLASSIFIER)


def _after_cache(name: str) -> bool:
    """Modules that run after the cache (or not at all) in cached mode."""
    return (_in_classifier(name) or name == 'decode_head.dropout'
            or name == 'auxiliary_head' or name.startswith('auxiliary_head.'))


def _not_feature_path(name: str) -> bool:
    """State entries that do not influence the cached ``feat``."""
    return (_in_classifier(name) or name.startswith('decode_head.posthoc.')
            or name.startswith('auxiliary_head.'))


def check_cacheable_segmentor(model: nn.Module,
                              pixels_per_image: Optional[int] = None) -> None:
    """Structural checks (before training).

    An mmseg ``EncoderDecoder``-like model (``extract_feat``,
    ``_decode_head_forward_train``) whose ``decode_head`` is an
    :func:`lt_mm.seg.LTDecodeHead`; no batch augmentation; in pixel-subset
    mode a point-wise (1x1) classifier.
    """
    model = unwrap_model(model)
    head = getattr(model, 'decode_head', None)
    forward_train = getattr(model, '_decode_head_forward_train', None)
    if not callable(
            getattr(model, 'extract_feat',
                    None)) or not callable(forward_train) or head is None:
        raise ValueError(
            f'{LOOP} supports mmseg EncoderDecoder models (extract_feat + '
            f'one decode_head); got {type(model).__name__}. Use the standard '
            "loop (train_cfg=dict(type='IterBasedTrainLoop', ...)).")
    if not isinstance(head, LTDecodeHeadMixin):
        raise ValueError(
            f'{LOOP}: the decode head {type(head).__name__} is not an '
            "LTDecodeHead; its classifier input cannot be captured. Use "
            "decode_head=dict(type='LTDecodeHead', head_type=..., "
            'classifier=...) or the standard loop.')
    if not isinstance(getattr(head, 'conv_seg', None), nn.Module):
        raise ValueError(f'{LOOP}: the decode head has no conv_seg.')
    pre = getattr(model, 'data_preprocessor', None)
    if getattr(pre, 'batch_augments', None) is not None:
        raise ValueError(
            f'{LOOP}: the data preprocessor applies batch augmentation, '
            'which changes images before the frozen backbone; a feature '
            'cache cannot reproduce it. Remove '
            'model.data_preprocessor.batch_augments or use the standard loop.')
    if pixels_per_image is not None:
        spatial = [
            n for n, m in head.conv_seg.named_modules()
            if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) != (1, 1)
        ]
        if spatial:
            raise ValueError(
                f'{LOOP}: cache pixels_per_image={pixels_per_image} treats '
                'the sampled pixels independently, but the classifier has a '
                f'spatial kernel ({CLASSIFIER}.{spatial[0] or "<self>"}); '
                'use whole maps (pixels_per_image=None).')


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------
def sample_pixels(labels: Tensor,
                  num: int,
                  ignore_index: int,
                  class_balanced: bool = False,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Flat indices of at most ``num`` labelled pixels of one label map.

    Uniform: ``num`` distinct pixels among those with a label other than
    ``ignore_index``; class-balanced: drawn without replacement with
    probability proportional to ``1 / n_c`` (``n_c`` the labelled pixels
    of the pixel's class in this map), so each present class has the same
    total probability. A map with at most ``num`` labelled pixels gives all
    of them.

    Args:
        labels: (h, w) or (h * w,) integer labels.
        num: the number of slots.
        ignore_index: the unlabelled value.
        class_balanced: see above.
        generator: torch random generator.

    Returns:
        Tensor: (num,) int64 flat indices, ``-1`` for empty slots.
    """
    flat = labels.reshape(-1)
    valid = flat != ignore_index
    out = torch.full((num, ), -1, dtype=torch.long)
    m = int(valid.sum())
    if m == 0:
        return out
    if m <= num:
        idx = valid.nonzero()[:, 0]
        out[:m] = idx
        return out
    weights = valid.double()
    if class_balanced:
        _, inv, counts = torch.unique(
            flat[valid], return_inverse=True, return_counts=True)
        weights[valid] = 1.0 / counts[inv].double()
    return torch.multinomial(
        weights, num, replacement=False, generator=generator)


def _label_dtype(num_classes: int, ignore_index: int) -> Any:
    if num_classes <= 255 and 0 <= ignore_index <= 255:
        return np.uint8
    return np.int32


def _check_padding(pre: nn.Module, raw_inputs: Sequence[Tensor],
                   first: List[Optional[Tuple[int, ...]]]) -> None:
    """Without a fixed ``data_preprocessor.size``, all images must have one
    size (else the padding, hence the features, depend on the batch)."""
    if getattr(pre, 'size', None) is not None:
        return
    for x in raw_inputs:
        shape = tuple(x.shape[-2:])
        if first[0] is None:
            first[0] = shape
        elif shape != first[0]:
            raise ValueError(
                f'{LOOP}: training images of different sizes ({first[0]} '
                f'and {shape}) without a fixed data_preprocessor.size: the '
                'training-mode padding depends on the batch, so cached '
                'features could not match. Set data_preprocessor.size (a '
                'crop size) or use the standard loop.')


def _classifier_input(model: nn.Module, inputs: Tensor) -> Tuple[Any, Tensor]:
    """The backbone output and the ``conv_seg`` input (eval mode)."""
    x = model.extract_feat(inputs)
    try:
        return x, capture_classifier_input(model.decode_head, x)
    except ValueError as err:
        raise ValueError(f'{LOOP}: {err}') from None


@torch.no_grad()
def extract_seg_cache(model: nn.Module,
                      loaders: Sequence[Any],
                      root: str,
                      dtype: str,
                      fingerprint: str,
                      pixels_per_image: Optional[int] = None,
                      class_balanced: bool = False,
                      seed: int = 0) -> FeatureCache:
    """Run the frozen segmentor over the training set and write the cache.

    For view k, ``loaders[k]`` yields the training set in dataset order;
    every batch goes through ``data_preprocessor(data, training=True)``
    (normalisation and the training padding of images and labels) ->
    ``extract_feat`` -> ``decode_head`` up to ``conv_seg`` (eval mode),
    whose input ``feat`` is captured. On the first batch the head's output
    is checked to be ``cls_seg(feat)``.

    Files (:class:`lt_mm.engine.feature_cache.FeatureCache`, labels per
    view): whole maps -- ``feats.npy`` (K, N, D, h, w), ``labels.npy``
    (K, N, H, W) (uint8 when the classes and ``ignore_index`` fit, else
    int32); pixel subset -- ``feats.npy`` (K, N, D, P), ``labels.npy``
    (K, N, P) from :func:`sample_pixels` on the nearest-resized labels
    (generator seeded ``seed * 1000 + k``; empty slots: zero features,
    ``ignore_index``).

    Args:
        model: an mmseg ``EncoderDecoder`` (unwrapped).
        loaders: one built dataloader per view.
        root: the cache folder (written atomically).
        dtype: ``'float16'`` or ``'float32'``.
        fingerprint: stored in ``meta.json``.
        pixels_per_image: None (whole maps) or P.
        class_balanced: class-balanced pixel sampling.
        seed: the pixel sampling seed.

    Returns:
        FeatureCache: the opened cache.
    """
    head = model.decode_head
    pre = model.data_preprocessor
    ignore = int(head.ignore_index)
    lab_dtype = _label_dtype(int(head.num_classes), ignore)
    info = np.iinfo(lab_dtype)
    n = check_view_lengths(loaders)
    k_views = len(loaders)
    first: List[Optional[Tuple[int, ...]]] = [None]
    was_training = model.training
    model.eval()
    try:
        with CacheWriter(root, CACHE_FORMAT, fingerprint, dtype) as writer:
            for k, loader in enumerate(loaders):
                gen = torch.Generator().manual_seed(int(seed) * 1000 + k)
                pos = 0
                for data in loader:
                    _check_padding(pre, data['inputs'], first)
                    data = pre(data, True)
                    x, feat = _classifier_input(model, data['inputs'])
                    if 'feats' not in writer.arrays:
                        out = head(x)
                        if not (isinstance(out, Tensor)
                                and torch.equal(out, head.cls_seg(feat))):
                            raise ValueError(
                                f'{LOOP}: the output of '
                                f'{type(head).__name__} is not '
                                'cls_seg(<conv_seg input>); the head does '
                                'more after its classifier. Use the '
                                'standard loop.')
                    gt = torch.stack([
                        s.gt_sem_seg.data for s in data['data_samples']
                    ]).long()  # (B, 1, H, W), padded with seg_pad_val
                    b = feat.shape[0]
                    if pos + b > n:
                        raise ValueError(
                            'the extraction loader yields more samples than '
                            'the dataset has; it must visit every index '
                            'once.')
                    feat = feat.float().cpu()
                    if pixels_per_image is None:
                        fshape, lab = tuple(feat.shape[1:]), gt[:, 0].cpu()
                    else:
                        feat, lab = _sample_batch(feat, gt.cpu(),
                                                  pixels_per_image, ignore,
                                                  class_balanced, gen)
                        fshape = tuple(feat.shape[1:])
                    fm = writer.array('feats', (k_views, n) + fshape)
                    lm = writer.array('labels',
                                      (k_views, n) + tuple(lab.shape[1:]),
                                      lab_dtype)
                    if fm.shape[2:] != fshape or lm.shape[2:] != tuple(
                            lab.shape[1:]):
                        raise ValueError(
                            f'{LOOP}: feature / label maps of different '
                            f'shapes ({tuple(fm.shape[2:])} vs {fshape}, '
                            f'{tuple(lm.shape[2:])} vs '
                            f'{tuple(lab.shape[1:])}); set '
                            'data_preprocessor.size or use the standard '
                            'loop.')
                    if lab.numel() and (int(lab.min()) < info.min
                                        or int(lab.max()) > info.max):
                        raise ValueError(
                            f'label values outside [{info.min}, {info.max}]'
                            f' (num_classes={head.num_classes}, '
                            f'ignore_index={ignore}).')
                    fm[k, pos:pos + b] = feat.numpy().astype(fm.dtype)
                    lm[k, pos:pos + b] = lab.numpy().astype(lab_dtype)
                    pos += b
                if pos != n:
                    raise ValueError(f'view {k} yielded {pos} samples, the '
                                     f'dataset has {n}.')
            return writer.finish(
                views=k_views,
                num_samples=n,
                labels_per_view=True,
                pixels_per_image=pixels_per_image,
                class_balanced=class_balanced,
                ignore_index=ignore)
    finally:
        model.train(was_training)


def _sample_batch(feat: Tensor, gt: Tensor, num: int, ignore: int,
                  class_balanced: bool,
                  gen: torch.Generator) -> Tuple[Tensor, Tensor]:
    """(B, D, h, w), (B, 1, H, W) -> (B, D, num) features and (B, num)
    labels of the sampled pixels (labels nearest-resized to h x w)."""
    b, d = feat.shape[:2]
    lab = F.interpolate(
        gt.float(), size=feat.shape[-2:], mode='nearest')[:, 0].long()
    flat_f = feat.reshape(b, d, -1)
    flat_l = lab.reshape(b, -1)
    out_f = torch.zeros(b, d, num, dtype=feat.dtype)
    out_l = torch.full((b, num), ignore, dtype=torch.long)
    for i in range(b):
        idx = sample_pixels(flat_l[i], num, ignore, class_balanced, gen)
        ok = idx >= 0
        out_f[i, :, ok] = flat_f[i][:, idx[ok]]
        out_l[i, ok] = flat_l[i][idx[ok]]
    return out_f, out_l


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _forward_is_cls_seg(head: nn.Module) -> Iterator[None]:
    """For the step, ``head.forward(inputs)`` = ``cls_seg(inputs[0])``
    (``inputs[0]`` the cached classifier input)."""
    head.forward = lambda inputs: head.cls_seg(inputs[0])
    try:
        yield
    finally:
        del head.forward


def _decode_loss(model: nn.Module, data_batch: dict) -> dict:
    """``decode.*`` losses of the cached batch through the segmentor's own
    ``_decode_head_forward_train`` (no auxiliary head)."""
    with _forward_is_cls_seg(model.decode_head):
        return model._decode_head_forward_train((data_batch['inputs'], ),
                                                data_batch['data_samples'])


@LOOPS.register_module()
class CachedFeatureIterBasedTrainLoop(CachedFeatureLoopMixin,
                                      IterBasedTrainLoop):
    """Iteration-based segmentation stage 2 on cached maps (module doc).

    Args: those of ``IterBasedTrainLoop`` plus ``cache`` (see
    :func:`check_seg_cache_options`).

    Attributes: those of :class:`CachedFeatureLoopMixin`.
    """

    cache_format = CACHE_FORMAT
    extra_cache_keys = SEG_CACHE_KEYS
    restore_rng_after_cache = True

    def __init__(self,
                 runner,
                 dataloader,
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 cache: Optional[dict] = None) -> None:
        self._init_cache_options(runner, dataloader, cache)
        self.cache_cfg = check_seg_cache_options(self.cache_cfg)
        check_cacheable_segmentor(runner.model,
                                  self.cache_cfg['pixels_per_image'])
        # IterBasedTrainLoop.__init__ without its data iterator (that would
        # start the loader's workers): the index batches replace it
        BaseLoop.__init__(self, runner, dataloader)
        self._max_iters = int(max_iters)
        if self._max_iters != max_iters:
            raise ValueError(f'max_iters={max_iters!r} must be an integer.')
        self._max_epochs = 1
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        if hasattr(self.dataloader.dataset, 'metainfo'):
            self.runner.visualizer.dataset_meta = \
                self.dataloader.dataset.metainfo
        self.dataloader_iterator = InfiniteIndexIterator(self.dataloader)
        self.dynamic_milestones, self.dynamic_intervals = \
            calc_dynamic_intervals(self.val_interval, dynamic_intervals)

    # -- cache ---------------------------------------------------------------
    def check_model_before_cache(self, model: nn.Module) -> None:
        """Only ``decode_head.conv_seg`` trains; frozen BN in eval mode;
        warn on dropout before ``cls_seg``."""
        check_trainable_within(model, _in_classifier, CLASSIFIER, LOOP)
        drop = check_frozen_part_eval_like(model, self.runner, _after_cache,
                                           LOOP)
        warn_active_dropout(drop, LOOP)

    def fingerprint_parts(self, model: nn.Module) -> List[str]:
        """Frozen weights (without classifier / auxiliary head), head type,
        ignore index, the preprocessor's padding and the sampling seed."""
        pre = model.data_preprocessor
        head = model.decode_head
        parts = [
            state_fingerprint(model, _not_feature_path),
            type(head).__name__, f'ignore={head.ignore_index}',
            f'classes={head.num_classes}', 'pad=' + repr(
                tuple(
                    getattr(pre, a, None) for a in ('size', 'size_divisor',
                                                    'pad_val', 'seg_pad_val')))
        ]
        if self.cache_cfg['pixels_per_image'] is not None:
            parts.append(f'pixel_seed={self.runner.seed}')
        return parts

    def build_cache(self, model: nn.Module, loaders: List[Any], root: str,
                    fingerprint: str) -> FeatureCache:
        """:func:`extract_seg_cache`."""
        opts = self.cache_cfg
        return extract_seg_cache(model, loaders, root, opts['dtype'],
                                 fingerprint, opts['pixels_per_image'],
                                 opts['class_balanced'], self.runner.seed or 0)

    def describe_cache(self, cache: FeatureCache) -> str:
        what = 'maps' if self.cache_cfg['pixels_per_image'] is None else \
            'pixels'
        return (f'{cache.num_views} view(s) x {len(cache)} images, {what} '
                f'{tuple(cache.feats.shape[2:])}, labels '
                f'{tuple(cache.labels.shape[2:])}')

    def prepare_cache(self) -> FeatureCache:
        """Check the model and build (or reuse) the feature cache."""
        return super().prepare_cache(keys=SEG_FINGERPRINT_KEYS)

    # -- training ------------------------------------------------------------
    def cached_batch(self, indices: np.ndarray) -> dict:
        """``dict(inputs, data_samples)`` of the cache rows ``indices``:
        inputs (B, D, h, w) (pixel subset: (B, D, P, 1)) float32, one
        ``SegDataSample`` per row with ``gt_sem_seg`` (1, H, W) (pixel
        subset: (1, P, 1)) int64."""
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        model = unwrap_model(self.runner.model)
        device = next(model.decode_head.conv_seg.parameters()).device
        views = self.random_views(len(indices), self._iter)
        x = self.cache.gather(views, indices)
        lab = torch.from_numpy(
            self.cache.gather_labels(views, indices).astype(np.int64))
        if self.cache_cfg['pixels_per_image'] is not None:
            x = x.unsqueeze(-1)  # (B, D, P, 1)
            lab = lab.unsqueeze(-1)  # (B, P, 1)
        lab = lab.to(device)
        samples = [
            SegDataSample(gt_sem_seg=PixelData(data=lab[i][None]))
            for i in range(lab.shape[0])
        ]
        return dict(inputs=x.to(device), data_samples=samples)

    def run(self) -> nn.Module:
        """``before_train``, build the cache, then train ``conv_seg`` on it
        iteration by iteration (validation and hooks as
        ``IterBasedTrainLoop``)."""
        runner = self.runner
        runner.call_hook('before_train')
        self.prepare_cache()
        try:
            runner.call_hook('before_train_epoch')
            if self._iter > 0:
                print_log(
                    f'Advance the sampler {self._iter} steps to skip data '
                    'that has already been trained',
                    logger='current',
                    level=logging.WARNING)
                for _ in range(self._iter):
                    next(self.dataloader_iterator)
            while self._iter < self._max_iters and not self.stop_training:
                runner.model.train()
                indices = next(self.dataloader_iterator)
                self.run_iter(self.cached_batch(indices))
                self._decide_current_val_interval()
                if (runner.val_loop is not None
                        and self._iter >= self.val_begin
                        and (self._iter % self.val_interval == 0
                             or self._iter == self._max_iters)):
                    runner.val_loop.run()
        finally:
            self.drop_cache()
        runner.call_hook('after_train_epoch')
        runner.call_hook('after_train')
        return runner.model

    def run_iter(self, data_batch: dict) -> None:
        """``BaseModel.train_step`` with the decode head's loss on the
        cached batch."""
        self.train_on_cache(self._iter, data_batch, _decode_loss)
