"""Small tensor helpers shared by the classifiers of :mod:`lt_mm.core`.

Framework-free (plain torch); :class:`OptionalBuffersMixin` is also used
by the adapters' classifiers. The per-class input type ``CountsLike`` lives
in :mod:`lt_mm.core.checks` beside :func:`~lt_mm.core.checks.as_counts`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

#: Clamp of L2 norms before a division (as ``F.normalize``'s ``eps``): a
#: zero-norm feature or weight row gives zeros instead of NaN. Use
#: :func:`norm_eps` for the clamp of a given dtype.
EPS = 1e-12


def norm_eps(dtype: torch.dtype) -> float:
    """:data:`EPS`, or the smallest normal number of ``dtype`` where EPS
    is not representable (float16: 1e-12 rounds to 0, and a zero-norm row
    would give 0 / 0 = NaN). float32, float64 and bfloat16 get EPS."""
    return max(EPS, torch.finfo(dtype).tiny)


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


class OptionalBuffersMixin:
    """Buffers that keep their value when a checkpoint lacks them.

    Statistics computed for inference (NCM class means, post-hoc counts)
    are persistent buffers, so they travel in the checkpoint; a stock /
    stage-1 checkpoint has none of them and must still load, without a
    missing-key warning, keeping the module's configured or initial
    values. List them in ``_optional_buffers``; put the mixin before the
    ``nn.Module`` base.
    """

    _optional_buffers: Tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        keep_missing_buffers(self, state_dict, prefix, self._optional_buffers)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def keep_missing_buffers(module: nn.Module, state_dict: dict, prefix: str,
                         names: Sequence[str]) -> None:
    """Fill ``state_dict`` with the module's own value of every buffer of
    ``names`` the checkpoint lacks (see :class:`OptionalBuffersMixin`)."""
    for name in names:
        buf = module._buffers.get(name)
        if buf is not None and prefix + name not in state_dict:
            state_dict[prefix + name] = buf.detach().clone()
