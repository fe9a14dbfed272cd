"""Run a model over a dataset once, in eval mode (every toolbox).

Shared by the hooks and analysis tools that need features of a whole split
(the NCM class means of Decoupling Sec. 4 over the training set, cached
features for post-hoc sweeps):

* :func:`eval_dataloader_cfg` -- the loader config of a split with the
  deterministic test pipeline (training images without augmentation);
* :func:`eval_batches` -- preprocessed batches under ``torch.no_grad`` with
  the model in eval mode (its mode restored afterwards).

No toolbox import: only mmengine.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Iterator

import torch
from mmengine.model import is_model_wrapper


def eval_dataloader_cfg(cfg: Any,
                        split: str = 'train',
                        round_up: bool = True) -> dict:
    """Dataloader config of ``split`` with the deterministic test pipeline.

    ``split='train'`` takes ``cfg.train_dataloader`` and replaces its
    pipeline by the test pipeline, its sampler by an unshuffled
    ``DefaultSampler`` (every training sample once, without augmentation
    -- the reference's ``train_plain`` loader) and its batch size by the
    test loader's. ``'val'`` and ``'test'`` return the config's own loaders.

    Args:
        cfg: an mmengine ``Config`` (or dict) with ``<split>_dataloader``.
        split: ``'train'``, ``'val'`` or ``'test'``.
        round_up: the ``DefaultSampler``'s ``round_up`` (training split);
            False makes the ranks of a distributed run see every sample
            exactly once (sums that are all-reduced stay exact).

    Returns:
        dict: a dataloader config for ``Runner.build_dataloader``.
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
    if test_pipeline is not None:
        _set_pipeline(loader['dataset'], test_pipeline)
    loader['sampler'] = dict(
        type='DefaultSampler', shuffle=False, round_up=bool(round_up))
    loader.pop('batch_sampler', None)
    if ref is not None and 'batch_size' in ref:
        loader['batch_size'] = ref['batch_size']
    loader['persistent_workers'] = False
    return loader


def _set_pipeline(ds: Any, pipeline: list) -> None:
    """Give ``pipeline`` to a dataset config, through mmengine's wrappers
    (``ClassBalancedDataset`` / ``RepeatDataset``: ``dataset``;
    ``ConcatDataset``: ``datasets``), which keep their indexing."""
    if not isinstance(ds, dict):
        return
    inner = [ds['dataset']] if isinstance(ds.get('dataset'), dict) else []
    inner += [d for d in ds.get('datasets') or [] if isinstance(d, dict)]
    if not inner:
        ds['pipeline'] = copy.deepcopy(pipeline)
        return
    for d in inner:
        _set_pipeline(d, pipeline)


def eval_batches(model: torch.nn.Module,
                 dataloader: Iterable) -> Iterator[dict]:
    """Preprocessed batches of ``dataloader``, model in eval mode.

    Each batch goes through ``model.data_preprocessor(data, False)`` (test
    mode); the model is unwrapped from DDP, switched to eval mode and
    restored to its previous mode when the iteration ends (also on error
    or early ``break``). Iterate under ``torch.no_grad()`` (this generator
    runs its own steps without gradients).

    Args:
        model: an OpenMMLab ``BaseModel`` (possibly wrapped).
        dataloader: a built dataloader.

    Yields:
        dict: ``dict(inputs=..., data_samples=...)`` as the model's
        ``forward`` receives it.
    """
    if is_model_wrapper(model):
        model = model.module
    was_training = model.training
    model.eval()
    try:
        for data in dataloader:
            with torch.no_grad():
                batch = model.data_preprocessor(data, False)
            yield batch
    finally:
        model.train(was_training)
