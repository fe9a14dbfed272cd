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

from typing import Callable, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ._utils import class_view
from .checks import (CountsLike, as_counts, check_choice, check_range,
                     renamed_arg)
from .reduction import REDUCTIONS, LongTailCrossEntropy, toolbox_loss

CDT_REDUCTIONS = REDUCTIONS


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
    return logits / class_view(a, logits.dim())


@toolbox_loss(
    'CDTLoss',
    cls=dict(gamma=0.2),
    seg=dict(gamma=0.1),
    det=dict(gamma=0.1, unit='instances'))
class CDTCrossEntropy(LongTailCrossEntropy):
    """Cross-entropy with class-dependent temperatures (CDT Eq. 3).

    ``loss = CE(z / a, y)``. While ``current_epoch() < start_epoch`` all
    temperatures are 1 (plain CE), the deferred (DRW-style) variant used by
    the reference and suggested in the paper (ERM for the first half). With
    ``start_epoch=0`` CDT is always on. Core reads the epoch from the
    attribute ``epoch`` (set it from a training loop); the toolbox losses
    read mmengine's ``MessageHub`` (``'epoch'``; it stays 0 under an
    iteration-based loop, so use ``start_epoch=0`` there).

    The temperatures are the non-persistent buffer ``temperatures`` (C,),
    derived from the counts at construction.

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
            detection, or None with ``stats_file``/``train_ann_file``.
        gamma: ``>= 0`` (0 = plain CE).
        start_epoch: first epoch (0-based) with temperatures on.
        reduction: ``'mean'`` (default: over the non-ignored elements,
            ``avg_non_ignore=True``, 0 if all are ignored), ``'sum'``,
            ``'none'`` or ``'weighted_mean'``.
        other arguments: see
            :class:`lt_mm.core.reduction.LongTailCrossEntropy`.
    """

    def __init__(self,
                 counts: Optional[CountsLike],
                 gamma: float,
                 *,
                 start_epoch: int = 0,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 unit: str = 'images',
                 background: bool = False,
                 reduction: str = 'mean',
                 ignore_index: Optional[int] = None,
                 avg_non_ignore: bool = True,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce') -> None:
        gamma = check_range('gamma', gamma, 0.0)
        start_epoch = int(check_range('start_epoch', start_epoch, 0))
        super().__init__(
            counts,
            stats_file=stats_file,
            train_ann_file=train_ann_file,
            num_classes=num_classes,
            unit=unit,
            background=background,
            reduction=reduction,
            ignore_index=ignore_index,
            avg_non_ignore=avg_non_ignore,
            loss_weight=loss_weight,
            loss_name=loss_name)
        self.gamma = gamma
        self.start_epoch = start_epoch
        with torch.device('cpu'):
            temps = cdt_temperatures(self.counts, gamma)
        self.register_buffer('temperatures', temps, persistent=False)

    @property
    def active(self) -> bool:
        """Whether the temperatures are applied at the current epoch."""
        return self.current_epoch() >= self.start_epoch

    def current_temperatures(self) -> Tensor:
        """Temperatures in use now (ones before ``start_epoch``), (C,)."""
        if self.active:
            return self.temperatures
        return torch.ones_like(self.temperatures)

    def scaled_logits(self, logits: Tensor) -> Tensor:
        """``z / a`` (CDT Eq. 3), background column untouched."""
        return cdt_logits(logits, self.current_temperatures(), self.background)

    def extra_repr(self) -> str:
        return (f'gamma={self.gamma}, start_epoch={self.start_epoch}, ' +
                super().extra_repr())


def _check_counts(logits: Tensor, counts: CountsLike,
                  background: bool) -> Tensor:
    """Validated float64 counts for the calibrated columns of logits."""
    if logits.dim() < 2:
        raise ValueError(f'logits must be (N, C) or (N, C, H, W), got '
                         f'shape {tuple(logits.shape)}.')
    num_cal = logits.shape[1] - (1 if background else 0)
    return as_counts(counts, num_classes=num_cal, allow_zero=False)


def _apply_fg(logits: Tensor, new_fg: Tensor, background: bool) -> Tensor:
    if background:
        return torch.cat([new_fg, logits[:, -1:]], dim=1)
    return new_fg


def nc_tau_adjust(logits: Tensor,
                  counts: CountsLike,
                  tau: float,
                  background: bool = False,
                  exclude_background: Optional[bool] = None) -> Tensor:
    """Post-hoc class-size normalisation (CDT Eq. 5): ``z_c / N_c ** tau``.

    Divides the *decision values* by ``N_c ** tau``. Unlike
    :func:`logit_adjust` this is not shift-invariant: on negative logits it
    favours the major classes.

    Args:
        logits: (N, C') or (N, C', H, W).
        counts: (C,) training counts, ``C = C' - 1`` when
            ``background`` (foreground only).
        tau: ``>= 0``.
        background: the last column is the background: left untouched.
        exclude_background: deprecated name of ``background``.

    Returns:
        Tensor: same shape as ``logits``; float32 for float16 / bfloat16
        logits (the factor underflows there).
    """
    background = renamed_arg(background, exclude_background, 'background',
                             'exclude_background', 'nc_tau_adjust')
    tau = check_range('tau', tau, 0.0)
    n = _check_counts(logits, counts, background)
    # N_c ** -tau in float64, the product in at least float32: in float16
    # the factor and the adjusted logits underflow for large counts (pixel
    # counts ~1e9), so half-precision logits come back as float32
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logits = logits.to(dtype)
    fg = logits[:, :-1] if background else logits
    inv = n.pow(-tau).to(device=fg.device, dtype=dtype)
    out = fg * class_view(inv, fg.dim())
    return _apply_fg(logits, out, background)


def logit_adjust(logits: Tensor,
                 counts: CountsLike,
                 tau: float,
                 background: bool = False,
                 exclude_background: Optional[bool] = None) -> Tensor:
    """Post-hoc logit adjustment: ``z_c - tau * log N_c``.

    Equivalent to dividing the softmax *probabilities* by ``N_c ** tau``
    (shift-invariant, so counts or frequencies give the same argmax). Listed
    for comparison with CDT Eq. 5 (:func:`nc_tau_adjust`).

    Args:
        logits: (N, C') or (N, C', H, W).
        counts: (C,) training counts (foreground only when
            ``background``).
        tau: ``>= 0``.
        background: the last column is the background: left untouched.
        exclude_background: deprecated name of ``background``.

    Returns:
        Tensor: same shape as ``logits``.
    """
    background = renamed_arg(background, exclude_background, 'background',
                             'exclude_background', 'logit_adjust')
    tau = check_range('tau', tau, 0.0)
    n = _check_counts(logits, counts, background)
    fg = logits[:, :-1] if background else logits
    shift = (tau * n.log()).to(device=fg.device, dtype=fg.dtype)
    out = fg - class_view(shift, fg.dim())
    return _apply_fg(logits, out, background)


#: the post-hoc prior rules of :func:`posthoc_adjust`
POSTHOC_RULES = ('nc_tau', 'logit_adjust')
#: keys of a ``posthoc=dict(...)`` option (every toolbox); the count
#: sources are resolved by the adapter's count reader
POSTHOC_KEYS = ('type', 'tau', 'counts', 'stats_file', 'train_ann_file')


def posthoc_adjust(logits: Tensor,
                   counts: CountsLike,
                   rule: str,
                   tau: float,
                   background: bool = False) -> Tensor:
    """Post-hoc prior adjustment by name: CDT Eq. 5 or logit adjustment.

    Args:
        logits: (N, C') or (N, C', H, W).
        counts: (C,) training counts (foreground only when
            ``background``).
        rule: ``'nc_tau'`` (:func:`nc_tau_adjust`, ``z_c / N_c ** tau``) or
            ``'logit_adjust'`` (:func:`logit_adjust`,
            ``z_c - tau * log N_c``).
        tau: ``>= 0``.
        background: the last column is the background: left untouched.

    Returns:
        Tensor: same shape as ``logits``.
    """
    rule = check_choice('posthoc type', rule, POSTHOC_RULES)
    fn = nc_tau_adjust if rule == 'nc_tau' else logit_adjust
    return fn(logits, counts, tau, background=background)


def parse_posthoc(posthoc: Optional[dict], what: str) -> Optional[dict]:
    """Validate a ``posthoc=dict(type, tau, <count source>)`` option.

    The one format of every toolbox (cls head, seg decode head, det box
    classifier)::

        posthoc=dict(type='nc_tau' | 'logit_adjust', tau=1.0,
                     counts=[...] | stats_file=PATH | train_ann_file=PATH)

    Args:
        posthoc: the option, or None (no adjustment).
        what: the component, named in the errors.

    Returns:
        dict or None: ``dict(type, tau, sources)`` with ``sources`` the
        count-source keys given (``counts``, ``stats_file``,
        ``train_ann_file``) for the adapter's count reader.
    """
    if posthoc is None:
        return None
    if not isinstance(posthoc, dict) or 'type' not in posthoc:
        raise ValueError(
            f'{what}: posthoc={posthoc!r} must be a dict like '
            "dict(type='nc_tau'|'logit_adjust', tau=1.0, "
            'stats_file=PATH | train_ann_file=PATH | counts=[...]).')
    unknown = sorted(set(posthoc) - set(POSTHOC_KEYS))
    if unknown:
        raise ValueError(f'{what}: posthoc has unknown keys {unknown}; '
                         f'allowed: {list(POSTHOC_KEYS)}.')
    rule = check_choice('posthoc type', posthoc['type'], POSTHOC_RULES)
    tau = check_range('posthoc tau', posthoc.get('tau', 1.0), 0.0)
    sources = {
        k: posthoc[k]
        for k in ('counts', 'stats_file', 'train_ann_file') if k in posthoc
    }
    return dict(type=rule, tau=tau, sources=sources)


class PosthocAdjust(nn.Module):
    """A configured post-hoc prior rule (CDT Eq. 5 or logit adjustment).

    The one implementation behind every toolbox's ``posthoc=dict(...)``
    option (cls head, seg decode head, det box classifier). The training
    counts are the persistent buffer ``counts``, so the inference
    statistics travel in the checkpoint; a checkpoint without them (a
    stage-1 model evaluated post hoc) keeps the configured counts.

    Args:
        counts: (C,) training counts (foreground only when
            ``background``).
        rule: ``'nc_tau'`` or ``'logit_adjust'``.
        tau: ``>= 0``.
        background: the logits carry a last background column, left
            untouched.

    Shapes: (N, C') or (N, C', H, W) -> same.
    """

    def __init__(self,
                 counts: CountsLike,
                 rule: str = 'logit_adjust',
                 tau: float = 1.0,
                 background: bool = False) -> None:
        super().__init__()
        self.rule = check_choice('posthoc type', rule, POSTHOC_RULES)
        self.tau = check_range('posthoc tau', tau, 0.0)
        self.background = bool(background)
        # validated on the CPU whatever the default device (e.g. 'meta')
        with torch.device('cpu'):
            counts = as_counts(counts, allow_zero=False)
        self.register_buffer('counts', counts, persistent=True)

    def forward(self,
                logits: Tensor,
                rule: Optional[str] = None,
                tau: Optional[float] = None,
                counts: Optional[CountsLike] = None) -> Tensor:
        """Adjusted logits (:func:`posthoc_adjust`); ``rule``, ``tau`` and
        ``counts`` override the configured ones (e.g. in a sweep)."""
        return posthoc_adjust(logits,
                              self.counts if counts is None else counts, rule
                              or self.rule, self.tau if tau is None else tau,
                              self.background)

    def _apply(self, fn, *args, **kwargs):
        # device moves apply to the counts, dtype casts do not: ``.half()``
        # would turn pixel counts above 65504 into inf (and bfloat16 round
        # them), in the module and in every checkpoint saved from it
        counts = self.counts
        out = super()._apply(fn, *args, **kwargs)
        if self.counts.dtype != counts.dtype:
            self._buffers['counts'] = counts.to(self.counts.device)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        # no counts in the checkpoint: keep the configured ones
        state_dict.setdefault(prefix + 'counts', self.counts.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f'rule={self.rule!r}, tau={self.tau}, '
                f'num_classes={self.counts.numel()}, '
                f'background={self.background}')


def build_posthoc(posthoc: Optional[dict],
                  read_counts: Callable[..., CountsLike],
                  what: str,
                  background: bool = False) -> Optional[PosthocAdjust]:
    """Build the :class:`PosthocAdjust` of a ``posthoc=dict(...)`` option.

    Args:
        posthoc: the option (see :func:`parse_posthoc`) or None.
        read_counts: the adapter's count reader, called with the count
            sources given (``counts=``, ``stats_file=``,
            ``train_ann_file=``); it returns the (C,) counts.
        what: the component, named in the errors.
        background: the logits carry a last background column.

    Returns:
        PosthocAdjust or None (no option).
    """
    parsed = parse_posthoc(posthoc, what)
    if parsed is None:
        return None
    try:
        counts = read_counts(**parsed['sources'])
    except ValueError as err:
        raise ValueError(f'{what} posthoc={parsed["type"]!r}: {err}') from None
    return PosthocAdjust(counts, parsed['type'], parsed['tau'], background)


def apply_posthoc(module: Optional[PosthocAdjust],
                  logits: Tensor,
                  rule: Optional[str] = None,
                  tau: Optional[float] = None,
                  counts: Optional[CountsLike] = None,
                  background: bool = False) -> Tensor:
    """The configured post-hoc rule of a component, or an explicit one.

    What every adapter's ``apply_posthoc`` does (e.g. in a sweep): the
    configured :class:`PosthocAdjust` with optional overrides; without a
    configuration, ``rule`` with the given ``counts`` (``tau`` default 1);
    no rule at all returns ``logits`` unchanged.

    Args:
        module: the component's ``posthoc`` module, or None.
        logits: (N, C') or (N, C', H, W).
        rule, tau, counts: overrides (see :func:`posthoc_adjust`).
        background: the last column is the background (no configuration).

    Returns:
        Tensor: same shape as ``logits``.
    """
    if module is not None:
        return module(logits, rule, tau, counts)
    if rule is None:
        return logits
    if counts is None:
        raise ValueError(
            f'posthoc {rule!r} needs class counts: configure '
            "posthoc=dict(type=..., tau=..., stats_file=...|counts=[...]) "
            'or pass counts.')
    return posthoc_adjust(logits, counts, rule, 1.0 if tau is None else tau,
                          background)


class PosthocMixin:
    """``apply_posthoc`` of a classifier with a ``posthoc`` module.

    The one post-hoc entry point of every toolbox's component (the
    classification head, the decode head, the box classifier): the
    configured rule (CDT Eq. 5 ``z / N ** tau`` or logit adjustment
    ``z - tau * log N``, :class:`PosthocAdjust` in ``self.posthoc``, None
    without a configuration) or an explicit one, through
    :func:`apply_posthoc`. ``posthoc_background``: the last logit column is
    the background (detection), left unchanged. Put the mixin before the
    ``nn.Module`` base.
    """

    posthoc_background = False

    def apply_posthoc(self,
                      logits: Tensor,
                      kind: Optional[str] = None,
                      tau: Optional[float] = None,
                      counts: Optional[Tensor] = None) -> Tensor:
        """The post-hoc rule on ``logits``.

        Args:
            logits: (N, C), (N, C, H, W) or, with the background, (N, C + 1).
            kind: ``'nc_tau'`` or ``'logit_adjust'``; default the
                configured one (none configured: ``logits`` unchanged).
            tau: default the configured one (1.0 without a configuration).
            counts: (C,) counts; default the ``posthoc.counts`` buffer.

        Returns:
            Tensor: the shape of ``logits``.
        """
        return apply_posthoc(self.posthoc, logits, kind, tau, counts,
                             self.posthoc_background)
