"""Hooks and feature extraction of the classification adapter.

:class:`NCMCentroidHook` fills the class means of the nearest-class-mean
classifier (Decoupling, Kang et al. ICLR 2020, Sec. 4) from the training
set before validation / testing; :func:`extract_pre_logits` runs
backbone + neck once over a dataloader (also used by
``tools/analysis/sweep_posthoc.py``).
"""
from __future__ import annotations

import copy
import os.path as osp
import time
from typing import Optional, Tuple

import torch
from mmengine.dist import (broadcast, collect_results, get_dist_info,
                           is_main_process)
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import (get_state_dict, save_checkpoint,
                                        weights_to_cpu)
from mmpretrain.registry import HOOKS
from torch import Tensor


def eval_dataloader_cfg(cfg, split: str = 'train') -> dict:
    """Dataloader config of ``split`` with the deterministic test pipeline.

    ``split='train'`` takes ``cfg.train_dataloader`` and replaces its
    pipeline by the test pipeline and its sampler by an unshuffled
    ``DefaultSampler`` (features of every training image, once, without
    augmentation -- as the reference ``train_plain`` loader). ``'val'`` and
    ``'test'`` return the config's own loaders.
    """
    key = f'{split}_dataloader'
    if cfg.get(key) is None:
        raise ValueError(f'the config has no {key}.')
    loader = copy.deepcopy(cfg[key])
    if split != 'train':
        return loader
    ref = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    test_pipeline = None
    if ref is not None:
        test_pipeline = ref.get('dataset', {}).get('pipeline')
    ds = loader['dataset']
    if test_pipeline is not None and 'pipeline' in ds:
        ds['pipeline'] = copy.deepcopy(test_pipeline)
    loader['sampler'] = dict(type='DefaultSampler', shuffle=False)
    loader.pop('batch_sampler', None)
    if ref is not None and 'batch_size' in ref:
        loader['batch_size'] = ref['batch_size']
    loader['persistent_workers'] = False
    return loader


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
    for data in dataloader:
        data = model.data_preprocessor(data, False)
        x = model.head.pre_logits(model.extract_feat(data['inputs']))
        x = x.float().cpu()
        for i, ds in enumerate(data['data_samples']):
            rows.append((x[i], int(ds.gt_label.reshape(-1)[0])))
    model.train(was_training)
    size = len(dataloader.dataset)
    _, world = get_dist_info()
    if world > 1:
        rows = collect_results(rows, size, 'cpu')
        if not is_main_process():
            rows = None
        holder = [rows]
        from mmengine.dist import broadcast_object_list
        broadcast_object_list(holder)
        rows = holder[0]
    if not rows:
        raise ValueError('the dataloader yielded no sample.')
    feats = torch.stack([r[0] for r in rows])
    labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
    return feats, labels


@HOOKS.register_module()
class NCMCentroidHook(Hook):
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

    priority = 'LOW'

    def __init__(self,
                 dataloader: Optional[dict] = None,
                 recompute_on_val: bool = True,
                 recompute_on_test: bool = False,
                 save_checkpoint: bool = True) -> None:
        self.dataloader = dataloader
        self.recompute_on_val = recompute_on_val
        self.recompute_on_test = recompute_on_test
        self.save_checkpoint = save_checkpoint

    def _head(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = getattr(model, 'head', None)
        if not callable(getattr(head, 'set_centroids', None)):
            raise ValueError(
                'NCMCentroidHook needs a head with set_centroids '
                f"(NCMClsHead); the model has {type(head).__name__}.")
        return model, head

    def _compute(self, runner) -> None:
        model, head = self._head(runner)
        cfg = self.dataloader or eval_dataloader_cfg(runner.cfg, 'train')
        loader = runner.build_dataloader(cfg, seed=runner.seed)
        t0 = time.time()
        feats, labels = extract_pre_logits(runner.model, loader)
        device = next(model.parameters()).device
        head.set_centroids(feats.to(device), labels.to(device))
        for buf in (head.centroids, head.global_mean, head.ncm_ready):
            broadcast(buf)  # identical on every rank (no-op without dist)
        runner.logger.info(
            f'NCMCentroidHook: class means of {len(labels)} training samples '
            f'({head.num_classes} classes) computed in '
            f'{time.time() - t0:.1f}s.')

    def before_val(self, runner) -> None:
        _, head = self._head(runner)
        if self.recompute_on_val or not head.ready:
            self._compute(runner)

    def before_test(self, runner) -> None:
        model, head = self._head(runner)
        if head.ready and not self.recompute_on_test:
            runner.logger.info('NCMCentroidHook: using the class means of '
                               'the checkpoint.')
            return
        self._compute(runner)
        if self.save_checkpoint and is_main_process():
            path = osp.join(runner.work_dir, 'ncm_centroids.pth')
            save_checkpoint(
                dict(
                    meta=dict(source=runner._load_from, ncm=True),
                    state_dict=weights_to_cpu(get_state_dict(model))), path)
            runner.logger.info(
                f'NCMCentroidHook: model with class means saved to {path}')
