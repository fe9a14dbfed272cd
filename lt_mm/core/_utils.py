"""Small tensor helpers shared by the classifiers of :mod:`lt_mm.core`.

Private to ``lt_mm.core`` (framework-free, plain torch); the per-class
input type ``CountsLike`` lives in :mod:`lt_mm.core.checks` beside
:func:`~lt_mm.core.checks.as_counts`.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

#: Clamp of L2 norms before a division (as ``F.normalize``'s ``eps``): a
#: zero-norm feature or weight row gives zeros instead of NaN.
EPS = 1e-12


def class_view(vec: Tensor, ndim: int) -> Tensor:
    """Reshape a per-class vector (C,) to broadcast on dim 1 of an
    ``ndim``-dimensional tensor: (1, C) or (1, C, 1, 1)."""
    return vec.reshape((1, -1) + (1, ) * (ndim - 2))


def weight_2d(weight: Tensor, dim: Optional[int] = None) -> Tensor:
    """Classifier weight (C, D) or 1x1-conv weight (C, D, 1, 1) -> (C, D).

    Args:
        weight: (C, D) or (C, D, 1, 1).
        dim: the feature dimension D the weight must have (not checked when
            ``None``).

    Returns:
        Tensor: (C, D), a view of ``weight``.
    """
    if weight.dim() == 4 and weight.shape[2:] == (1, 1):
        weight = weight.flatten(1)
    if weight.dim() != 2 or (dim is not None and weight.shape[1] != dim):
        d = 'D' if dim is None else dim
        for_dim = '' if dim is None else f' for features of dimension {dim}'
        raise ValueError(
            f'weight has shape {tuple(weight.shape)}; expected (C, {d}) or a '
            f'1x1 convolution weight (C, {d}, 1, 1){for_dim}.')
    return weight
