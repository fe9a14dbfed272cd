"""Hooks and feature extraction of the segmentation adapter.

:class:`NCMConvSegCentroidHook` (config type ``'NCMCentroidHook'``, the
name of the classification hook, or ``'NCMConvSegCentroidHook'``) fills
the per-pixel class means of :class:`lt_mm.seg.NCMConvSeg` (Decoupling,
Kang et al. ICLR 2020, Sec. 4, NCM) from the training set before
validation / testing; :func:`iter_pixel_features` yields the
pre-classifier feature maps of a decode head with their labels at the
feature resolution.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Iterator, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_dist_info
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import Tensor

from lt_mm.core.decoupling import class_feature_sums
from lt_mm.engine.class_means import ClassMeansHook
from lt_mm.engine.features import eval_batches, eval_dataloader_cfg


class _Captured(Exception):
    """Carries the classifier input out of the decode head's forward."""

    def __init__(self, feat: Tensor) -> None:
        super().__init__('classifier input captured')
        self.feat = feat


def _decode_head(model: nn.Module) -> nn.Module:
    if is_model_wrapper(model):
        model = model.module
    head = getattr(model, 'decode_head', None)
    if not isinstance(getattr(head, 'conv_seg', None), nn.Module):
        raise ValueError(
            f'{type(model).__name__} has no decode head with a conv_seg '
            '(cascade segmentors are not supported).')
    return head


def _crop_padding(feat: Tensor, in_size: Tuple[int, int],
                  meta: dict) -> Tensor:
    """Drop the feature rows / columns of the test-time padding."""
    pad = meta.get('padding_size')
    if not pad or not any(pad):
        return feat
    left, right, top, bottom = (int(v) for v in pad)
    h, w = feat.shape[-2:]
    sy, sx = h / in_size[0], w / in_size[1]
    y0, y1 = round(top * sy), h - round(bottom * sy)
    x0, x1 = round(left * sx), w - round(right * sx)
    return feat[..., y0:y1, x0:x1]


def capture_classifier_input(head: nn.Module, x: Any) -> Tensor:
    """The input of ``head.conv_seg`` when ``head(x)`` runs (the rest of
    the head is skipped): (N, D, h, w).

    Works for every decode head whose forward ends in ``cls_seg`` and for
    the stock ``conv_seg``; the one implementation of the NCM hook, the
    post-hoc sweep and the cached stage 2.

    Args:
        head: the decode head.
        x: its input (the backbone / neck output).

    Raises:
        ValueError: the head's forward never called ``conv_seg``.
    """

    def grab(_module, args):
        raise _Captured(args[0])

    handle = head.conv_seg.register_forward_pre_hook(grab)
    try:
        head(x)
    except _Captured as cap:
        return cap.feat
    finally:
        handle.remove()
    raise ValueError(f'{type(head).__name__}.forward did not call conv_seg; '
                     'its classifier input cannot be captured.')


@torch.no_grad()
def iter_pixel_features(model: nn.Module,
                        dataloader) -> Iterator[Tuple[Tensor, Tensor]]:
    """Pre-classifier feature maps and labels at their resolution.

    For every image: ``data_preprocessor`` (test mode) -> ``extract_feat``
    -> ``decode_head.forward`` up to its ``conv_seg``, whose input (the
    eval-mode classifier input, equal to the pre-dropout map) is captured
    and the rest skipped. The ground truth ``gt_sem_seg`` (loaded by the
    test pipeline) is resized to the feature map with nearest-neighbour
    sampling; the feature rows / columns of test-time padding are
    dropped. Works for every decode head whose forward ends in
    ``cls_seg`` and for the stock ``conv_seg``.

    Args:
        model: an mmseg ``EncoderDecoder`` (possibly wrapped).
        dataloader: a built dataloader whose pipeline loads annotations.

    Yields:
        tuple: ``feat`` (1, D, h, w) (model dtype / device) and ``labels``
        (1, h, w) int64 on the same device (``ignore_index`` kept).
    """
    head = _decode_head(model)
    core_model = model.module if is_model_wrapper(model) else model
    for batch in eval_batches(model, dataloader):
        inputs, samples = batch['inputs'], batch['data_samples']
        feats = capture_classifier_input(head, core_model.extract_feat(inputs))
        for i, sample in enumerate(samples):
            if 'gt_sem_seg' not in sample:
                raise ValueError(
                    'the dataloader gives no gt_sem_seg: its pipeline '
                    'must load the annotations (LoadAnnotations).')
            feat = _crop_padding(feats[i:i + 1], inputs.shape[-2:],
                                 sample.metainfo)
            gt = sample.gt_sem_seg.data.reshape(1, 1, *sample.gt_sem_seg.shape)
            gt = F.interpolate(
                gt.float(), size=feat.shape[-2:], mode='nearest')
            yield feat, gt[:, 0].long().to(feat.device)


@HOOKS.register_module(name=['NCMCentroidHook', 'NCMConvSegCentroidHook'])
class NCMConvSegCentroidHook(ClassMeansHook):
    """Compute the per-pixel NCM class means before validation / testing.

    Runs the segmentor (eval mode) over the training set with the test
    pipeline (:func:`lt_mm.engine.features.eval_dataloader_cfg`, unshuffled,
    every image once) and accumulates, per class, the transformed
    pre-classifier pixel features (:func:`iter_pixel_features`, labels at
    feature resolution, ``ignore_index`` skipped) with
    :func:`lt_mm.core.decoupling.class_feature_sums`, all-reduced over the
    ranks; the means go to :meth:`lt_mm.seg.NCMConvSeg.load_sums` (buffers
    saved in checkpoints). ``feat_type='cl2n'`` costs two passes (the
    global mean first), ``'un'`` / ``'l2n'`` one.

    Args:
        dataloader: config of the loader to compute the means on (default:
            the training loader with the test pipeline).
        recompute_on_val: recompute before every validation.
        recompute_on_test: recompute before testing even when the loaded
            checkpoint already has class means.
        save_checkpoint: after computing them before testing, save the
            model with its class means as ``<work_dir>/ncm_centroids.pth``.
    """

    @staticmethod
    def _classifier(runner) -> Tuple[nn.Module, nn.Module]:
        head = _decode_head(runner.model)
        clf = head.conv_seg
        if not callable(getattr(clf, 'load_sums', None)):
            raise ValueError(
                'NCMCentroidHook (segmentation) needs the NCMConvSeg '
                "classifier: decode_head=dict(type='LTDecodeHead', "
                "classifier=dict(type='NCMConvSeg')); the model's conv_seg "
                f'is {type(clf).__name__}.')
        return head, clf

    def compute(self, runner) -> None:
        """Accumulate the class sums over the data and store the means."""
        head, clf = self._classifier(runner)
        cfg = self.dataloader or eval_dataloader_cfg(
            runner.cfg, 'train', round_up=False)
        loader = runner.build_dataloader(cfg, seed=runner.seed)
        t0 = time.time()
        sums: Dict[str, Tuple[Tensor, Tensor]] = {}
        for types in clf.passes:
            mean = None
            if 'un' in sums:
                mean = sums['un'][0].sum(0) / sums['un'][1].sum()
            acc: Dict[str, list] = {}
            for feat, labels in iter_pixel_features(runner.model, loader):
                for t in types:
                    s, n = class_feature_sums(feat, labels, clf.num_classes, t,
                                              mean, head.ignore_index)
                    if t in acc:
                        acc[t][0] += s
                        acc[t][1] += n
                    else:
                        acc[t] = [s, n]
            if not acc:
                if get_dist_info()[1] == 1:
                    raise ValueError('NCMCentroidHook: the dataloader '
                                     'yielded no image.')
                # a rank without an image (fewer images than ranks) still
                # joins every all_reduce, else the others wait forever;
                # no labelled pixel anywhere stops all ranks in load_sums
                device = clf.class_present.device
                acc = {
                    t: [
                        torch.zeros(
                            clf.num_classes,
                            clf.in_channels,
                            dtype=torch.float64,
                            device=device),
                        torch.zeros(
                            clf.num_classes, dtype=torch.long, device=device)
                    ]
                    for t in types
                }
            for t, (s, n) in acc.items():
                all_reduce(s)  # no-op without torch.distributed
                all_reduce(n)
                sums[t] = (s, n)
        missing = clf.load_sums(sums)
        if missing:
            runner.logger.warning(
                f'NCMCentroidHook: classes {missing} have no labelled pixel '
                'at the feature resolution in this data: they have no mean '
                'and are never predicted (NCMConvSeg missing=\'warn\'; '
                "missing='error' refuses).")
        pixels = int(sums['un'][1].sum())
        self.share_means(
            runner, [clf], f'per-pixel class means of {pixels} labelled '
            f'feature pixels ({clf.num_classes} classes, {len(clf.passes)} '
            'pass(es))', t0)

    def classifiers(self, runner) -> list:
        return [self._classifier(runner)[1]]
