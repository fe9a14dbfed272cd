"""Input validation shared by every long-tail method in :mod:`lt_mm.core`.

Silent wrong numbers are the worst failure in long-tail recognition, so each
check raises a ``ValueError`` that names the offending value and the fix.
These helpers are framework-free (plain torch) and are meant to be called
where a module or a config is *built*, never inside a forward pass.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, Union

import torch

CountsLike = Union[Sequence[float], torch.Tensor]


def as_counts(counts: CountsLike,
              num_classes: Optional[int] = None,
              name: str = 'counts',
              allow_zero: bool = False) -> torch.Tensor:
    """Validate per-class counts and return them as a float64 tensor.

    Args:
        counts: per-class counts (or frequencies), shape (C,).
        num_classes: expected C. A mismatch usually means a statistics file
            of another dataset (or one that includes the background class).
        name: how the value is called in the error message.
        allow_zero: whether classes with a zero count are acceptable.

    Returns:
        torch.Tensor: shape (C,), dtype float64.
    """
    if counts is None:
        raise ValueError(
            f'{name} is None: this method needs per-class training counts. '
            'Pass them explicitly or give a class-statistics JSON file '
            '(see tools/class_stats.py).')
    t = torch.as_tensor(counts, dtype=torch.float64).flatten().clone()
    if t.numel() == 0:
        raise ValueError(f'{name} is empty; expected one count per class.')
    if num_classes is not None and t.numel() != num_classes:
        raise ValueError(
            f'{name} has {t.numel()} entries but the model has '
            f'num_classes={num_classes}. Use the statistics of the dataset '
            'the model is trained on (for detection: foreground classes '
            'only, without the background).')
    if not torch.isfinite(t).all():
        raise ValueError(f'{name} contains NaN or inf: {t.tolist()}')
    if (t < 0).any():
        bad = torch.nonzero(t < 0).flatten().tolist()
        raise ValueError(f'{name} has negative entries at classes {bad}.')
    if not allow_zero and (t == 0).any():
        bad = torch.nonzero(t == 0).flatten().tolist()
        raise ValueError(
            f'{name} has zero count for classes {bad}: the method is '
            'undefined for a class never seen in training. Remove the class '
            'from the vocabulary or give it a count of at least 1.')
    return t


def check_range(name: str,
                value: float,
                low: float = -math.inf,
                high: float = math.inf,
                low_inclusive: bool = True,
                high_inclusive: bool = True,
                hint: str = '') -> float:
    """Raise a clear ``ValueError`` unless ``low <= value <= high``.

    ``value`` must be a real number: ``True``/``False`` are refused (Python
    would read them as 1 and 0, so ``alpha=True`` would silently mean
    ``alpha=1.0``), as are strings and NaN.
    """
    if isinstance(value, bool) or (isinstance(value, torch.Tensor)
                                   and value.dtype == torch.bool):
        raise ValueError(
            f'{name}={value!r} is a bool; expected a number (write 1.0 or '
            '0.0, not True/False).')
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{name}={value!r} is not a number.') from None
    ok_low = v >= low if low_inclusive else v > low
    ok_high = v <= high if high_inclusive else v < high
    if not (ok_low and ok_high) or math.isnan(v):
        lo = '[' if low_inclusive else '('
        hi = ']' if high_inclusive else ')'
        raise ValueError(f'{name}={value!r} is out of range: expected a '
                         f'value in {lo}{low}, {high}{hi}. {hint}'.rstrip())
    return v


def check_size(name: str, value: int, low: int = 1) -> int:
    """A size (number of classes, channels, heads): an integer ``>= low``.

    :func:`check_range` plus integrality: ``in_channels=16.9`` would be
    truncated to 16 by ``int()`` without a word.
    """
    v = check_range(name, value, low)
    if not v.is_integer():
        raise ValueError(f'{name}={value!r} is not an integer; expected a '
                         f'whole number >= {low}.')
    return int(v)


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Raise a clear ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f'{name}={value!r} is not supported; choose one of '
                         f'{list(choices)}.')
    return value


def pop_args(kwargs: dict,
             names: Sequence[str],
             defaults: Optional[dict] = None) -> dict:
    """Move the options ``names`` of a core module out of ``kwargs``.

    Adapters whose constructor also forwards ``**kwargs`` to an OpenMMLab
    base class (e.g. mmpretrain's ``ClsHead``) use it to pass a core
    module's options through without repeating its argument list.

    Args:
        kwargs: the adapter's keyword arguments (modified in place).
        names: the core module's option names.
        defaults: the adapter's own defaults for some of them.

    Returns:
        dict: ``defaults`` updated with the options found in ``kwargs``.
    """
    out = dict(defaults or {})
    for name in names:
        if name in kwargs:
            out[name] = kwargs.pop(name)
    return out


def renamed_arg(value,
                old_value,
                name: str,
                old_name: str,
                where: str,
                default=False):
    """Resolve an argument renamed for one vocabulary (docs/vocabulary.md).

    The old keyword still works for one release and warns with
    ``DeprecationWarning``; giving both is an error.

    Args:
        value: the value passed under the new ``name``.
        old_value: the value passed under ``old_name`` (None = not given).
        name, old_name: the new and the old keyword.
        where: the function or class, named in the messages.
        default: the new argument's default (``value`` equal to it counts
            as not given).

    Returns:
        the value to use.
    """
    if old_value is None:
        return value
    if value != default and value != old_value:
        raise ValueError(f'{where}: got {name}={value!r} and the old name '
                         f'{old_name}={old_value!r}; use {name} only.')
    warnings.warn(
        f'{where}: {old_name} is renamed {name} (one name for the idea '
        'in every toolbox, docs/vocabulary.md).',
        DeprecationWarning,
        stacklevel=3)
    return old_value
