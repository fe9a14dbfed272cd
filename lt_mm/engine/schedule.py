"""Schedules that follow ``train_cfg`` when a run is resumed longer.

mmengine fills a parameter scheduler's missing ``end`` (and, through it,
``T_max`` of cosine and ``total_iters`` of poly / linear schedules) from
``train_cfg.max_epochs`` / ``max_iters`` when it builds the schedulers. On
``--resume`` it then restores the schedulers' *state* from the checkpoint,
and that state contains ``end`` / ``T_max`` / ``total_iters`` of the first
run: a resume with a larger ``max_epochs`` keeps decaying towards the old
end (or stops decaying at it), instead of following the longer schedule.

:class:`ResumeScheduleHook` fixes that at ``before_train`` (after the
resume): when the schedulers rebuilt from the config for the *current*
``train_cfg`` have another ``end`` than the resumed ones, it rebuilds them
and replays their steps up to the resumed iteration (no training, only the
scheduler arithmetic), so every later step uses exactly the value a
straight run with the new ``train_cfg`` would use. When nothing changed it
does nothing, so a plain resume stays bit-exact.

``lt_mm.engine.runner_utils.build_runner`` (``tools/train.py``) adds it to
every training run; shipped configs omit ``end`` / ``T_max`` from their
decay schedulers, so the schedule length is always ``train_cfg``'s.
"""
from __future__ import annotations

import copy
import warnings
from typing import List

from mmengine.hooks import Hook
from mmengine.optim.scheduler import ReduceOnPlateauParamScheduler
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop


def _flat(schedulers) -> List:
    """Schedulers as one list (mmengine allows a list or a dict of lists)."""
    if schedulers is None:
        return []
    if isinstance(schedulers, dict):
        out: List = []
        for v in schedulers.values():
            out += list(v) if isinstance(v, (list, tuple)) else [v]
        return out
    return list(schedulers)


@HOOKS.register_module()
class ResumeScheduleHook(Hook):
    """Re-time resumed parameter schedulers to the current ``train_cfg``.

    Not a method of a paper: an engineering fix so that ``--resume`` with a
    longer ``max_epochs`` / ``max_iters`` gives the learning-rate curve of a
    straight run of that length (e.g. cosine annealing,
    ``lr_t = eta_min + (lr_0 - eta_min)(1 + cos(pi t / T)) / 2`` with
    ``T = max_epochs``; poly ``lr_t = (lr_0 - eta_min)(1 - t / T) ** p +
    eta_min`` with ``T = max_iters``).

    At ``before_train``, if the run resumed (``runner.iter > 0``) and the
    config's ``param_scheduler`` rebuilt for the current loop has an ``end``
    different from a resumed scheduler's: every scheduled value is reset to
    its ``initial_*`` value, the schedulers are rebuilt (mmengine's default
    ``end`` = the current ``max_epochs`` / ``max_iters``) and stepped
    exactly as ``ParamSchedulerHook`` would have stepped them over the
    ``runner.iter`` iterations / ``runner.epoch`` epochs already done.
    Schedulers with an explicit ``end`` in the config keep it (they rebuild
    to the same value). ``ReduceOnPlateau`` schedulers (state depends on
    the validation history) are left alone with a warning.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        """Rebuild and replay the schedulers if the schedule length changed.

        Args:
            runner: the mmengine Runner (after ``load_or_resume``).
        """
        if runner.iter == 0:
            return
        cfg_sched = runner.cfg.get('param_scheduler', None)
        old = _flat(runner.param_schedulers)
        if cfg_sched is None or not old:
            return
        if any(isinstance(s, ReduceOnPlateauParamScheduler) for s in old):
            warnings.warn('ResumeScheduleHook: ReduceOnPlateau schedulers '
                          'are not re-timed on resume.')
            return
        # reset the scheduled values to their initial ones, then rebuild
        # (the constructors' first step runs as in a fresh run)
        saved = []
        for s in old:
            for group in s.optimizer.param_groups:
                saved.append((group, s.param_name, group[s.param_name]))
        for s in old:
            for group in s.optimizer.param_groups:
                init = group.get(f'initial_{s.param_name}')
                if init is not None:
                    group[s.param_name] = init
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            new = runner.build_param_scheduler(copy.deepcopy(cfg_sched))
        new_flat = _flat(new)
        changed = len(new_flat) != len(old) or any(
            a.end != b.end or type(a) is not type(b)
            for a, b in zip(old, new_flat))
        if not changed:
            # nothing to re-time: restore the resumed values untouched
            for group, name, value in saved:
                group[name] = value
            return
        self._replay(runner, new_flat)
        runner.param_schedulers = new
        runner.logger.info(
            'ResumeScheduleHook: schedulers re-timed to the current '
            'train_cfg (' +
            ', '.join(f'{type(s).__name__} end {a.end} -> {s.end}'
                      for a, s in zip(old, new_flat)) + ')')

    @staticmethod
    def _replay(runner, schedulers: List) -> None:
        """Step ``schedulers`` as ``ParamSchedulerHook`` did until now."""
        iters_done, epochs_done = runner.iter, runner.epoch
        by_epoch_loop = isinstance(runner.train_loop, EpochBasedTrainLoop)
        iter_s = [s for s in schedulers if not s.by_epoch]
        epoch_s = [s for s in schedulers if s.by_epoch]
        with warnings.catch_warnings():
            # "scheduler.step() before optimizer.step()": intended here
            warnings.simplefilter('ignore')
            if by_epoch_loop:
                per_epoch = len(runner.train_dataloader)
                for _ in range(epochs_done):
                    for _ in range(per_epoch):
                        for s in iter_s:
                            s.step()
                    for s in epoch_s:
                        s.step()
                rest = iters_done - epochs_done * per_epoch
            else:
                rest = iters_done
            for _ in range(max(rest, 0)):
                for s in iter_s:
                    s.step()
