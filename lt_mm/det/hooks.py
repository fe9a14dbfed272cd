"""Hooks of the detection adapter: NCM class means of box features.

:class:`NCMCentroidHook` fills the buffers of every
:class:`lt_mm.det.decoupling.NCMLinear` box classifier (Decoupling, Kang et
al. ICLR 2020, Sec. 4, NCM) from the training set before validation /
testing, as :class:`lt_mm.cls.hooks.NCMCentroidHook` does for
classification heads.

Which RoIs: the ground-truth boxes. Each training instance gives one
feature -- the box-head feature at the input of ``fc_cls`` (e.g. fc7 of
``Shared2FCBBoxHead``) of the RoI equal to its ground-truth box -- so a
class mean is a mean over the class's instances, the detection analogue of
"one feature per training image" of the classification NCM. Positive
sampled RoIs (IoU >= 0.5 proposals) would match the test-time inputs a
little better but depend on the RPN, on the random RoI sampler and on
the number of proposals per object (large objects get many); the ground
truth box is among them anyway (mmdet adds the GT boxes as proposals), and
ground-truth boxes make the means deterministic and one pass of the
(frozen) detector cheap: no RPN, one RoI per instance.
"""
from __future__ import annotations

import copy
import time
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.registry import HOOKS
from mmdet.structures.bbox import bbox2roi, get_box_tensor
from mmengine.model import is_model_wrapper
from torch import Tensor

from lt_mm.engine.class_means import (ClassMeansHook, gather_in_order,
                                      per_sample)
from .decoupling import NCMLinear

_WRAPPERS = ('ClassBalancedDataset', 'RepeatDataset')


def gt_box_dataloader_cfg(cfg) -> dict:
    """Training loader config for ground-truth box features.

    ``cfg.train_dataloader`` with: the dataset unwrapped from
    ``ClassBalancedDataset`` / ``RepeatDataset`` (every image once); the
    test pipeline with ``LoadAnnotations(with_bbox=True)`` moved right after
    the image loader, so that ``Resize`` scales the boxes with the image
    (mmdet's test pipelines load annotations after resizing, in original
    image coordinates); no masks; an unshuffled ``DefaultSampler`` and the
    test batch size.
    """
    if cfg.get('train_dataloader') is None:
        raise ValueError('the config has no train_dataloader.')
    loader = copy.deepcopy(cfg.train_dataloader)
    ds = loader['dataset']
    while ds.get('type') in _WRAPPERS and 'dataset' in ds:
        ds = ds['dataset']
    ref = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    pipeline = copy.deepcopy(
        ref.get('dataset', {}).get('pipeline') or ds.get('pipeline') or [])
    steps = [
        t for t in pipeline
        if t.get('type') not in ('LoadAnnotations', 'RandomFlip')
    ]
    load = [
        i for i, t in enumerate(steps)
        if 'LoadImage' in str(t.get('type', ''))
    ]
    if not load:
        raise ValueError('NCMCentroidHook: the test pipeline has no image '
                         f'loading step: {pipeline}.')
    steps.insert(load[0] + 1,
                 dict(type='LoadAnnotations', with_bbox=True, with_mask=False))
    ds['pipeline'] = steps
    loader['dataset'] = ds
    loader['sampler'] = dict(type='DefaultSampler', shuffle=False)
    loader.pop('batch_sampler', None)
    if 'batch_size' in ref:
        loader['batch_size'] = ref['batch_size']
    loader['persistent_workers'] = False
    return loader


def ncm_layers(model) -> Dict[str, NCMLinear]:
    """The :class:`NCMLinear` box classifiers of a detector, by name."""
    if is_model_wrapper(model):
        model = model.module
    return {n: m for n, m in model.named_modules() if isinstance(m, NCMLinear)}


@torch.no_grad()
def extract_gt_box_features(
        model, dataloader,
        layers: Dict[str,
                     torch.nn.Module]) -> Tuple[Dict[str, Tensor], Tensor]:
    """Inputs of box classifiers on the ground-truth boxes of a dataloader.

    Runs ``data_preprocessor`` -> ``extract_feat`` -> the RoI head's
    ``_bbox_forward`` on ``bbox2roi(gt boxes)`` (every stage of a Cascade
    head) in eval mode and records the input of each layer in ``layers``
    (forward pre-hooks). Under ``torch.distributed`` the parts are gathered
    in dataset order on every rank.

    Args:
        model: an mmdet two-stage detector (possibly wrapped).
        dataloader: a built loader whose samples carry ``gt_instances``
            (:func:`gt_box_dataloader_cfg`).
        layers: name -> classifier module of ``model``.

    Returns:
        tuple: ``feats`` name -> (M, D) float32 CPU and ``labels`` (M,)
        int64, M = ground-truth instances (ignored ones excluded).
    """
    if is_model_wrapper(model):
        model = model.module
    roi_head = model.roi_head
    num_stages = getattr(roi_head, 'num_stages', None)
    store: Dict[str, List[Tensor]] = {n: [] for n in layers}
    handles = [
        m.register_forward_pre_hook(
            lambda mod, args, n=n: store[n].append(args[0].float().cpu()))
        for n, m in layers.items()
    ]
    was_training = model.training
    model.eval()
    for m in layers.values():  # plain logits: the means are not ready yet
        m.train()
    rows = []
    try:
        for data in dataloader:
            data = model.data_preprocessor(data, False)
            samples = data['data_samples']
            boxes = [get_box_tensor(s.gt_instances.bboxes) for s in samples]
            sizes = [len(b) for b in boxes]
            for n in store:
                store[n].clear()
            if sum(sizes) > 0:
                x = model.extract_feat(data['inputs'])
                rois = bbox2roi(boxes)
                if num_stages is None:
                    roi_head._bbox_forward(x, rois)
                else:
                    for stage in range(num_stages):
                        roi_head._bbox_forward(stage, x, rois)
            else:  # no box in the batch: still one (empty) row per image
                for n, m in layers.items():
                    store[n].append(torch.zeros(0, m.in_features))
            feats = {
                n: per_sample(torch.cat(v), sizes)
                for n, v in store.items()
            }
            for i, s in enumerate(samples):
                rows.append(({
                    n: f[i]
                    for n, f in feats.items()
                }, s.gt_instances.labels.reshape(-1).cpu()))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    rows = gather_in_order(rows, len(dataloader.dataset))
    if not rows:
        raise ValueError('the dataloader yielded no ground-truth box.')
    labels = torch.cat([r[1] for r in rows]).long()
    out = {n: torch.cat([r[0][n] for r in rows]) for n in layers}
    return out, labels


@HOOKS.register_module()
class NCMCentroidHook(ClassMeansHook):
    """Compute the NCM class means of box features before val / test.

    Fills every :class:`~lt_mm.det.decoupling.NCMLinear` of the detector
    (:meth:`~lt_mm.det.decoupling.NCMLinear.set_centroids`) with the class
    means of the box-head features of the training instances' ground-truth
    boxes (module docstring), computed with the frozen detector in eval
    mode over :func:`gt_box_dataloader_cfg`. The means are buffers, so they
    are saved in checkpoints.

    Memory: the features are gathered on the CPU before averaging (float32,
    M x D: ~5 GB for LVIS v1 train with D = 1024); ``max_per_class`` keeps
    only the first k instances of each class (dataset order).

    Args:
        dataloader: loader config (default: :func:`gt_box_dataloader_cfg`).
        max_per_class: optional cap of instances per class.
        recompute_on_val: recompute before every validation.
        recompute_on_test: recompute before testing even when the loaded
            checkpoint has class means.
        save_checkpoint: after computing them before testing, save the
            model with its class means as ``<work_dir>/ncm_centroids.pth``.
    """

    def __init__(self,
                 dataloader: Optional[dict] = None,
                 max_per_class: Optional[int] = None,
                 recompute_on_val: bool = True,
                 recompute_on_test: bool = False,
                 save_checkpoint: bool = True) -> None:
        if max_per_class is not None and (isinstance(max_per_class, bool)
                                          or int(max_per_class) < 1):
            raise ValueError(f'max_per_class={max_per_class!r} must be None '
                             'or a positive integer.')
        super().__init__(dataloader, recompute_on_val, recompute_on_test,
                         save_checkpoint)
        self.max_per_class = None if max_per_class is None else int(
            max_per_class)

    def _layers(self, runner) -> Dict[str, NCMLinear]:
        layers = ncm_layers(runner.model)
        if not layers:
            raise ValueError(
                'NCMCentroidHook needs a box head with '
                "cls_predictor_cfg=dict(type='NCMLinear'); the model has "
                'none.')
        return layers

    def _cap(self, labels: Tensor) -> Tensor:
        """Indices of the first ``max_per_class`` instances per class."""
        order = torch.argsort(labels, stable=True)
        sorted_labels = labels[order]
        starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
        rank = torch.arange(len(labels)) - starts
        return order[rank < self.max_per_class].sort().values

    def compute(self, runner) -> None:
        layers = self._layers(runner)
        cfg = self.dataloader or gt_box_dataloader_cfg(runner.cfg)
        loader = runner.build_dataloader(cfg, seed=runner.seed)
        t0 = time.time()
        feats, labels = extract_gt_box_features(runner.model, loader, layers)
        if self.max_per_class is not None:
            keep = self._cap(labels)
            feats = {n: f[keep] for n, f in feats.items()}
            labels = labels[keep]
        for name, layer in layers.items():
            device = layer.weight.device
            layer.set_centroids(feats[name].to(device), labels.to(device))
        self.share_means(
            runner, list(layers.values()),
            f'class means of {len(labels)} ground-truth boxes for '
            f'{len(layers)} box classifier(s)', t0)

    def classifiers(self, runner) -> list:
        return list(self._layers(runner).values())
