"""Class-dependent temperatures, CDT (Ye et al., arXiv 2001.01385).

* Eq. 3 -- training loss: softmax cross-entropy on ``z_c / a_c`` with
  ``a_c = (N_max / N_c) ** gamma`` (``a_c = 1`` for the largest class,
  ``> 1`` for the others when ``gamma > 0``). Test time uses the raw
  logits ``z_c``.
* Eq. 5 -- post-hoc rule ``argmax_c z_c / N_c ** tau``
  (:func:`nc_tau_adjust`).
* For comparison, logit adjustment ``z_c - tau * log N_c``
  (:func:`logit_adjust`), which divides the *probabilities* by
  ``N_c ** tau``. The two rules differ: on negative logits Eq. 5 even
  reverses its effect.

Detection (mmdet convention): logits have ``C + 1`` columns with the
background last while the counts cover the C foreground classes only; the
background gets temperature 1 / is left untouched.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .checks import CountsLike, as_counts, check_choice, check_range

CDT_REDUCTIONS = ('mean', 'sum', 'none')


def _class_view(vec: Tensor, ndim: int) -> Tensor:
    return vec.reshape((1, -1) + (1, ) * (ndim - 2))


def cdt_temperatures(counts: CountsLike, gamma: float) -> Tensor:
    """Class-dependent temperatures (CDT Eq. 3).

    ``a_c = (N_max / N_c) ** gamma``.

    Args:
        counts: per-class training counts N_c, shape (C,), all > 0.
        gamma: ``>= 0``; 0 recovers plain ERM (reference grids:
            CIFAR-10 [0, 0.4], CIFAR-100 [0, 0.2], iNat [0, 0.1]).

    Returns:
        Tensor: float32 temperatures of shape (C,), all ``>= 1``.
    """
    gamma = check_range('gamma', gamma, 0.0)
    n = as_counts(counts, allow_zero=False)
    return (n.max() / n).pow(gamma).to(torch.float32)


def cdt_logits(logits: Tensor,
               temperatures: Tensor,
               background: bool = False) -> Tensor:
    """Temperature-scaled training logits ``z_c / a_c`` (CDT Eq. 3).

    Use for the training loss only; inference uses the raw logits.

    Args:
        logits: (N, C') or (N, C', H, W).
        temperatures: (C,) from :func:`cdt_temperatures`.
        background: the logits carry an extra last background column
            (``C' = C + 1``) whose temperature is 1.

    Returns:
        Tensor: same shape as ``logits``.
    """
    if logits.dim() < 2:
        raise ValueError(f'logits must be (N, C) or (N, C, H, W), got '
                         f'shape {tuple(logits.shape)}.')
    a = temperatures.reshape(-1).to(device=logits.device, dtype=logits.dtype)
    if background:
        a = torch.cat([a, a.new_ones(1)])
    if a.numel() != logits.shape[1]:
        raise ValueError(
            f'{temperatures.numel()} temperatures (background={background}) '
            f'do not match logits with {logits.shape[1]} columns. For '
            'detection pass foreground counts and background=True.')
    return logits / _class_view(a, logits.dim())


class CDTCrossEntropy(nn.Module):
    """Cross-entropy with class-dependent temperatures (CDT Eq. 3).

    ``loss = CE(z / a, y)``. The attribute ``epoch`` is meant to be set from
    outside (e.g. by a training hook); while ``epoch < start_epoch`` all
    temperatures are 1 (plain CE), the deferred (DRW-style) variant used by
    the reference and suggested in the paper (ERM for the first half). With
    ``start_epoch=0`` CDT is always on.

    The temperatures are the non-persistent buffer ``temperatures`` (C,),
    derived from ``counts`` at construction.

    When it helps: CDT compensates for the *over-fitting* of the minor
    classes (Sec. 3: about 100 % training accuracy on them, lower test
    accuracy). The gradient is ``dL/dz_c = (softmax(z / a)_c - y_c) / a_c``,
    so the tail logits also learn more slowly; on a schedule too short to
    fit the few-shot training images CDT lowers few-shot accuracy, on a
    schedule that fits them it raises it (quickstart data:
    ``tools/analysis/cdt_experiment.py``, which also prints the training
    accuracy of the few-shot classes).

    Args:
        counts: per-class training counts (C,), foreground only for
            detection.
        gamma: ``>= 0``.
        background: logits carry a last background column (temperature 1).
        start_epoch: first epoch (0-based, compared with ``epoch``) with
            temperatures on.
        ignore_index: label to ignore.
        reduction: ``'mean'`` (over non-ignored elements; 0 if all are
            ignored), ``'sum'`` or ``'none'``.
        loss_weight: multiplier of the returned loss.
    """

    def __init__(self,
                 counts: CountsLike,
                 gamma: float,
                 background: bool = False,
                 start_epoch: int = 0,
                 ignore_index: int = -100,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.gamma = check_range('gamma', gamma, 0.0)
        self.start_epoch = int(check_range('start_epoch', start_epoch, 0))
        self.background = bool(background)
        self.ignore_index = int(ignore_index)
        self.reduction = check_choice('reduction', reduction, CDT_REDUCTIONS)
        self.loss_weight = check_range('loss_weight', loss_weight)
        self.epoch = 0
        self.register_buffer(
            'temperatures', cdt_temperatures(counts, gamma), persistent=False)

    @property
    def active(self) -> bool:
        """Whether the temperatures are applied at the current epoch."""
        return self.epoch >= self.start_epoch

    def current_temperatures(self) -> Tensor:
        """Temperatures in use now (ones before ``start_epoch``), (C,)."""
        if self.active:
            return self.temperatures
        return torch.ones_like(self.temperatures)

    def forward(self,
                logits: Tensor,
                labels: Tensor,
                reduction: Optional[str] = None) -> Tensor:
        """Compute the CDT loss.

        Args:
            logits: (N, C') or (N, C', H, W).
            labels: (N,) or (N, H, W).
            reduction: override of the constructor's ``reduction``.

        Returns:
            Tensor: the loss times ``loss_weight``.
        """
        reduction = check_choice('reduction', reduction or self.reduction,
                                 CDT_REDUCTIONS)
        scaled = cdt_logits(logits, self.current_temperatures(),
                            self.background)
        loss = F.cross_entropy(
            scaled.float(),
            labels.long(),
            ignore_index=self.ignore_index,
            reduction='none')
        if reduction == 'mean':
            valid = (labels != self.ignore_index).sum()
            loss = loss.sum() / valid.to(loss.dtype).clamp_min(1.0)
        elif reduction == 'sum':
            loss = loss.sum()
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        return (f'num_classes={self.temperatures.numel()}, '
                f'gamma={self.gamma}, background={self.background}, '
                f'start_epoch={self.start_epoch}')


def _check_counts(logits: Tensor, counts: CountsLike,
                  exclude_background: bool) -> Tensor:
    """Validated float64 counts for the calibrated columns of logits."""
    if logits.dim() < 2:
        raise ValueError(f'logits must be (N, C) or (N, C, H, W), got '
                         f'shape {tuple(logits.shape)}.')
    num_cal = logits.shape[1] - (1 if exclude_background else 0)
    return as_counts(counts, num_classes=num_cal, allow_zero=False)


def _apply_fg(logits: Tensor, new_fg: Tensor,
              exclude_background: bool) -> Tensor:
    if exclude_background:
        return torch.cat([new_fg, logits[:, -1:]], dim=1)
    return new_fg


def nc_tau_adjust(logits: Tensor,
                  counts: CountsLike,
                  tau: float,
                  exclude_background: bool = False) -> Tensor:
    """Post-hoc class-size normalisation (CDT Eq. 5): ``z_c / N_c ** tau``.

    Divides the *decision values* by ``N_c ** tau``. Unlike
    :func:`logit_adjust` this is not shift-invariant: on negative logits it
    favours the major classes.

    Args:
        logits: (N, C') or (N, C', H, W).
        counts: (C,) training counts, ``C = C' - 1`` when
            ``exclude_background`` (foreground only).
        tau: ``>= 0``.
        exclude_background: leave the last (background) column untouched.

    Returns:
        Tensor: same shape as ``logits``.
    """
    tau = check_range('tau', tau, 0.0)
    n = _check_counts(logits, counts, exclude_background)
    fg = logits[:, :-1] if exclude_background else logits
    # factor computed in float64 (N_c ** tau can overflow float16)
    inv = n.pow(-tau).to(device=fg.device, dtype=fg.dtype)
    out = fg * _class_view(inv, fg.dim())
    return _apply_fg(logits, out, exclude_background)


def logit_adjust(logits: Tensor,
                 counts: CountsLike,
                 tau: float,
                 exclude_background: bool = False) -> Tensor:
    """Post-hoc logit adjustment: ``z_c - tau * log N_c``.

    Equivalent to dividing the softmax *probabilities* by ``N_c ** tau``
    (shift-invariant, so counts or frequencies give the same argmax). Listed
    for comparison with CDT Eq. 5 (:func:`nc_tau_adjust`).

    Args:
        logits: (N, C') or (N, C', H, W).
        counts: (C,) training counts (foreground only when
            ``exclude_background``).
        tau: ``>= 0``.
        exclude_background: leave the last (background) column untouched.

    Returns:
        Tensor: same shape as ``logits``.
    """
    tau = check_range('tau', tau, 0.0)
    n = _check_counts(logits, counts, exclude_background)
    fg = logits[:, :-1] if exclude_background else logits
    shift = (tau * n.log()).to(device=fg.device, dtype=fg.dtype)
    out = fg - _class_view(shift, fg.dim())
    return _apply_fg(logits, out, exclude_background)
