"""Reductions shared by the long-tail cross-entropy losses (GRW, CDT).

One place for what the toolboxes pass around a classification loss: the
ignore label, per-element (sample/pixel/RoI) weights ``v_i``, class weights
``w_i = w[y_i]``, ``avg_factor`` and the reduction. With ``CE_i`` the
softmax cross-entropy of a non-ignored element ``i`` and ``M`` the number
of elements (ignored ones included)::

    'weighted_mean'  sum_i v_i w_i CE_i / sum_i v_i w_i
                     (PyTorch ``F.cross_entropy(weight=w)`` 'mean'; the
                     DisAlign cls/det reference; ``avg_factor`` is ignored:
                     the toolboxes pass the sample count, which would undo
                     the weighting)
    'mean'           sum_i v_i w_i CE_i / D,  D = avg_factor if given,
                     else the non-ignored count (avg_non_ignore=True),
                     else M (mmseg / mmdet semantics)
    'sum'            sum_i v_i w_i CE_i
    'none'           v_i w_i CE_i per element, 0 at ignored ones

Ignored elements are removed *before* ``w`` is gathered, so an ignore label
such as 255 never indexes the class weights. ``ignore_index=None`` ignores
nothing. A reduced loss over no element is 0 (not NaN).

:class:`LongTailCrossEntropy` is the ``nn.Module`` base of
:class:`~lt_mm.core.grw.GRWCrossEntropy` and
:class:`~lt_mm.core.cdt.CDTCrossEntropy`: it resolves the class counts at
construction (``counts | stats_file``; toolbox adapters override
:meth:`LongTailCrossEntropy.resolve_counts` to add their readers) and takes
the call of every OpenMMLab toolbox (mmpretrain, mmseg, mmdet):
``loss(cls_score, label, weight, avg_factor, reduction_override,
ignore_index)``.

Toolbox losses are generated, not written: a core loss declares its
registry name and its per-task defaults with :func:`toolbox_loss`, and each
adapter (``lt_mm/{cls,seg,det}/losses.py``) turns every declared loss into
its toolbox class with :func:`toolbox_losses` (toolbox defaults, count
reader, epoch source) and registers it. A new loss is one core class; no
adapter changes.
"""
from __future__ import annotations

import inspect
import types
import warnings
from typing import Callable, Dict, List, Optional, Tuple, Type

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .checks import CountsLike, check_choice, check_range, check_size

REDUCTIONS = ('weighted_mean', 'mean', 'sum', 'none')


def _flat_inputs(logits: Tensor, labels: Tensor):
    if logits.dim() < 2:
        raise ValueError(f'logits must be (N, C) or (N, C, H, W), got '
                         f'shape {tuple(logits.shape)}.')
    expected = logits.shape[:1] + logits.shape[2:]
    if labels.shape != expected:
        raise ValueError(
            f'labels have shape {tuple(labels.shape)} but logits have '
            f'shape {tuple(logits.shape)}: expected hard labels of shape '
            f'{tuple(expected)} (soft targets, e.g. from Mixup or CutMix, '
            'are not supported).')
    num_cols = logits.shape[1]
    flat_logits = logits.movedim(1, -1).reshape(-1, num_cols)
    return flat_logits, labels.reshape(-1).long()


def reduced_cross_entropy(logits: Tensor,
                          labels: Tensor,
                          class_weight: Optional[Tensor] = None,
                          reduction: str = 'mean',
                          ignore_index: Optional[int] = None,
                          weight: Optional[Tensor] = None,
                          avg_factor: Optional[float] = None,
                          avg_non_ignore: bool = False) -> Tensor:
    """Softmax cross-entropy with class weights, element weights, reduction.

    Implements the reductions of the module docstring (the GRW loss,
    DisAlign Eq. 9-11, is this with ``class_weight`` = Eq. 11; the CDT loss,
    CDT Eq. 3, is this on the temperature-scaled logits).

    Args:
        logits: (N, C) or per-pixel (N, C, H, W).
        labels: (N,) or (N, H, W) integer labels in ``[0, C)`` or
            ``ignore_index``.
        class_weight: optional (C,) weights ``w``; None is all ones.
        reduction: ``'weighted_mean'``, ``'mean'``, ``'sum'``, ``'none'``.
        ignore_index: label to ignore; None ignores nothing.
        weight: optional element weights ``v``, shape of ``labels`` (or
            broadcastable after flattening: N * H * W elements).
        avg_factor: denominator of ``'mean'`` (ignored otherwise).
        avg_non_ignore: ``'mean'`` without ``avg_factor`` divides by the
            non-ignored count instead of M.

    Returns:
        Tensor: float32 scalar, or ``labels``-shaped for ``'none'``.
    """
    check_choice('reduction', reduction, REDUCTIONS)
    flat_logits, flat_labels = _flat_inputs(logits, labels)
    num_cols = flat_logits.shape[1]
    if class_weight is not None and (class_weight.dim() != 1
                                     or class_weight.numel() != num_cols):
        raise ValueError(
            f'class_weight has shape {tuple(class_weight.shape)} but the '
            f'logits have {num_cols} classes. For detection build the '
            'weights with background=True so the background column '
            '(last) gets weight 1.')
    if ignore_index is None:
        valid = torch.ones_like(flat_labels, dtype=torch.bool)
    else:
        valid = flat_labels != ignore_index
    # Remove ignored elements first: never index class_weight with them.
    vlabels = flat_labels[valid]
    if vlabels.numel() and (vlabels.min() < 0 or vlabels.max() >= num_cols):
        # F.cross_entropy would silently ignore -100 (its own default
        # ignore label) while class_weight[-100] entered the denominator
        bad = vlabels[(vlabels < 0) | (vlabels >= num_cols)].unique()
        raise ValueError(
            f'labels {bad[:10].tolist()} are outside [0, {num_cols}) and '
            f'not the ignore label (ignore_index={ignore_index}); the '
            f'logits have {num_cols} classes. Set the loss\'s '
            'ignore_index to the label the dataset uses for ignored '
            'elements, or check num_classes against the dataset.')
    ce = F.cross_entropy(flat_logits[valid].float(), vlabels, reduction='none')
    w = ce.new_ones(ce.shape) if class_weight is None else \
        class_weight.to(device=ce.device, dtype=ce.dtype)[vlabels]
    if weight is not None:
        w = w * weight.to(device=ce.device, dtype=ce.dtype).reshape(-1)[valid]
    wce = w * ce
    if reduction == 'none':
        out = ce.new_zeros(flat_labels.shape).masked_scatter(valid, wce)
        return out.reshape(labels.shape)
    total = wce.sum()
    if reduction == 'sum':
        return total
    if reduction == 'weighted_mean':
        denom = w.sum()
    elif avg_factor is not None:
        denom = torch.as_tensor(float(avg_factor), device=total.device)
    elif avg_non_ignore:
        denom = valid.sum().to(total.dtype).clamp_min(1.0)
    else:
        denom = torch.as_tensor(float(max(flat_labels.numel(), 1)))
    # tiny clamp: exact whenever the denominator is positive, 0 / tiny = 0
    return total / denom.to(total).clamp_min(torch.finfo(total.dtype).tiny)


def with_defaults(init: Callable, **defaults) -> Callable:
    """A copy of ``init`` with other default values (same signature).

    Lets a toolbox adapter give a core loss its toolbox defaults (e.g.
    ``rho=0.3, reduction='mean', ignore_index=255`` for mmseg) without
    restating the signature: ``__init__ = with_defaults(Core.__init__,
    rho=0.3)``. Positional parameters named here (and those after them)
    get defaults; keyword-only ones are updated; other names, when
    ``init`` takes ``**kwargs``, are passed in every call unless given.
    """
    code = init.__code__
    pos = list(code.co_varnames[:code.co_argcount])
    given = init.__defaults__ or ()
    old = dict(zip(pos[len(pos) - len(given):], given))
    kwdefaults = dict(init.__kwdefaults__ or {})
    extra = {}  # for a ``**kwargs`` signature: merged into each call
    for name, value in defaults.items():
        if name in pos:
            old[name] = value
        elif name in code.co_varnames[:code.co_argcount +
                                      code.co_kwonlyargcount]:
            kwdefaults[name] = value
        elif code.co_flags & inspect.CO_VARKEYWORDS:
            extra[name] = value
        else:
            raise ValueError(f'with_defaults: {init.__qualname__} has no '
                             f'argument {name!r}.')
    first = min((pos.index(n) for n in old), default=len(pos))
    missing = [n for n in pos[first:] if n not in old]
    if missing:
        raise ValueError(f'with_defaults: give defaults for {missing} too '
                         '(they follow a parameter with a default).')
    fn = types.FunctionType(code, init.__globals__, init.__name__,
                            tuple(old[n] for n in pos[first:]),
                            init.__closure__)
    fn.__kwdefaults__ = kwdefaults
    fn.__doc__, fn.__qualname__ = init.__doc__, init.__qualname__
    fn.__annotations__ = dict(init.__annotations__)
    if not extra:
        return fn

    def merged(self, *args, **kwargs):
        return fn(self, *args, **dict(extra, **kwargs))

    merged.__signature__ = inspect.signature(fn)
    merged.__doc__, merged.__qualname__ = fn.__doc__, fn.__qualname__
    return merged


class LongTailCrossEntropy(nn.Module):
    """Base of the GRW and CDT losses: counts, validation, reduction.

    Subclasses implement :meth:`scaled_logits` (identity for GRW,
    ``z / a`` for CDT) and may set the buffer ``class_weight``.

    Args:
        counts: per-class training counts (C,) -- foreground only when
            ``background`` -- or None with ``stats_file``/``train_ann_file``.
        stats_file: a ``lt_mm.class_stats/v1`` file (or ``builtin:...``).
        train_ann_file: a training annotation file; read by the toolbox
            adapters only (core cannot parse toolbox formats).
        num_classes: optional C, checked against the counts when given.
        unit: unit of the counts (``'images'``, ``'instances'``,
            ``'pixels'``); checked against ``stats_file``.
        background: the logits carry a last background column (mmdet):
            ``C + 1`` columns, background untouched (weight/temperature 1).
        reduction: see :mod:`lt_mm.core.reduction`.
        ignore_index: label to ignore; None ignores nothing.
        avg_non_ignore: ``'mean'`` over the non-ignored elements.
        loss_weight: multiplier of the returned loss.
        loss_name: key of the loss in mmseg's log dict (must start with
            ``loss_``); unused by mmpretrain and mmdet.
    """

    #: count-source keys of the config dict; with none of them given,
    #: :func:`lt_mm.engine.counts.fill_class_counts` fills ``counts`` from
    #: the config's training dataset (the declaration it looks for)
    class_count_sources = ('counts', 'stats_file', 'train_ann_file')

    def __init__(self,
                 counts: Optional[CountsLike],
                 *,
                 stats_file: Optional[str] = None,
                 train_ann_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 unit: str = 'images',
                 background: bool = False,
                 reduction: str = 'mean',
                 ignore_index: Optional[int] = None,
                 avg_non_ignore: bool = False,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce') -> None:
        super().__init__()
        self.reduction = check_choice('reduction', reduction, REDUCTIONS)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.avg_non_ignore = bool(avg_non_ignore)
        self.loss_weight = check_range('loss_weight', loss_weight)
        self.background = bool(background)
        if not str(loss_name).startswith('loss_'):
            raise ValueError(f"loss_name={loss_name!r} must start with "
                             "'loss_' (mmseg logs only such keys).")
        self._loss_name = loss_name
        self.epoch = 0
        if num_classes is not None:
            num_classes = check_size('num_classes', num_classes)
        # class statistics on the CPU, also when the model is built under
        # another default device (e.g. 'meta')
        with torch.device('cpu'):
            self.counts: List[float] = list(
                self.resolve_counts(counts, stats_file, train_ann_file,
                                    num_classes, unit,
                                    type(self).__name__))

    def resolve_counts(self, counts, stats_file: Optional[str],
                       train_ann_file: Optional[str],
                       num_classes: Optional[int], unit: str,
                       what: str) -> List[float]:
        """The C training counts from exactly one source (build time).

        Core reads ``counts`` and ``stats_file``
        (:func:`lt_mm.core.stats.resolve_counts`); toolbox adapters
        override this to read their annotation formats.
        """
        from .stats import resolve_counts
        if train_ann_file is not None:
            raise ValueError(
                f'{what}: train_ann_file={train_ann_file!r} needs a toolbox '
                'reader; use the loss registered by lt_mm.cls/seg/det or '
                'write the counts with tools/class_stats.py (stats_file=).')
        return resolve_counts(counts, stats_file, num_classes, unit)

    def current_epoch(self) -> int:
        """The training epoch (0-based) for losses that change with it.

        Core reads the attribute ``epoch`` (set it from a training loop);
        the toolbox losses read mmengine's ``MessageHub`` (``'epoch'``).
        """
        return self.epoch

    @property
    def num_classes(self) -> int:
        """C, the number of counted classes (foreground for detection)."""
        return len(self.counts)

    @property
    def loss_name(self) -> str:
        """Name of the loss in mmseg's log dict."""
        return self._loss_name

    def scaled_logits(self, logits: Tensor) -> Tensor:
        """The logits the cross-entropy sees (identity here)."""
        return logits

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = None,
                **kwargs) -> Tensor:
        """Loss of (N, C') or (N, C', H, W) scores and (N,) / (N, H, W)
        labels, ``C' = C (+ 1 with background)``.

        Args:
            cls_score: logits.
            label: hard labels in ``[0, C')`` or ``ignore_index``.
            weight: element weights (mmdet label weights, mmseg pixel
                weights, mmpretrain sample weights), shape of ``label``.
            avg_factor: denominator of ``'mean'``.
            reduction_override: overrides ``reduction`` for this call.
            ignore_index: overrides the constructor's ignore label.

        Returns:
            Tensor: the loss times ``loss_weight``.
        """
        if 'reduction' in kwargs:  # the core modules' old keyword
            warnings.warn(
                'reduction= in the call is deprecated; use '
                'reduction_override=.', DeprecationWarning)
            reduction_override = kwargs.pop('reduction')
        reduction = check_choice('reduction', reduction_override
                                 or self.reduction, REDUCTIONS)
        if cls_score.dim() >= 2 and cls_score.shape[1] != self.num_columns:
            raise ValueError(
                f'{type(self).__name__}: cls_score has shape '
                f'{tuple(cls_score.shape)} but the loss was built for '
                f'{self.num_columns} columns (num_classes={self.num_classes}'
                f', background={self.background}). For detection build it '
                'with background=True (the background is the last column).')
        loss = reduced_cross_entropy(
            self.scaled_logits(cls_score),
            label,
            getattr(self, 'class_weight', None),
            reduction=reduction,
            ignore_index=self.ignore_index
            if ignore_index is None else ignore_index,
            weight=weight,
            avg_factor=avg_factor,
            avg_non_ignore=self.avg_non_ignore)
        return loss * self.loss_weight

    @property
    def num_columns(self) -> int:
        """Logit columns expected: C, or C + 1 with ``background``."""
        return self.num_classes + int(self.background)

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, '
                f'background={self.background}, '
                f'reduction={self.reduction!r}, '
                f'ignore_index={self.ignore_index}, '
                f'avg_non_ignore={self.avg_non_ignore}')


_Entry = Tuple[Type[LongTailCrossEntropy], Dict[str, dict]]
#: name -> (core class, {task: defaults}); filled by :func:`toolbox_loss`
TOOLBOX_LOSSES: Dict[str, _Entry] = {}


def toolbox_loss(name: str, **task_defaults: dict) -> Callable:
    """Class decorator: offer a core loss to the toolbox adapters.

    Args:
        name: the name every toolbox registers it under (e.g. ``'GRWLoss'``).
        task_defaults: per task (``cls``, ``seg``, ``det``) the defaults
            that differ there, e.g. the paper's ``rho`` per benchmark.
    """

    def decorate(cls: Type[LongTailCrossEntropy]):
        TOOLBOX_LOSSES[name] = (cls, task_defaults)
        return cls

    return decorate


def toolbox_losses(task: str,
                   module: str,
                   resolve_counts: Optional[Callable] = None,
                   current_epoch: Optional[Callable] = None,
                   renamed: Optional[Dict[str, str]] = None,
                   **defaults) -> Dict[str, type]:
    """The toolbox classes of every :func:`toolbox_loss` (one shared wrapper).

    Each is a subclass of its core loss with the same signature
    (:func:`with_defaults`: ``counts=None``, then ``defaults`` and the
    loss's ``task`` defaults), the toolbox's count reader and epoch source.
    The adapter registers them; nothing else differs between toolboxes.

    Args:
        task: ``'cls'``, ``'seg'`` or ``'det'`` (selects the task defaults).
        module: ``__name__`` of the adapter module (for repr and pickling).
        resolve_counts: replaces :meth:`LongTailCrossEntropy.resolve_counts`.
        current_epoch: replaces :meth:`LongTailCrossEntropy.current_epoch`.
        renamed: deprecated keyword -> new keyword (warns when used).
        defaults: defaults for every loss of this toolbox.

    Returns:
        dict: registry name -> class.
    """
    out = {}
    for name, (core, task_defaults) in TOOLBOX_LOSSES.items():
        init = with_defaults(
            core.__init__,
            counts=None,
            **dict(defaults, **task_defaults.get(task, {})))
        attrs = dict(
            __module__=module,
            __qualname__=name,
            __doc__=f'{core.__name__} for {module}; arguments and defaults: '
            f'``inspect.signature``, meaning: {core.__module__}.'
            f'{core.__name__}.',
            __init__=_stock_keywords(_renaming(init, renamed or {})))
        if resolve_counts is not None:
            attrs['resolve_counts'] = resolve_counts
        if current_epoch is not None:
            attrs['current_epoch'] = current_epoch
        out[name] = type(name, (core, ), attrs)
    return out


def _stock_keywords(init: Callable) -> Callable:
    """``init`` that also takes ``use_sigmoid=False``, the one keyword of
    the toolboxes' stock ``CrossEntropyLoss`` configs (mmseg's FCN, mmdet's
    box heads) that these softmax losses lack, so that a config changing
    only ``type`` of a stock loss (mmengine merges the rest) builds;
    ``use_sigmoid=True`` is refused, naming the fix."""

    def __init__(self, *args, use_sigmoid: bool = False, **kwargs):
        if use_sigmoid:
            raise ValueError(
                f'{type(self).__name__}: use_sigmoid={use_sigmoid!r}; this '
                'is a softmax cross-entropy. Set use_sigmoid=False (or '
                "_delete_=True in the loss dict, so that the stock loss's "
                'keys are not merged into it).')
        init(self, *args, **kwargs)

    sig = inspect.signature(init)
    params = list(sig.parameters.values())
    extra = inspect.Parameter(
        'use_sigmoid', inspect.Parameter.KEYWORD_ONLY, default=False)
    last = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    __init__.__signature__ = sig.replace(parameters=params + [extra] + last)
    __init__.__doc__ = init.__doc__
    return __init__


def _renaming(init: Callable, renamed: Dict[str, str]) -> Callable:
    """``init`` that accepts the old keywords of ``renamed`` with a
    ``DeprecationWarning``."""
    if not renamed:
        return init

    def __init__(self, *args, **kwargs):
        for old, new in renamed.items():
            if old in kwargs:
                warnings.warn(
                    f'{type(self).__name__}: {old}= is deprecated,'
                    f' use {new}=.', DeprecationWarning)
                kwargs.setdefault(new, kwargs.pop(old))
        init(self, *args, **kwargs)

    __init__.__signature__ = inspect.signature(init)
    __init__.__doc__ = init.__doc__
    return __init__
