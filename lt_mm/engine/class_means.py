"""When the NCM class means are computed and saved (every toolbox).

Decoupling's nearest-class-mean classifier (Kang et al., ICLR 2020,
Sec. 4) needs the class means of the frozen model's features over the
training set before it can predict. :class:`ClassMeansHook` owns *when*:
before validation (each time, or once), before testing (unless the
checkpoint already has them) and the saved model with the means; the
toolbox hooks (``NCMCentroidHook`` of ``lt_mm.cls``, ``lt_mm.seg``,
``lt_mm.det``) only say *how* (which features: image, pixel or
ground-truth-box) through :meth:`classifiers` and :meth:`compute`.
"""
from __future__ import annotations

import os.path as osp
import time
from typing import List, Optional, Sequence

from mmengine.dist import (broadcast, broadcast_object_list, collect_results,
                           get_dist_info, is_main_process)
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import (get_state_dict, save_checkpoint,
                                        weights_to_cpu)
from torch import Tensor


def per_sample(x: Tensor,
               sizes: Optional[Sequence[int]] = None) -> List[Tensor]:
    """The rows of a batch tensor (or its row blocks of ``sizes``), each
    in its own storage.

    A view keeps the whole batch's storage: pickled to gather the rows
    across ranks (:func:`gather_in_order`) it would carry the whole batch,
    B times the data per sample.

    Args:
        x: (B, ...) tensor.
        sizes: rows per sample (e.g. boxes per image); None: one each.

    Returns:
        list[Tensor]: ``len(sizes)`` (or B) tensors.
    """
    parts = x.unbind(0) if sizes is None else x.split(list(sizes))
    return [p.clone() for p in parts]


def gather_in_order(rows: list, size: int) -> list:
    """Every rank's per-sample ``rows`` in dataset order, on every rank
    (mmengine's ``collect_results`` to rank 0, then a broadcast); the rows
    as they are with one process.

    Args:
        rows: this rank's rows, one per sample of its shard.
        size: samples in the dataset (drops the distributed sampler's
            padding).
    """
    _, world = get_dist_info()
    if world == 1:
        return rows
    rows = collect_results(rows, size, 'cpu')
    holder = [rows if is_main_process() else None]
    broadcast_object_list(holder)
    return holder[0]


class ClassMeansHook(Hook):
    """Compute class means before val / test; save the model with them.

    Args:
        dataloader: the loader config of the features (None: the
            toolbox's default, the training set with the test pipeline).
        recompute_on_val: recompute before every validation (stage-1
            features change while training); False computes them once.
        recompute_on_test: recompute before testing even when the
            checkpoint has class means.
        save_checkpoint: after computing them for a test run, save the
            model with its means to ``WORK_DIR/ncm_centroids.pth``.
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

    def classifiers(self, runner) -> list:
        """The NCM classifier(s) of the model (each with ``ready``)."""
        raise NotImplementedError

    def means_ready(self, runner) -> bool:
        """Whether every classifier holds class means (e.g. loaded)."""
        return all(m.ready for m in self.classifiers(runner))

    def compute(self, runner) -> None:
        """Compute the class means and store them in the model."""
        raise NotImplementedError

    def share_means(self, runner, classifiers: Sequence, what: str,
                    t0: float) -> None:
        """After :meth:`compute` stored the means: make every rank hold
        rank 0's buffers (``_optional_buffers`` of each classifier; a no-op
        without torch.distributed) and log ``what`` was computed since
        ``t0`` (``time.time()``)."""
        for clf in classifiers:
            for name in clf._optional_buffers:
                broadcast(getattr(clf, name))
        runner.logger.info(f'NCMCentroidHook: {what} computed in '
                           f'{time.time() - t0:.1f}s.')

    def before_run(self, runner) -> None:
        """Refuse a model without the NCM classifier when the run starts
        (before the first training iteration, not at the first
        validation)."""
        self.classifiers(runner)

    def before_val(self, runner) -> None:
        if self.recompute_on_val or not self.means_ready(runner):
            self.compute(runner)

    def before_test(self, runner) -> None:
        if self.means_ready(runner) and not self.recompute_on_test:
            runner.logger.info(f'{type(self).__name__}: using the class '
                               'means of the checkpoint.')
            return
        self.compute(runner)
        if self.save_checkpoint and is_main_process():
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
            path = osp.join(runner.work_dir, 'ncm_centroids.pth')
            save_checkpoint(
                dict(
                    meta=dict(source=runner._load_from, ncm=True),
                    state_dict=weights_to_cpu(get_state_dict(model))), path)
            runner.logger.info(f'{type(self).__name__}: model with class '
                               f'means saved to {path}')
