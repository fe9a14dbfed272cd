"""De-confounded training and TDE inference (Tang et al., NeurIPS 2020).

* Eq. 7 -- causal-norm (de-confounded) multi-head classifier: split the D
  feature dimensions into K heads and, with ``x_k_bar = x_k / ||x_k||`` and
  ``w_ck_bar = w_ck / (||w_ck|| + gamma)``::

      y_c = (tau / K) * sum_k <x_k_bar, w_ck_bar>        (no bias)

* Eq. 8 -- Total Direct Effect inference: with the moving-average head
  direction ``d`` (Assumption 1), ``d_hat_k = d_k / ||d_k||`` and
  ``c_k = cos(x_k, d_k)``::

      TDE_c = (tau / K) * sum_k <x_k_bar - alpha * c_k * d_hat_k, w_ck_bar>

* Eq. 9 -- background-exempted inference for detectors: the background
  keeps its de-confounded probability ``p_bg`` and the foreground classes
  share ``1 - p_bg`` in proportion to the TDE probabilities ``q``; computed
  exactly in log space (no epsilon, :func:`background_exempt_log_probs`).

Inference cost: one matmul (or 1x1 convolution) gives both the plain and
the TDE logits (``TDE = plain - alpha (tau / K) cos @ U``), and in eval
mode the normalised weights are cached (:class:`lt_mm.core.decoupling.
WeightCache`).

Zero-norm feature chunks (possible for per-pixel post-ReLU features) are
normalised with a small ``eps`` clamp (like ``F.normalize``) instead of
producing NaN; a zero head direction (never updated) makes TDE equal to the
plain causal-norm logits.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ._utils import norm_eps, weight_2d
from .checks import check_choice, check_range, check_size
from .decoupling import WeightCache, cache_enabled

DIRECTION_UPDATES = ('reference', 'ema')
#: the causal-norm / TDE options every adapter passes through unchanged
#: (cls head, seg ``conv_seg``, det ``fc_cls``); each adapter only sets
#: its task's defaults (``alpha``, ``momentum``, ``background_exempt``)
CAUSAL_NORM_ARGS = ('num_heads', 'tau', 'gamma', 'alpha', 'momentum',
                    'direction_update', 'use_tde_at_test', 'background_exempt')


def _check_heads(dim: int, num_heads: int) -> int:
    k = check_size('num_heads', num_heads)
    if k != num_heads or dim % k != 0:
        raise ValueError(
            f'num_heads={num_heads!r} must be a positive integer that '
            f'divides the feature dimension {dim}.')
    return k


def _to_last(feats: Tensor) -> Tensor:
    """(N, D) -> (N, D); (N, D, H, W) -> (N, H, W, D)."""
    if feats.dim() == 2:
        return feats
    if feats.dim() == 4:
        return feats.movedim(1, -1)
    raise ValueError(f'feats must be (N, D) or (N, D, H, W), got shape '
                     f'{tuple(feats.shape)}.')


def _check_feats(feats: Tensor) -> int:
    """Feature dimension D of (N, D) or (N, D, H, W) features."""
    if feats.dim() not in (2, 4):
        raise ValueError(f'feats must be (N, D) or (N, D, H, W), got shape '
                         f'{tuple(feats.shape)}.')
    return feats.shape[1]


def _split_normalize(x: Tensor, k: int) -> Tensor:
    """(..., D) -> (..., K, D/K) with every chunk L2-normalised."""
    x = x.reshape(x.shape[:-1] + (k, x.shape[-1] // k))
    return x / x.norm(dim=-1, keepdim=True).clamp_min(norm_eps(x.dtype))


def _unit_direction(head_direction: Tensor, dim: int, k: int) -> Tensor:
    """``d_k / ||d_k||`` (K, D/K), normalised in at least float32: the
    moving average ``d`` grows to ~1 / (1 - mu) times the mean feature
    (5000x at mu = 0.9998), whose norm overflows float16; the unit vector
    is then cast to the compute dtype by the caller."""
    d = head_direction.reshape(dim)
    return _split_normalize(
        d.to(torch.promote_types(d.dtype, torch.float32)), k)


def _normalize_heads(feats: Tensor, k: int) -> Tensor:
    """``x_k / ||x_k||`` per head on dim 1, same shape as ``feats``.

    (N, D) or (N, D, H, W); the chunks are contiguous groups of D/K
    channels (the channel layout of Eq. 7).
    """
    n, dim = feats.shape[:2]
    x = feats.reshape((n, k, dim // k) + tuple(feats.shape[2:]))
    x = x / x.norm(dim=2, keepdim=True).clamp_min(norm_eps(x.dtype))
    return x.reshape(feats.shape)


def _linear(x: Tensor, w: Tensor) -> Tensor:
    """(N, D) @ (C, D)^T, or a 1x1 convolution of (N, D, H, W)."""
    if x.dim() == 2:
        return x @ w.t()
    return F.conv2d(x, w[:, :, None, None])


def causal_weight(weight: Tensor, num_heads: int, gamma: float) -> Tensor:
    """Normalised causal-norm weights ``w_ck / (||w_ck|| + gamma)``.

    TDE paper Eq. 7 (the weight factor).

    Args:
        weight: (C, D) or (C, D, 1, 1).
        num_heads: K, divides D.
        gamma: ``>= 0``.

    Returns:
        Tensor: (C, D), every head chunk of every row normalised.
    """
    w = weight.flatten(1) if weight.dim() == 4 else weight
    c, dim = w.shape
    w = w.reshape(c, num_heads, dim // num_heads)
    w = w / (w.norm(dim=-1, keepdim=True) + gamma).clamp_min(norm_eps(w.dtype))
    return w.reshape(c, dim)


def direction_projections(w_bar: Tensor, head_direction: Tensor,
                          num_heads: int) -> Tuple[Tensor, Tensor]:
    """Unit head directions and their projections on the weights (Eq. 8).

    Args:
        w_bar: (C, D) from :func:`causal_weight`.
        head_direction: (D,) moving-average feature ``d``.
        num_heads: K.

    Returns:
        tuple: ``d_hat`` (K, D/K) with ``d_hat_k = d_k / ||d_k||`` (zero for
        a zero chunk) and ``U`` (K, C) with ``U_kc = <d_hat_k, w_ck_bar>``.
    """
    c, dim = w_bar.shape
    k = num_heads
    d_hat = _unit_direction(head_direction, dim, k).to(w_bar.dtype)
    u = torch.einsum('kd,ckd->kc', d_hat, w_bar.reshape(c, k, dim // k))
    return d_hat, u


def _head_cos(xb: Tensor, d_hat: Tensor) -> Tensor:
    """``cos(x_k, d_k) = <x_k_bar, d_hat_k>``: (N, K[, H, W])."""
    n, dim = xb.shape[:2]
    k = d_hat.shape[0]
    spatial = tuple(xb.shape[2:])
    x = xb.reshape((n, k, dim // k) + spatial)
    d = d_hat.reshape((1, k, dim // k) + (1, ) * len(spatial))
    return (x * d).sum(dim=2)


def _tde_from_plain(plain: Tensor, cos: Tensor, u: Tensor,
                    coef: float) -> Tensor:
    """``plain - coef * sum_k cos_k U_kc`` (Eq. 8 rewritten).

    ``coef = alpha * tau / K``; shapes (N, C[, H, W]), (N, K[, H, W]),
    (K, C).
    """
    if coef == 0:
        return plain
    if cos.dim() == 2:
        return torch.addmm(plain, cos, u.to(plain.dtype), alpha=-coef)
    corr = F.conv2d(cos, u.t().to(plain.dtype)[:, :, None, None])
    return plain.add(corr, alpha=-coef)


def _validate(tau: float, gamma: float) -> Tuple[float, float]:
    tau = check_range('tau', tau, 0.0, low_inclusive=False)
    gamma = check_range('gamma', gamma, 0.0)
    return tau, gamma


def causal_norm_logits(feats: Tensor,
                       weight: Tensor,
                       num_heads: int = 2,
                       tau: float = 16.0,
                       gamma: float = 1 / 32) -> Tensor:
    """De-confounded causal-norm logits (TDE paper Eq. 7).

    ``y_c = (tau / K) * sum_k <x_k / ||x_k||, w_ck / (||w_ck|| + gamma)>``,
    computed as one matmul (or 1x1 convolution) of the head-normalised
    features with the (C, D) normalised weights.

    Args:
        feats: (N, D) or per-pixel (N, D, H, W).
        weight: (C, D) classifier weight (or a (C, D, 1, 1) 1x1 conv
            weight); no bias.
        num_heads: K, must divide D.
        tau: positive scale (inverse temperature).
        gamma: class-agnostic baseline energy, ``>= 0``.

    Returns:
        Tensor: (N, C) or (N, C, H, W).
    """
    tau, gamma = _validate(tau, gamma)
    dim = _check_feats(feats)
    k = _check_heads(dim, num_heads)
    w = causal_weight(weight_2d(weight, dim), k, gamma).to(feats.dtype)
    xb = _normalize_heads(feats, k)
    return _linear(xb, w) * (tau / k)


def tde_logits(feats: Tensor,
               weight: Tensor,
               head_direction: Tensor,
               alpha: float,
               num_heads: int = 2,
               tau: float = 16.0,
               gamma: float = 1 / 32) -> Tensor:
    """Total-direct-effect logits (TDE paper Eq. 8).

    ``TDE_c = (tau / K) sum_k <x_k_bar - alpha * cos(x_k, d_k) * d_hat_k,
    w_ck_bar>`` where ``d`` is the moving-average feature (head direction).
    ``alpha = 0`` gives :func:`causal_norm_logits`. Computed as
    ``y_c - alpha (tau / K) sum_k cos_k <d_hat_k, w_ck_bar>`` (the same
    sum, distributed): one matmul with the weights plus a (K, C) term.

    Args:
        feats: (N, D) or (N, D, H, W).
        weight: (C, D) (or (C, D, 1, 1)).
        head_direction: (D,) moving-average feature ``d``.
        alpha: trade-off between indirect and direct effect, ``>= 0``.
        num_heads, tau, gamma: as in :func:`causal_norm_logits`.

    Returns:
        Tensor: (N, C) or (N, C, H, W).
    """
    tau, gamma = _validate(tau, gamma)
    alpha = check_range('alpha', alpha, 0.0)
    dim = _check_feats(feats)
    k = _check_heads(dim, num_heads)
    if head_direction.numel() != dim:
        raise ValueError(
            f'head_direction has {head_direction.numel()} entries; '
            f'expected D={dim}.')
    w = causal_weight(weight_2d(weight, dim), k, gamma).to(feats.dtype)
    d_hat, u = direction_projections(w, head_direction, k)
    xb = _normalize_heads(feats, k)
    plain = _linear(xb, w) * (tau / k)
    if alpha == 0:
        return plain
    return _tde_from_plain(plain, _head_cos(xb, d_hat), u, alpha * tau / k)


def background_exempt_log_probs(logits: Tensor,
                                tde_logits: Tensor,
                                eps: float = 0.0) -> Tensor:
    """Background-exempted TDE inference (TDE paper Eq. 9), as log-probs.

    With ``p = softmax(logits)`` (de-confounded) and ``q =
    softmax(tde_logits)`` over the ``C + 1`` columns (background LAST,
    mmdet convention), Eq. 9 is::

        final_bg = p_bg
        final_c  = (1 - p_bg) * q_c / (1 - q_bg)   (c foreground)

    computed exactly in log space (``eps=0``, default)::

        g          = logsumexp(logits_fg) - logits_bg
        log P_fg   = log(1 - p_bg) = logsigmoid(g)
        log p_bg   = logsigmoid(-g)
        log final_c  = log P_fg + log_softmax(tde_logits_fg)_c
        log final_bg = log p_bg

    ``q_c / (1 - q_bg)`` is the softmax over the foreground TDE logits
    alone, and ``logsigmoid`` is accurate for ``p_bg`` near 0 and near 1
    (no ``1 - p`` cancellation), so every entry has a small *relative*
    error even when the background dominates (``p_bg > 1 - 1e-12``). The
    rows sum to one up to rounding, so ``softmax(output) == exp(output)``
    (a later softmax in mmdet's ``predict_by_feat`` returns Eq. 9).

    ``eps > 0`` reproduces the reference code's smoothed form
    ``P_fg / (Q_fg + eps) * (q_c + eps)`` (renormalised); its error grows
    like ``C_fg * eps / Q_fg`` when the TDE background dominates, so it is
    only meant for comparisons with the reference.

    Args:
        logits: de-confounded logits (N, C+1) or (N, C+1, H, W).
        tde_logits: TDE logits, same shape.
        eps: 0 for exact Eq. 9; the reference uses 1e-10.

    Returns:
        Tensor: ``log(final)``, same shape as ``logits``.
    """
    if logits.shape != tde_logits.shape or logits.dim() < 2 or \
            logits.shape[1] < 2:
        raise ValueError(
            f'logits {tuple(logits.shape)} and tde_logits '
            f'{tuple(tde_logits.shape)} must have the same shape (N, C+1) or '
            '(N, C+1, H, W) with at least one foreground and the background '
            'column (last).')
    check_range('eps', eps, 0.0)
    if eps > 0:
        return _reference_exempt(logits, tde_logits, eps)
    num_fg = logits.shape[1] - 1
    plain_fg = logits.narrow(1, 0, num_fg)
    gap = torch.logsumexp(plain_fg, dim=1, keepdim=True)
    gap = gap - logits.narrow(1, num_fg, 1)
    tde_fg = tde_logits.narrow(1, 0, num_fg)
    shift = F.logsigmoid(gap) - torch.logsumexp(tde_fg, dim=1, keepdim=True)
    log_p_bg = F.logsigmoid(-gap)
    if torch.is_grad_enabled() and (logits.requires_grad
                                    or tde_logits.requires_grad):
        return torch.cat([tde_fg + shift, log_p_bg], dim=1)
    # inference: write both parts into one buffer (no concatenation)
    out = torch.empty_like(tde_logits)
    torch.add(tde_fg, shift, out=out.narrow(1, 0, num_fg))
    out.narrow(1, num_fg, 1).copy_(log_p_bg)
    return out


def _reference_exempt(logits: Tensor, tde_logits: Tensor,
                      eps: float) -> Tensor:
    """The reference code's eps-smoothed Eq. 9, renormalised, log space."""
    logp = torch.log_softmax(logits, dim=1)
    q = torch.softmax(tde_logits, dim=1)
    log_p_bg = logp[:, -1:]
    log_p_fg = torch.logsumexp(logp[:, :-1], dim=1, keepdim=True)
    q_fg = q[:, :-1]
    log_q_fg_sum = torch.log(q_fg.sum(dim=1, keepdim=True) + eps)
    log_final_fg = log_p_fg - log_q_fg_sum + torch.log(q_fg + eps)
    log_final = torch.cat([log_final_fg, log_p_bg], dim=1)
    return log_final - torch.logsumexp(log_final, dim=1, keepdim=True)


def _head_cosines(feats: Tensor, head_direction: Tensor,
                  num_heads: int) -> Tensor:
    x = _to_last(feats)
    dim = x.shape[-1]
    k = _check_heads(dim, num_heads)
    if head_direction.numel() != dim:
        raise ValueError(
            f'head_direction has {head_direction.numel()} entries; '
            f'expected D={dim}.')
    xb = _split_normalize(x, k)
    d_hat = _unit_direction(head_direction, dim, k).to(xb.dtype)
    return (xb * d_hat).sum(dim=-1)  # (..., K)


def suggest_alpha(feats: Tensor,
                  head_direction: Tensor,
                  num_heads: int = 2,
                  mask: Optional[Tensor] = None) -> float:
    """Suggest the TDE ``alpha`` (TDE paper Eq. 8).

    Returns ``alpha = 1 / mean_{i,k} cos(x_ik, d_k)`` so that the average
    ``alpha * cos(x, d)`` is 1, the reference's rule of thumb when no
    validation set is available.

    Args:
        feats: (N, D) or (N, D, H, W) features (e.g. of the training or
            test set).
        head_direction: (D,) head direction ``d``.
        num_heads: K.
        mask: optional bool (N,) or (N, H, W) selecting the samples (e.g.
            foreground RoIs).

    Returns:
        float: the suggested alpha.
    """
    cos = _head_cosines(feats, head_direction, num_heads)  # (N[,H,W], K)
    if mask is not None:
        cos = cos[_expand_mask(mask, cos.shape[:-1])]
    if cos.numel() == 0:
        raise ValueError('suggest_alpha got no samples (empty feats or an '
                         'all-False mask).')
    mean_cos = float(cos.double().mean())
    if not mean_cos > 0:
        raise ValueError(
            f'the mean cosine between features and head_direction is '
            f'{mean_cos:.4g} (<= 0): alpha would not be positive. Was the '
            'head direction ever updated (update_head_direction)?')
    return 1.0 / mean_cos


def _expand_mask(mask: Tensor, shape: torch.Size) -> Tensor:
    """Validate a bool sample mask and broadcast (N,) over (N, H, W)."""
    mask = mask.to(torch.bool)
    if mask.dim() == 1 and len(shape) == 3:
        mask = mask[:, None, None].expand(shape)
    if mask.shape != shape:
        raise ValueError(
            f'mask has shape {tuple(mask.shape)}; expected {tuple(shape)} '
            f'(or ({shape[0]},) for per-pixel features).')
    return mask


class CausalNormClassifier(nn.Module):
    """De-confounded classifier with TDE inference (TDE paper Eq. 7-9).

    Training: :meth:`forward` returns causal-norm logits (Eq. 7) for plain
    softmax cross-entropy, and the adapter calls
    :meth:`update_head_direction` on *every rank* at every training step
    (the update is a collective op under ``torch.distributed``).
    Inference: :meth:`predict` returns TDE logits (Eq. 8), or with
    ``background_exempt=True`` the background-exempted log-probabilities of
    Eq. 9 (background last).

    Head direction update with the batch mean ``m`` (all-reduced across
    ranks so it equals the single-process mean of the global batch):

    * ``direction_update='reference'``: ``d <- momentum * d + m`` (reference
      code; not a convex average, only the direction of ``d`` matters);
    * ``direction_update='ema'``: ``d <- momentum * d + (1 - momentum) * m``.

    A batch with no selected sample leaves ``d`` unchanged.

    Args:
        in_channels: feature dimension D.
        num_classes: number of output columns (C, or C + 1 with the
            background last for detection).
        num_heads: K, must divide D.
        tau: scale, ``> 0`` (reference 16).
        gamma: ``>= 0`` (reference 1/32).
        alpha: default TDE strength at test, ``>= 0`` (reference 3.0
            ImageNet-LT, 1.5 LVIS).
        momentum: ``mu`` in [0, 1] (reference 0.9 cls, 0.9998 det).
        direction_update: ``'reference'`` or ``'ema'``.
        use_tde_at_test: if False, :meth:`predict` uses ``alpha = 0`` unless
            an explicit ``alpha`` is passed.
        background_exempt: :meth:`predict` returns Eq. 9 log-probabilities.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 num_heads: int = 2,
                 tau: float = 16.0,
                 gamma: float = 1 / 32,
                 alpha: float = 3.0,
                 momentum: float = 0.9,
                 direction_update: str = 'reference',
                 use_tde_at_test: bool = True,
                 background_exempt: bool = False) -> None:
        super().__init__()
        check_size('in_channels', in_channels)
        check_size('num_classes', num_classes)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.num_heads = _check_heads(self.in_channels, num_heads)
        self.tau, self.gamma = _validate(tau, gamma)
        self.alpha = check_range('alpha', alpha, 0.0)
        self.momentum = check_range('momentum', momentum, 0.0, 1.0)
        self.direction_update = check_choice('direction_update',
                                             direction_update,
                                             DIRECTION_UPDATES)
        self.use_tde_at_test = bool(use_tde_at_test)
        self.background_exempt = bool(background_exempt)
        if self.background_exempt and self.num_classes < 2:
            raise ValueError('background_exempt=True needs num_classes >= 2 '
                             '(foreground classes + background last).')
        self.weight = nn.Parameter(
            torch.empty(self.num_classes, self.in_channels))
        self.register_buffer(
            'head_direction', torch.zeros(self.in_channels), persistent=True)
        self._weight_cache = WeightCache()
        self._checked_direction: Optional[tuple] = None
        self._warned_zero_direction = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Init ``weight`` ~ U(+-1/sqrt(D)) (reference init)."""
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)

    def train(self, mode: bool = True) -> 'CausalNormClassifier':
        """Switch mode and drop the cached normalised weights."""
        self._weight_cache.clear()
        return super().train(mode)

    def _check_input(self, feats: Tensor) -> None:
        dim = _check_feats(feats)
        if dim != self.in_channels:
            raise ValueError(f'feats have D={dim}; expected '
                             f'in_channels={self.in_channels}.')

    def _scaled_weight(self, dtype: torch.dtype) -> Tensor:
        """``(tau / K) * w_bar`` (C, D) in ``dtype``; cached in eval."""
        scale = self.tau / self.num_heads

        def compute() -> Tensor:
            w = causal_weight(self.weight, self.num_heads, self.gamma)
            return w.to(dtype) * scale

        if not cache_enabled(self, (self.weight, )):
            return compute()
        return self._weight_cache.get(
            'weight', (self.weight, ),
            (dtype, self.num_heads, self.tau, self.gamma), compute)

    def forward(self, feats: Tensor) -> Tensor:
        """Causal-norm logits (Eq. 7): (N, D[, H, W]) -> (N, C[, H, W])."""
        if self.training or not cache_enabled(self, (self.weight, )):
            return causal_norm_logits(feats, self.weight, self.num_heads,
                                      self.tau, self.gamma)
        self._check_input(feats)
        xb = _normalize_heads(feats, self.num_heads)
        return _linear(xb, self._scaled_weight(feats.dtype))

    @torch.no_grad()
    def update_head_direction(self,
                              feats: Tensor,
                              mask: Optional[Tensor] = None) -> Tensor:
        """Update the moving-average head direction ``d`` (Assumption 1).

        Args:
            feats: (N, D) or (N, D, H, W) classifier inputs of the batch.
            mask: optional bool (N,) or (N, H, W) selecting the samples to
                average, e.g. ``labels < num_fg_classes`` (foreground RoIs)
                or non-ignored pixels.

        Returns:
            Tensor: the (global) batch mean ``m`` of shape (D,) (zeros if no
            sample was selected).
        """
        x = _to_last(feats.detach())
        if x.shape[-1] != self.in_channels:
            raise ValueError(f'feats have D={x.shape[-1]}; expected '
                             f'in_channels={self.in_channels}.')
        x = x.reshape(-1, self.in_channels).to(self.head_direction.dtype)
        if mask is not None:
            m = _expand_mask(mask, _to_last(feats).shape[:-1]).reshape(-1)
            x = x[m.to(x.device)]
        stats = torch.cat([x.sum(dim=0), x.new_full((1, ), x.shape[0])])
        if dist.is_available() and dist.is_initialized() and \
                dist.get_world_size() > 1:
            dist.all_reduce(stats, op=dist.ReduceOp.SUM)
        total, count = stats[:-1], stats[-1]
        mean = total / count.clamp_min(1.0)
        mu = self.momentum
        if self.direction_update == 'reference':
            new = mu * self.head_direction + mean
        else:
            new = mu * self.head_direction + (1.0 - mu) * mean
        # no selected sample anywhere: keep d (no host sync needed)
        self.head_direction.copy_(
            torch.where(count > 0, new, self.head_direction))
        return mean

    def predict(self, feats: Tensor, alpha: Optional[float] = None) -> Tensor:
        """Test-time output (TDE paper Eq. 8, or Eq. 9 if bg-exempt).

        Args:
            feats: (N, D) or (N, D, H, W).
            alpha: TDE strength; None uses :attr:`alpha` (or 0 when
                ``use_tde_at_test=False``). ``alpha=0`` gives the plain
                causal-norm logits.

        Returns:
            Tensor: TDE logits (N, C[, H, W]); with
            ``background_exempt=True`` the log-probabilities of
            :func:`background_exempt_log_probs`.
        """
        if alpha is None:
            alpha = self.alpha if self.use_tde_at_test else 0.0
        else:
            alpha = check_range('alpha', alpha, 0.0)
        if alpha > 0:
            self.check_head_direction()
        plain, tde = self.plain_and_tde_logits(feats, alpha)
        if not self.background_exempt:
            return tde
        return background_exempt_log_probs(plain, tde)

    def check_head_direction(self) -> bool:
        """Warn once when the head direction ``d`` is all zeros.

        A zero ``d`` means the model was never trained with this
        classifier (or the checkpoint lacks ``head_direction``): TDE then
        equals the plain causal-norm logits. The (host-syncing) check runs
        again only when the buffer changed (its storage or version
        counter), so not on every inference batch.

        Returns:
            bool: whether ``d`` is non-zero (True without a new check).
        """
        if self._warned_zero_direction:
            return False
        d = self.head_direction
        try:
            key = (d.data_ptr(), d._version)
        except RuntimeError:  # inference tensor: no version counter
            key = (d.data_ptr(), 'inference')
        if key == self._checked_direction:
            return True
        self._checked_direction = key
        if bool(torch.any(d != 0)):
            return True
        self._warned_zero_direction = True
        warnings.warn(
            f'{type(self).__name__}: head_direction is all zeros (never '
            'updated, or the checkpoint lacks it), so TDE equals the plain '
            'causal-norm logits. Train with this classifier so that the '
            'moving-average direction is learned (TDE Assumption 1).')
        return False

    def plain_and_tde_logits(self, feats: Tensor,
                             alpha: float) -> Tuple[Tensor, Tensor]:
        """Causal-norm (Eq. 7) and TDE (Eq. 8) logits from ONE matmul.

        Eq. 8 is linear in ``x_k_bar``: ``TDE_c = <x_bar, W~_c>`` with the
        projection of the head direction removed from the weights,
        ``W~_ck = (tau / K) (w_ck_bar - alpha <d_hat_k, w_ck_bar> d_hat_k)``
        (cached in eval mode, recomputed when ``weight``,
        ``head_direction`` or ``alpha`` change), so the TDE logits cost
        one matmul / 1x1 convolution, like the stock classifier. The plain
        logits, needed by Eq. 9 only, follow as ``TDE + alpha (tau / K)
        cos @ U`` with ``cos_k = <x_k_bar, d_hat_k>`` (an (N, K) product)
        and ``U_kc = <d_hat_k, w_ck_bar>``.

        Args:
            feats: (N, D) or (N, D, H, W).
            alpha: TDE strength, ``>= 0``.

        Returns:
            tuple: ``(plain, tde)``, each (N, C[, H, W]) (the same tensor
            when ``alpha = 0``); ``plain`` is None when
            ``background_exempt=False`` (not needed).
        """
        self._check_input(feats)
        k = self.num_heads
        xb = _normalize_heads(feats, k)
        if alpha == 0:
            plain = _linear(xb, self._scaled_weight(feats.dtype))
            return plain, plain
        w_tde, d_block, u = self._tde_terms(feats.dtype, float(alpha))
        tde = _linear(xb, w_tde)
        if not self.background_exempt:
            return None, tde
        cos = _linear(xb, d_block)
        plain = _tde_from_plain(tde, cos, u, -alpha * self.tau / k)
        return plain, tde

    def _tde_terms(self, dtype: torch.dtype,
                   alpha: float) -> Tuple[Tensor, Tensor, Tensor]:
        """``W~`` (C, D), the block matrix of ``d_hat`` (K, D) and ``U``
        (K, C) of :meth:`plain_and_tde_logits`; cached in eval."""
        sources = (self.weight, self.head_direction)
        k, scale = self.num_heads, self.tau / self.num_heads

        def compute() -> Tuple[Tensor, Tensor, Tensor]:
            w = causal_weight(self.weight, k, self.gamma).to(dtype)
            d_hat, u = direction_projections(w, self.head_direction, k)
            c, dim = w.shape
            proj = u.t()[:, :, None] * d_hat[None]  # (C, K, D/K)
            w_tde = (w - alpha * proj.reshape(c, dim)) * scale
            d_block = torch.block_diag(*d_hat)  # (K, D)
            return w_tde, d_block, u

        if not cache_enabled(self, sources):
            return compute()
        return self._weight_cache.get('tde', sources,
                                      (dtype, alpha, k, self.tau, self.gamma),
                                      compute)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, '
                f'num_classes={self.num_classes}, '
                f'num_heads={self.num_heads}, tau={self.tau}, '
                f'gamma={self.gamma}, alpha={self.alpha}, '
                f'momentum={self.momentum}, '
                f'direction_update={self.direction_update!r}, '
                f'background_exempt={self.background_exempt}')
