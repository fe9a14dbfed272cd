"""Detection stage 2 on cached RoI features.

Stage 2 of the decoupled methods -- DisAlign (Zhang et al., CVPR 2021,
Sec. 3.2: alpha, beta and sigma(x) of Eq. 5/6 learned with the GRW loss of
Eq. 8-11), LWS (Kang et al., ICLR 2020, Eq. 4) and cRT (ibid., Sec. 4) --
trains only ``roi_head.bbox_head.fc_cls`` (its stage-2 parameters;
``Stage2FreezeHook`` freezes the rest) of a frozen two-stage detector
(Mask R-CNN). That classifier sees only its input ``x_cls`` (N_roi, D): the
box head's shared-fc (and cls-branch) output for each SAMPLED RoI.
:class:`CachedRoIFeatureEpochBasedTrainLoop` therefore runs the frozen part
ONCE over the training set per view -- ``data_preprocessor`` in training
mode (normalisation, padding) -> backbone -> neck -> RPN proposals with
``train_cfg.rpn_proposal`` -> the RoI head's own ``bbox_assigner`` and
``bbox_sampler`` (ground truths added as proposals, as in training) ->
``bbox_roi_extractor`` -> the box head up to the input of ``fc_cls``
(eval mode, no gradient) -- and stores per image the sampled RoIs' ``x_cls``
with their targets as ``bbox_head.get_targets`` gives them (``labels``,
background = ``num_classes``; ``label_weights``). Then it trains ``fc_cls``
on the cache, epoch by epoch:

* the same loss: ``cls_score = fc_cls(x_cls)`` of the batch's RoIs (image
  by image, in mmdet's order) and ``bbox_head.loss(cls_score, None, None,
  labels, label_weights, None, None)`` -- mmdet's own classification term
  of ``BBoxHead.loss`` (``loss_cls`` with ``avg_factor = max(#{label_weight
  > 0}, 1)``, ``reduction_override=None``, and ``acc``), parsed and
  stepped as ``BaseModel.train_step`` (``optim_context`` +
  ``parse_losses`` + ``update_params``);
* the same sampler: each epoch the configured sampler of the training
  dataloader (``DefaultSampler``, ``ClassBalancedSampler``, RFS-style
  samplers ...) is re-seeded by ``DistSamplerSeedHook`` and its
  ``batch_sampler`` yields the dataset indices of every batch, which select
  the images' rows of the cache;
* the same schedule, optimizer wrapper and hooks (``Stage2FreezeHook``,
  ``ParamSchedulerHook``, ``CheckpointHook``, logger); validation runs the
  normal val loop on images; the checkpoint is a normal full-model
  checkpoint (the frozen tensors are the stage-1 tensors), tested by
  ``tools/test.py`` unchanged.

Skipped losses: box regression (``loss_bbox``), mask and RPN losses are
not computed. They are functions of frozen layers only (``fc_reg``, the
mask head, the RPN head and the shared trunk) and do not depend on
``fc_cls``, so their gradient with respect to the stage-2 parameters of
``fc_cls`` is zero and the parameter updates are unchanged; only the
logged total ``loss`` lacks their (constant) terms.

Storage: every image gets ``R`` = ``bbox_sampler.num`` slots (mmdet's
samplers return at most ``num`` RoIs per image; with the default
``RandomSampler`` and enough proposals exactly ``num``): ``feats.npy``
(K, N, R, D) float16/32, ``labels.npy`` (K, N, R) int64, ``weights.npy``
(K, N, R) float32 and ``num_rois.npy`` (K, N) int32 -- the first
``num_rois[k, i]`` slots of image i in view k are its sampled RoIs, the
rest are zero padding that is dropped before the loss (so the padding
changes nothing, not even ``avg_factor``). Size: K x N x R x D x 2 bytes
in float16 -- the quickstart 16 x 64 x 64 (128 kB); LVIS v1 with mmdet's
recipe (N ~ 100k images, R = 512, D = 1024) about 105 GB per view, so
put ``cache.dir`` on a large disk. A dataset wrapper is cached per index:
with mmdet's ``ClassBalancedDataset`` (LVIS repeat-factor sampling) a
repeated image gets one row per repeat (its own RoI draw, as the standard
loop draws at every visit) and costs one extraction each; the samplers of
:mod:`lt_mm.engine.samplers` (``ClassBalancedSampler``,
``SquareRootSampler`` ...) repeat indices instead and cost nothing.

Equivalence. With ``views=1``, a deterministic training pipeline (e.g.
``RandomFlip(prob=0)``), frozen BatchNorm (``Stage2FreezeHook(
freeze_bn_stats=True)``, the default) and the same sampled RoIs, a step on
the cache equals the standard ``train_step`` up to the float16 storage of
``x_cls`` (relative error <= 2**-11; ``dtype='float32'`` removes it). When
it does not: (1) the RoI sampler is random (``RandomSampler`` draws
``num`` of the proposals): the standard stage 2 draws new RoIs at every
visit of an image, the cache holds ``views`` draws (every visit picks one
of them, seeded by ``seed + epoch``), each view also re-drawing the
training pipeline's random transforms (``RandomFlip``); (2) images of
different sizes are padded to the largest of their batch: the cache is
built in dataset-order batches (``cache.batch_size``; default 1 under
the ``AspectRatioBatchSampler`` of mmdet's configs, as dataset-order
batches would mix aspect ratios, else the training batch size), the
standard loop in the sampler's batches, so the padding
(and the features near the border) may differ -- a warning counts the
images concerned (none when every image pads to the same size, as in the
quickstart data).

Refused (``ValueError`` before any training step): a trainable parameter
outside ``roi_head.bbox_head.fc_cls`` (e.g. no ``Stage2FreezeHook``); a
model that is not a two-stage detector (``TwoStageDetector`` with an RPN
and a ``StandardRoIHead``) with a ConvFC-style box head
(``Shared2FCBBoxHead``, ``ConvFCBBoxHead``...) whose ``cls_score`` is
``fc_cls(x_cls)`` of the captured input and whose loss is mmdet's
``BBoxHead.loss`` (e.g. TDE's ``CausalNormShared2FCBBoxHead`` updates a
buffer in ``loss_and_target``); cascade RoI heads (not supported); RoI
samplers that read the classifier (OHEM); batch augmentation; BatchNorm
of the frozen part in training mode; ``pipeline='test'`` (mmdet's test
pipelines load the boxes after ``Resize``); distributed training.

Switched on by ``train_cfg = dict(_delete_=True,
type='CachedRoIFeatureEpochBasedTrainLoop', max_epochs=E, cache=dict(...))``
(``configs/quickstart/digits_det_disalign_cached.py``) or, in Python, by
:func:`use_cached_features` on a loaded config.
"""
from __future__ import annotations

import copy
import os.path as osp
import warnings
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch import Tensor, nn

# yapf: disable
from lt_mm.engine.feature_cache import (CachedFeatureEpochLoopMixin,
                                        CacheWriter, FeatureCache,
                                        cached_loop_switch,
                                        check_cache_options,
                                        check_frozen_part_eval_like,
                                        check_trainable_within,
                                        check_view_lengths, is_under,
                                        state_fingerprint, under, unwrap_model,
                                        warn_active_dropout)

# yapf: enable

CACHE_FORMAT = 'lt_mm.det_roi_feature_cache/v1'
LOOP = 'CachedRoIFeatureEpochBasedTrainLoop'
CLASSIFIER = 'roi_head.bbox_head.fc_cls'

__all__ = [
    'CACHE_FORMAT', 'check_det_cache_options', 'use_cached_features',
    'check_cacheable_detector', 'RoIFeatureCache', 'extract_roi_cache',
    'CachedRoIFeatureEpochBasedTrainLoop'
]


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------
def check_det_cache_options(cache: Optional[dict]) -> dict:
    """Validate the ``cache`` options of the detection loop.

    The keys of :func:`lt_mm.engine.feature_cache.check_cache_options`
    (``views``, ``dtype``, ``pipeline``, ``dir``, ``batch_size``,
    ``reuse``, ``keep``); detection has no key of its own and supports
    ``pipeline='train'`` only (for a deterministic cache set the training
    pipeline's ``RandomFlip`` to ``prob=0``).

    Returns:
        dict: the complete options.
    """
    out = check_cache_options(cache)
    if out['pipeline'] != 'train':
        raise ValueError(
            f"cache pipeline={out['pipeline']!r}: detection stage 2 on "
            "cached RoI features supports pipeline='train' only (mmdet's "
            'test pipelines load the boxes after Resize, in original image '
            "coordinates). Use pipeline='train' with a deterministic "
            "training pipeline (RandomFlip prob=0) for an exact cache.")
    return out


use_cached_features = cached_loop_switch(
    LOOP, True, check_det_cache_options,
    'configs/quickstart/digits_det_disalign_cached.py')

# ---------------------------------------------------------------------------
# model checks
# ---------------------------------------------------------------------------
_in_classifier = under(CLASSIFIER)

_NOT_RUN = ('roi_head.mask_head', 'roi_head.mask_roi_extractor',
            'roi_head.bbox_head.fc_reg', 'roi_head.bbox_head.reg_convs',
            'roi_head.bbox_head.reg_fcs')


def _after_cache(name: str) -> bool:
    """Modules that run after the cache, or not at all, in cached mode."""
    return is_under(name, CLASSIFIER, *_NOT_RUN)


def _refuse_overrides(obj: Any, base: type, methods: Sequence[str],
                      why: str) -> None:
    """Raise if ``type(obj)`` overrides one of ``base``'s ``methods``."""
    for meth in methods:
        if getattr(type(obj), meth) is not getattr(base, meth):
            raise ValueError(
                f'{LOOP}: {type(obj).__name__}.{meth} differs from mmdet\'s '
                f'{base.__name__} ({why}). Use the standard loop.')


def check_cacheable_detector(model: nn.Module) -> None:
    """Structural checks (before training); raise ``ValueError``.

    Needs an mmdet ``TwoStageDetector`` with an RPN and a
    ``StandardRoIHead`` (not a cascade) whose box head is ConvFC-style
    (``fc_cls`` module, ``with_cls``) with mmdet's ``BBoxHead.loss`` /
    ``loss_and_target``; a RoI sampler that does not read the head
    (no OHEM); no batch augmentation in the data preprocessor.
    """
    from mmdet.models.detectors import TwoStageDetector
    from mmdet.models.roi_heads import StandardRoIHead
    from mmdet.models.roi_heads.bbox_heads import BBoxHead
    model = unwrap_model(model)
    if not isinstance(model, TwoStageDetector):
        raise ValueError(
            f'{LOOP} supports mmdet two-stage detectors (TwoStageDetector: '
            f'Faster / Mask R-CNN); got {type(model).__name__}. Use the '
            "standard loop (train_cfg=dict(type='EpochBasedTrainLoop', "
            '...)).')
    roi_head = getattr(model, 'roi_head', None)
    if roi_head is not None and hasattr(roi_head, 'num_stages'):
        raise ValueError(
            f'{LOOP}: cascade RoI heads ({type(roi_head).__name__}) are not '
            'supported (every stage has its own classifier and its RoIs '
            'depend on the previous stage). Use the standard loop.')
    if not model.with_rpn:
        raise ValueError(
            f'{LOOP}: the detector has no RPN (pre-computed proposals are '
            'not supported). Use the standard loop.')
    if not isinstance(roi_head, StandardRoIHead) or not roi_head.with_bbox:
        raise ValueError(
            f'{LOOP}: the RoI head {type(roi_head).__name__} is not an '
            'mmdet StandardRoIHead with a box head. Use the standard loop.')
    _refuse_overrides(roi_head, StandardRoIHead,
                      ('loss', 'bbox_loss', '_bbox_forward'),
                      'the cached RoIs and loss could not match')
    head = roi_head.bbox_head
    if not isinstance(head, BBoxHead) or not getattr(
            head, 'with_cls', False) or not isinstance(
                getattr(head, 'fc_cls', None), nn.Module):
        raise ValueError(
            f'{LOOP}: the box head {type(head).__name__} has no classifier '
            'fc_cls whose input can be captured (a ConvFC-style head such '
            "as Shared2FCBBoxHead is needed). Use the standard loop.")
    _refuse_overrides(
        head, BBoxHead, ('loss', 'loss_and_target', 'get_targets'),
        "e.g. TDE's CausalNormShared2FCBBoxHead updates its head direction "
        'there; the cached loss could not reproduce it')
    if hasattr(roi_head.bbox_sampler, 'context'):
        raise ValueError(
            f'{LOOP}: the RoI sampler {type(roi_head.bbox_sampler).__name__}'
            ' reads the box head (hard-example mining), so the sampled RoIs '
            'depend on the trained classifier. Use a RandomSampler or the '
            'standard loop.')
    num = getattr(roi_head.bbox_sampler, 'num', None)
    if not isinstance(num, int) or num < 1:
        raise ValueError(
            f'{LOOP}: the RoI sampler {type(roi_head.bbox_sampler).__name__}'
            ' has no positive `num` (the RoIs per image); use a '
            'RandomSampler-like sampler or the standard loop.')
    pre = getattr(model, 'data_preprocessor', None)
    if getattr(pre, 'batch_augments', None):
        raise ValueError(
            f'{LOOP}: the data preprocessor applies batch augmentation, '
            'which changes images before the frozen backbone; a feature '
            'cache cannot reproduce it. Remove '
            'model.data_preprocessor.batch_augments or use the standard loop.')


# ---------------------------------------------------------------------------
# the cache files
# ---------------------------------------------------------------------------
class RoIFeatureCache(FeatureCache):
    """:class:`lt_mm.engine.feature_cache.FeatureCache` with RoI slots.

    Files: ``feats.npy`` (K, N, R, D), ``labels.npy`` (K, N, R) int64
    (labels per view), ``weights.npy`` (K, N, R) float32 (label weights),
    ``num_rois.npy`` (K, N) int32 (valid slots, the first ones).

    Args:
        root: the cache folder.
    """

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.weights = np.load(osp.join(root, 'weights.npy'), mmap_mode='r')
        self.num_rois = np.load(osp.join(root, 'num_rois.npy'), mmap_mode='r')
        if self.weights.shape != self.labels.shape or \
                self.num_rois.shape != self.feats.shape[:2]:
            raise ValueError(f'RoI feature cache {root!r} is inconsistent; '
                             'delete it.')

    def gather_rois(self, views: np.ndarray,
                    indices: np.ndarray) -> Tuple[Tensor, Tensor, Tensor]:
        """The valid RoIs of images ``indices`` (views ``views``), image
        after image: ``x`` (M, D) float32, ``labels`` (M, ) int64,
        ``label_weights`` (M, ) float32."""
        x = self.gather(views, indices)  # (B, R, D)
        lab = torch.from_numpy(np.asarray(self.labels[views, indices]))
        w = torch.from_numpy(
            np.asarray(self.weights[views, indices], dtype=np.float32))
        n = torch.from_numpy(
            np.asarray(self.num_rois[views, indices], dtype=np.int64))
        valid = torch.arange(x.shape[1])[None] < n[:, None]  # (B, R)
        return x[valid], lab[valid].long(), w[valid]


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------
def _sample_rois(model: nn.Module, x: Sequence[Tensor],
                 data_samples: List[Any]) -> List[Any]:
    """RPN proposals (``train_cfg.rpn_proposal``) and the RoI head's own
    assigner + sampler, as ``TwoStageDetector.loss`` and
    ``StandardRoIHead.loss`` do it."""
    from mmdet.models.utils import unpack_gt_instances
    gts, gts_ignore, metas = unpack_gt_instances(data_samples)
    proposal_cfg = model.train_cfg.get('rpn_proposal', model.test_cfg.rpn)
    outs = model.rpn_head(x)
    proposals = model.rpn_head.predict_by_feat(
        *outs, batch_img_metas=metas, cfg=proposal_cfg)
    roi_head = model.roi_head
    results = []
    for i, res in enumerate(proposals):
        res.priors = res.pop('bboxes')
        assign = roi_head.bbox_assigner.assign(res, gts[i], gts_ignore[i])
        results.append(
            roi_head.bbox_sampler.sample(
                assign, res, gts[i], feats=[lvl[i][None] for lvl in x]))
    return results


def _padding_mismatches(pre: nn.Module, data_samples: List[Any]) -> int:
    """Images whose own padded size differs from their batch's."""
    div = int(getattr(pre, 'pad_size_divisor', 1) or 1)
    out = 0
    for s in data_samples:
        if 'batch_input_shape' not in s.metainfo:
            continue
        h, w = s.metainfo['img_shape'][:2]
        own = (-(-h // div) * div, -(-w // div) * div)
        if tuple(s.metainfo['batch_input_shape']) != own:
            out += 1
    return out


def _replay(fc_cls: nn.Module, x: Tensor, rng: tuple) -> Tensor:
    """``fc_cls(x)`` from the random state ``rng`` (torch state, device,
    CUDA state) its first call started from; the outer state is kept."""
    cpu_state, device, cuda_state = rng
    devices = [device] if cuda_state is not None else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)
        return fc_cls(x)


@torch.no_grad()
def extract_roi_cache(model: nn.Module, loaders: Sequence[Any], root: str,
                      dtype: str, fingerprint: str) -> RoIFeatureCache:
    """Run the frozen detector over the training set and write the cache.

    For view k, ``loaders[k]`` yields the training set in dataset order;
    every batch goes through ``data_preprocessor(data, training=True)`` ->
    ``extract_feat`` -> RPN proposals -> assigner + sampler (drawing from
    the global torch random state, so every view draws other RoIs) ->
    ``roi_head._bbox_forward`` on the sampled RoIs (eval mode; ``fc_cls``
    in training mode, as in the loss), whose ``fc_cls`` input ``x_cls`` is
    captured with a forward pre-hook. On the first batch the head's
    ``cls_score`` is checked to be ``fc_cls(x_cls)`` (replayed from the
    random state of the head's own call: a classifier with dropout draws
    the same masks). Targets:
    ``bbox_head.get_targets(..., concat=False)`` (labels, label weights).

    Args:
        model: an mmdet ``TwoStageDetector`` (unwrapped; see
            :func:`check_cacheable_detector`).
        loaders: one built dataloader per view.
        root: the cache folder (written atomically).
        dtype: ``'float16'`` or ``'float32'``.
        fingerprint: stored in ``meta.json``.

    Returns:
        RoIFeatureCache: the opened cache (layout in its docstring).
    """
    from mmdet.structures.bbox import bbox2roi
    roi_head = model.roi_head
    head = roi_head.bbox_head
    fc_cls = head.fc_cls
    pre = model.data_preprocessor
    slots = int(roi_head.bbox_sampler.num)
    n = check_view_lengths(loaders)
    k_views = len(loaders)
    captured: List[Tensor] = []
    # the random state fc_cls starts from, so that the check below draws
    # the same dropout masks as the head's own call
    rng: List[tuple] = []

    def capture(mod, args):
        captured.append(args[0])
        if not checked:
            rng.append((torch.get_rng_state(), args[0].device,
                        torch.cuda.get_rng_state(args[0].device)
                        if args[0].is_cuda else None))

    handle = fc_cls.register_forward_pre_hook(capture)
    was_training = model.training
    # fc_cls runs (in training mode, as in the loss) only inside the box
    # head's forward; its state (e.g. BatchNorm statistics of a
    # confidence layer) is restored afterwards
    saved = copy.deepcopy(fc_cls.state_dict())
    model.eval()
    fc_cls.train()
    mismatched = 0
    checked = False
    try:
        with CacheWriter(root, CACHE_FORMAT, fingerprint, dtype) as writer:
            num = writer.array('num_rois', (k_views, n), np.int32)
            for k, loader in enumerate(loaders):
                pos = 0
                for data in loader:
                    data = pre(data, True)
                    samples = data['data_samples']
                    mismatched += _padding_mismatches(pre, samples)
                    x = model.extract_feat(data['inputs'])
                    results = _sample_rois(model, x, samples)
                    rois = bbox2roi([r.priors for r in results])
                    captured.clear()
                    out = roi_head._bbox_forward(x, rois)
                    if len(captured) != 1:
                        raise ValueError(
                            f'{LOOP}: {CLASSIFIER} ran {len(captured)} times '
                            'in one box-head forward; its input cannot be '
                            'captured. Use the standard loop.')
                    x_cls = captured[0]
                    if not checked:
                        if not (x_cls.ndim == 2
                                and x_cls.shape[0] == rois.shape[0] and
                                torch.equal(out['cls_score'],
                                            _replay(fc_cls, x_cls, rng[0]))):
                            raise ValueError(
                                f'{LOOP}: the cls_score of '
                                f'{type(head).__name__} is not fc_cls(<its '
                                'input>) per RoI; the head does more after '
                                'its classifier. Use the standard loop.')
                        checked = True
                    labels, weights, _, _ = head.get_targets(
                        results, roi_head.train_cfg, concat=False)
                    sizes = [len(r.priors) for r in results]
                    if max(sizes) > slots:
                        raise ValueError(
                            f'{LOOP}: the RoI sampler returned {max(sizes)} '
                            f'RoIs for an image, more than its num={slots}.')
                    feats = x_cls.float().cpu().split(sizes)
                    fm = writer.array('feats',
                                      (k_views, n, slots, x_cls.shape[1]))
                    lm = writer.array('labels', (k_views, n, slots), np.int64)
                    wm = writer.array('weights', (k_views, n, slots),
                                      np.float32)
                    if pos + len(sizes) > n:
                        raise ValueError(
                            'the extraction loader yields more samples than '
                            'the dataset has; it must visit every index '
                            'once.')
                    for i, m in enumerate(sizes):
                        fm[k, pos, :m] = feats[i].numpy().astype(fm.dtype)
                        lm[k, pos, :m] = labels[i].cpu().numpy()
                        wm[k, pos, :m] = weights[i].float().cpu().numpy()
                        num[k, pos] = m
                        pos += 1
                if pos != n:
                    raise ValueError(f'view {k} yielded {pos} samples, the '
                                     f'dataset has {n}.')
            writer.finish(
                views=k_views,
                num_samples=n,
                labels_per_view=True,
                roi_slots=slots,
                num_classes=int(head.num_classes),
                padding_mismatches=mismatched)
    finally:
        handle.remove()
        fc_cls.load_state_dict(saved)
        model.train(was_training)
    if mismatched:
        warnings.warn(
            f'{LOOP}: {mismatched} image(s) were padded to a larger batch '
            'size than their own in the extraction batches; the standard '
            'loop pads them in other (random) batches, so their features '
            'near the border may differ. cache batch_size=1 pads every '
            'image alone.')
    return RoIFeatureCache(root)


# ---------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------
def _not_feature_path(name: str) -> bool:
    """State entries that do not influence the cached ``x_cls``."""
    return _after_cache(name)


def _cls_loss(model: nn.Module, data_batch: dict) -> dict:
    """mmdet's classification term of ``BBoxHead.loss`` on cached RoIs."""
    head = model.roi_head.bbox_head
    cls_score = head.fc_cls(data_batch['inputs'])
    return head.loss(
        cls_score,
        None,
        None,
        data_batch['labels'],
        data_batch['label_weights'],
        None,
        None,
        reduction_override=None)


@LOOPS.register_module()
class CachedRoIFeatureEpochBasedTrainLoop(CachedFeatureEpochLoopMixin,
                                          EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` on cached sampled-RoI features (module
    doc); ``cache``: :func:`check_det_cache_options`, opened as a
    :class:`RoIFeatureCache`."""

    cache_format = CACHE_FORMAT
    cache_extract = staticmethod(extract_roi_cache)
    cache_class = RoIFeatureCache
    cache_loss = staticmethod(_cls_loss)
    restore_rng_after_cache = True

    def check_options(self, cache_cfg: dict) -> dict:
        """:func:`check_det_cache_options`."""
        return check_det_cache_options(cache_cfg)

    def check_cacheable(self, model: nn.Module) -> None:
        """:func:`check_cacheable_detector`."""
        check_cacheable_detector(model)

    # -- cache ---------------------------------------------------------------
    def check_model_before_cache(self, model: nn.Module) -> None:
        """Only ``roi_head.bbox_head.fc_cls`` trains; frozen BN in eval
        mode; warn on dropout before ``fc_cls``."""
        check_trainable_within(model, _in_classifier, CLASSIFIER, LOOP)
        drop = check_frozen_part_eval_like(model, self.runner, _after_cache,
                                           LOOP)
        warn_active_dropout(drop, LOOP)

    def fingerprint_parts(self, model: nn.Module) -> List[str]:
        """Frozen weights (without ``fc_cls``, ``fc_reg``, mask head), the
        RPN proposal / RCNN assigner + sampler settings, the classes and the
        preprocessor's padding (the training list: the shared
        ``dataset_fingerprint``, through dataset wrappers)."""
        pre = model.data_preprocessor
        train_cfg = model.train_cfg
        return [
            state_fingerprint(model, _not_feature_path),
            type(model.roi_head.bbox_head).__name__,
            f'classes={model.roi_head.bbox_head.num_classes}',
            'rpn_proposal=' + repr(train_cfg.get('rpn_proposal')),
            'rcnn=' + repr(train_cfg.get('rcnn')), 'pad=' + repr(
                tuple(
                    getattr(pre, a, None)
                    for a in ('pad_size_divisor', 'pad_value', 'bgr_to_rgb',
                              'rgb_to_bgr')))
        ]

    def describe_cache(self, cache: RoIFeatureCache) -> str:
        return (f'{cache.num_views} view(s) x {len(cache)} images x '
                f'{cache.feats.shape[2]} RoI slots x {cache.feats.shape[3]}'
                f', {int(np.asarray(cache.num_rois).sum())} RoIs')

    def prepare_cache(self) -> RoIFeatureCache:
        """Check the model and build (or reuse) the RoI feature cache."""
        return super().prepare_cache(keys=('img_path', 'instances'))

    # -- training ------------------------------------------------------------
    def cached_batch(self, views: np.ndarray, indices: np.ndarray) -> dict:
        """``dict(inputs, labels, label_weights, indices)`` of the valid
        RoIs of images ``indices``: (M, D) float32, (M, ) int64,
        (M, ) float32 on the classifier's device."""
        model = unwrap_model(self.runner.model)
        device = next(model.roi_head.bbox_head.fc_cls.parameters()).device
        x, lab, w = self.cache.gather_rois(views, indices)
        return dict(
            inputs=x.to(device),
            labels=lab.to(device),
            label_weights=w.to(device),
            indices=indices)
