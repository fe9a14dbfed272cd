"""Hooks and feature extraction of the classification adapter.

:class:`NCMCentroidHook` fills the class means of the nearest-class-mean
classifier (Decoupling, Kang et al. ICLR 2020, Sec. 4) from the training
set before validation / testing; :func:`extract_pre_logits` runs
backbone + neck once over a dataloader (also used by
``tools/analysis/sweep_posthoc.py``).
"""
from __future__ import annotations

import time
from typing import Tuple

import torch
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS
from torch import Tensor

from lt_mm.engine.class_means import (ClassMeansHook, gather_in_order,
                                      per_sample)
from lt_mm.engine.features import eval_dataloader_cfg  # noqa: F401


@torch.no_grad()
def extract_pre_logits(model, dataloader) -> Tuple[Tensor, Tensor]:
    """Features at the classifier input of every sample of a dataloader.

    Runs ``data_preprocessor`` -> ``extract_feat`` (backbone + neck) ->
    ``head.pre_logits`` in eval mode; under ``torch.distributed`` the
    per-rank parts are gathered in dataset order on every rank.

    Args:
        model: an mmpretrain ``ImageClassifier`` (possibly wrapped).
        dataloader: a built dataloader.

    Returns:
        tuple: ``feats`` (N, D) float32 on CPU and ``labels`` (N,) int64.
    """
    if is_model_wrapper(model):
        model = model.module
    was_training = model.training
    model.eval()
    rows = []
    try:
        for data in dataloader:
            data = model.data_preprocessor(data, False)
            x = model.head.pre_logits(model.extract_feat(data['inputs']))
            feats = per_sample(x.float().cpu())
            for feat, ds in zip(feats, data['data_samples']):
                rows.append((feat, int(ds.gt_label.reshape(-1)[0])))
    finally:  # the caller's mode, also when the loader or model raises
        model.train(was_training)
    rows = gather_in_order(rows, len(dataloader.dataset))
    if not rows:
        raise ValueError('the dataloader yielded no sample.')
    feats = torch.stack([r[0] for r in rows])
    labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
    return feats, labels


@HOOKS.register_module()
class NCMCentroidHook(ClassMeansHook):
    """Compute the NCM class means before validation / testing.

    Runs the model (backbone + neck, eval mode) over the training set with
    the test pipeline (:func:`eval_dataloader_cfg`) and stores the
    centroids in the head's buffers (:meth:`lt_mm.cls.heads.NCMClsHead.
    set_centroids`), so they are saved in checkpoints.

    Args:
        dataloader: config of the loader to compute the means on (default:
            the training loader with the test pipeline, unshuffled).
        recompute_on_val: recompute before every validation (features
            change while training).
        recompute_on_test: recompute before testing even when the loaded
            checkpoint already has class means.
        save_checkpoint: after computing them before testing, save the
            model with its class means as ``<work_dir>/ncm_centroids.pth``
            (a checkpoint that tests without recomputing).
    """

    def _head(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = getattr(model, 'head', None)
        if not callable(getattr(head, 'set_centroids', None)):
            raise ValueError(
                'NCMCentroidHook needs a head with set_centroids '
                f"(NCMClsHead); the model has {type(head).__name__}.")
        return model, head

    def compute(self, runner) -> None:
        model, head = self._head(runner)
        cfg = self.dataloader or eval_dataloader_cfg(runner.cfg, 'train')
        loader = runner.build_dataloader(cfg, seed=runner.seed)
        t0 = time.time()
        feats, labels = extract_pre_logits(runner.model, loader)
        device = next(model.parameters()).device
        head.set_centroids(feats.to(device), labels.to(device))
        self.share_means(
            runner, [head], f'class means of {len(labels)} training samples '
            f'({head.num_classes} classes)', t0)

    def classifiers(self, runner) -> list:
        return [self._head(runner)[1]]
