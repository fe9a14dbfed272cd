"""Decoupled classifiers (Kang et al., ICLR 2020, Sec. 4).

* cRT -- re-initialise and re-train the classifier on frozen features
  (:func:`reinit_classifier`);
* NCM -- nearest class mean classifier on (centred) L2-normalised features
  (:func:`class_centroids`, :func:`ncm_logits`);
* tau-normalisation, Eq. 3: ``w_i_tilde = w_i / ||w_i|| ** tau``, logits
  ``W_tilde^T f(x)`` without bias (:func:`tau_normalize`,
  :func:`tau_norm_logits`);
* LWS, Eq. 4: ``w_i_tilde = f_i * w_i`` with learnable ``f_i``
  (:class:`LearnableWeightScaling`);
* a cosine classifier (:class:`CosineClassifier`), the normalised
  classifier used by several long-tail baselines;
* :class:`WeightCache` -- the normalised weights of a frozen classifier,
  computed once in eval mode and recomputed when the weights change.
"""
from __future__ import annotations

import math
from typing import Callable, Hashable, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ._utils import norm_eps, weight_2d
from .checks import check_choice, check_range, check_size

NCM_FEAT_TYPES = ('un', 'l2n', 'cl2n')
NCM_DISTS = ('l2', 'cos')


def _linear(feats: Tensor, weight: Tensor) -> Tensor:
    """Bias-free linear map (N, D) -> (N, C), (N, D, H, W) -> (N, C, H, W).
    """
    if feats.dim() == 2:
        return feats @ weight.t()
    if feats.dim() == 4:
        # a 1x1 convolution (much faster than einsum on NCHW maps)
        return F.conv2d(feats, weight[:, :, None, None])
    raise ValueError(f'feats must be (N, D) or (N, D, H, W), got shape '
                     f'{tuple(feats.shape)}.')


class WeightCache:
    """A tensor derived from parameters, kept while they are unchanged.

    Post-hoc classifiers (tau-norm Eq. 3, cosine, causal-norm Eq. 7)
    re-normalise *frozen* weights at every test forward; this cache keeps
    the result. An entry is valid while every source tensor has the same
    storage (``data_ptr``), version counter (``_version``, bumped by every
    in-place update: optimizer steps, ``load_state_dict``, ``copy_``),
    dtype, device and shape, and the ``extra`` key (hyper-parameters such as
    tau) is equal. A reference to the sources is kept, so their memory
    cannot be reused by another tensor while the entry lives.

    Use it only when no gradient is needed (:func:`cache_enabled`): the
    cached value is computed once and carries no autograd graph.
    """

    def __init__(self) -> None:
        self._entries: dict = {}

    @staticmethod
    def _key(sources: Sequence[Tensor], extra: Hashable) -> Optional[tuple]:
        try:
            return tuple(
                (t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape))
                for t in sources) + (extra, )
        except RuntimeError:  # inference tensors have no version counter
            return None

    def get(self, name: str, sources: Sequence[Tensor], extra: Hashable,
            fn: Callable[[], Tensor]) -> Tensor:
        """Return ``fn()``, recomputed only when the sources changed.

        Args:
            name: slot name (one entry per name).
            sources: the tensors ``fn`` reads (e.g. ``(weight, )``).
            extra: hashable hyper-parameters ``fn`` depends on.
            fn: computes the value.
        """
        key = self._key(sources, extra)
        entry = self._entries.get(name)
        if key is not None and entry is not None and entry[0] == key:
            return entry[1]
        value = fn()
        if key is not None:
            refs = tuple(t.detach() for t in sources)
            self._entries[name] = (key, value, refs)
        return value

    def clear(self) -> None:
        """Drop every entry (e.g. on ``train()``)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __deepcopy__(self, memo) -> 'WeightCache':
        return WeightCache()  # never copy cached tensors

    def __getstate__(self) -> dict:
        return {'_entries': {}}  # never pickle cached tensors


def cache_enabled(module: nn.Module, sources: Sequence[Tensor]) -> bool:
    """Whether ``module`` may use cached normalised weights now.

    True in eval mode when no gradient can flow to ``sources`` (under
    ``torch.no_grad()`` / ``inference_mode`` or with frozen weights), so
    the cached tensors give exactly the uncached outputs.
    """
    if module.training:
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
        return False
    return True


def _check_dim(feats: Tensor, dim: int, what: str = 'weight') -> None:
    if feats.dim() < 2 or feats.shape[1] != dim:
        raise ValueError(
            f'feats have shape {tuple(feats.shape)} but the {what} expects '
            f'D={dim} channels on dim 1.')


def tau_normalize(weight: Tensor, tau: float) -> Tensor:
    """Tau-normalise classifier weights row-wise (Decoupling Eq. 3).

    ``w_c_tilde = w_c / ||w_c|| ** tau``; ``tau = 0`` leaves the weights
    unchanged, ``tau = 1`` gives unit-norm rows.

    Args:
        weight: (C, D) (or any (C, ...) shape, e.g. a (C, D, 1, 1) conv
            weight; the norm is over all but the first dim).
        tau: temperature, ``>= 0`` (the reference sweeps [0, 2]).

    Returns:
        Tensor: normalised weights, same shape as ``weight``.
    """
    tau = check_range('tau', tau, 0.0)
    norms = weight.flatten(1).norm(dim=1)
    norms = norms.clamp_min(norm_eps(norms.dtype))
    scale = norms.pow(-tau)
    return weight * scale.reshape((-1, ) + (1, ) * (weight.dim() - 1))


def tau_norm_logits(feats: Tensor, weight: Tensor, tau: float) -> Tensor:
    """Logits of the tau-normalised classifier (Decoupling Eq. 3).

    ``y = W_tilde^T f(x)`` with the bias discarded, as in the paper.

    Args:
        feats: (N, D) or (N, D, H, W).
        weight: (C, D) or (C, D, 1, 1).
        tau: ``>= 0``.

    Returns:
        Tensor: (N, C) or (N, C, H, W).
    """
    w = weight_2d(tau_normalize(weight, tau))
    _check_dim(feats, w.shape[1])
    return _linear(feats, w.to(feats.dtype))


class LearnableWeightScaling(nn.Module):
    """Learnable weight scaling, LWS (Decoupling Eq. 4).

    ``w_i_tilde = f_i * w_i`` with the classifier frozen and only the
    per-class scales ``f`` (parameter ``scales``, init ones) learned.

    * ``scale_bias=True`` (reference classification): the input logits are
      ``W x + b`` and the output is ``(W x + b) * f``; if ``bias`` is also
      passed it is added before scaling, ``(logits + bias) * f``.
    * ``scale_bias=False`` (detection variant): pass the bias-free ``W x``
      as ``logits`` and the bias separately; the output is
      ``(W x) * f + b``, i.e. only the weights are scaled.

    Args:
        num_classes: number of logit columns C (including the background
            column for detection, as in the reference detection variant).
        scale_bias: see above.
    """

    def __init__(self, num_classes: int, scale_bias: bool = True) -> None:
        super().__init__()
        check_size('num_classes', num_classes)
        self.num_classes = int(num_classes)
        self.scale_bias = bool(scale_bias)
        self.scales = nn.Parameter(torch.ones(self.num_classes))

    def forward(self, logits: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """Scale logits: (N, C) or (N, C, H, W) -> same shape.

        Args:
            logits: ``W x + b`` (``scale_bias=True``) or ``W x``.
            bias: optional (C,) classifier bias.
        """
        if logits.dim() < 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f'logits have shape {tuple(logits.shape)}; expected '
                f'{self.num_classes} classes on dim 1.')
        view = (1, -1) + (1, ) * (logits.dim() - 2)
        scales = self.scales.to(logits.dtype).reshape(view)
        if bias is None:
            return logits * scales
        if bias.numel() != self.num_classes:
            raise ValueError(f'bias has {bias.numel()} entries; expected '
                             f'{self.num_classes}.')
        b = bias.to(logits.dtype).reshape(view)
        if self.scale_bias:
            return (logits + b) * scales
        return logits * scales + b

    def extra_repr(self) -> str:
        return f'num_classes={self.num_classes}, scale_bias={self.scale_bias}'


def reinit_classifier(module: nn.Module) -> nn.Module:
    """Re-initialise a classifier for cRT (Decoupling Sec. 4).

    Applies PyTorch's default initialisation (``reset_parameters``) to an
    ``nn.Linear`` or convolution (e.g. a 1x1 ``nn.Conv2d`` segmentation
    classifier) in place.

    Args:
        module: the classifier layer.

    Returns:
        nn.Module: the same module, re-initialised.
    """
    if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        raise ValueError(
            f'reinit_classifier expects an nn.Linear or nn.Conv*d, got '
            f'{type(module).__name__}; pass the classifier layer itself '
            '(e.g. head.fc or decode_head.conv_seg).')
    module.reset_parameters()
    return module


def _flatten_samples(feats: Tensor) -> Tensor:
    """(N, D) -> (N, D); (N, D, H, W) -> (N*H*W, D)."""
    if feats.dim() == 2:
        return feats
    if feats.dim() == 4:
        return feats.movedim(1, -1).reshape(-1, feats.shape[1])
    raise ValueError(f'feats must be (N, D) or (N, D, H, W), got shape '
                     f'{tuple(feats.shape)}.')


def _ncm_transform(x: Tensor, feat_type: str,
                   global_mean: Optional[Tensor]) -> Tensor:
    if feat_type == 'un':
        return x
    if feat_type == 'cl2n':
        if global_mean is None:
            raise ValueError("feat_type='cl2n' needs global_mean (the mean "
                             'training feature from class_centroids).')
        x = x - global_mean.to(x.dtype).reshape(1, -1)
    return x / x.norm(dim=1, keepdim=True).clamp_min(norm_eps(x.dtype))


def _labelled_samples(feats: Tensor, labels: Tensor, num_classes: int,
                      ignore_index: Optional[int]) -> Tuple[Tensor, Tensor]:
    """(M, D) samples and (M,) labels in ``[0, C)``, ignored ones dropped
    (one label per sample / pixel, checked)."""
    x = _flatten_samples(feats)
    y = labels.reshape(-1).long().to(x.device)
    if y.numel() != x.shape[0]:
        raise ValueError(
            f'labels have shape {tuple(labels.shape)} but feats have shape '
            f'{tuple(feats.shape)}: expected one label per sample/pixel.')
    if ignore_index is not None:
        keep = y != ignore_index
        x, y = x[keep], y[keep]
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f'labels must lie in [0, {num_classes}) (or be ignore_index='
            f'{ignore_index}); got values in [{int(y.min())}, '
            f'{int(y.max())}].')
    return x, y


def class_centroids(
        feats: Tensor,
        labels: Tensor,
        num_classes: int,
        feat_type: str = 'cl2n',
        ignore_index: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Class centroids for the NCM classifier (Decoupling Sec. 4).

    ``global_mean`` is the mean raw training feature. Each sample is first
    transformed according to ``feat_type``:

    * ``'un'``: raw feature;
    * ``'l2n'``: ``x / ||x||``;
    * ``'cl2n'``: ``(x - global_mean) / ||x - global_mean||``;

    and the centroid of class c is the plain mean of its transformed samples
    (not re-normalised, as in the reference code).

    Args:
        feats: (N, D) training features (or (N, D, H, W) per-pixel
            features).
        labels: (N,) (or (N, H, W)) labels in ``[0, num_classes)``.
        num_classes: C.
        feat_type: ``'un'``, ``'l2n'`` or ``'cl2n'``.
        ignore_index: optional label to skip (e.g. 255 for segmentation).

    Returns:
        tuple: ``centroids`` (C, D) and ``global_mean`` (D,). The global mean
        is over the non-ignored samples.
    """
    check_choice('feat_type', feat_type, NCM_FEAT_TYPES)
    check_size('num_classes', num_classes)
    x, y = _labelled_samples(feats, labels, num_classes, ignore_index)
    counts = torch.bincount(y, minlength=int(num_classes))
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f'classes {missing} have no sample: their centroid is undefined. '
            'Compute centroids on the full training set (features of every '
            'class).')
    global_mean = x.mean(dim=0)
    z = _ncm_transform(x, feat_type, global_mean)
    sums = z.new_zeros(int(num_classes), z.shape[1]).index_add_(0, y, z)
    centroids = sums / counts.to(z.dtype).unsqueeze(1)
    return centroids, global_mean


def ncm_logits(feats: Tensor,
               centroids: Tensor,
               global_mean: Optional[Tensor] = None,
               feat_type: str = 'cl2n',
               dist: str = 'l2') -> Tensor:
    """Nearest-class-mean scores (Decoupling Sec. 4, NCM).

    Test features get the same ``feat_type`` transform as in
    :func:`class_centroids`. Then:

    * ``dist='l2'``: ``-||x - c_j||^2`` (reference default);
    * ``dist='cos'``: cosine similarity ``cos(x, c_j)`` (the reference's
      ``'cos'`` option is instead the dot product divided by D).

    Args:
        feats: (N, D) or (N, D, H, W).
        centroids: (C, D).
        global_mean: (D,) required for ``'cl2n'``.
        feat_type: ``'un'``, ``'l2n'`` or ``'cl2n'``.
        dist: ``'l2'`` or ``'cos'``.

    Returns:
        Tensor: scores (N, C) or (N, C, H, W); larger is closer.
    """
    check_choice('feat_type', feat_type, NCM_FEAT_TYPES)
    check_choice('dist', dist, NCM_DISTS)
    if centroids.dim() != 2:
        raise ValueError(f'centroids must be (C, D), got shape '
                         f'{tuple(centroids.shape)}.')
    _check_dim(feats, centroids.shape[1], 'centroids')
    x = _ncm_transform(_flatten_samples(feats), feat_type, global_mean)
    c = centroids.to(x.dtype)
    if dist == 'l2':
        # ||x||^2 + ||c||^2 - 2 x.c cancels: in at least float32 and
        # outside autocast (a float16 x.c of raw features, in the hundreds,
        # is off by ~0.25 and flips close rankings); float32 scores
        wide = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xw, cw = x.to(wide), c.to(wide)
            x2 = xw.pow(2).sum(1, keepdim=True)
            c2 = cw.pow(2).sum(1).unsqueeze(0)
            sq = x2 + c2 - 2.0 * xw @ cw.t()
        out = -sq.clamp_min(0.0)
    else:
        xn = F.normalize(x, dim=1, eps=norm_eps(x.dtype))
        out = xn @ F.normalize(c, dim=1, eps=norm_eps(c.dtype)).t()
    if feats.dim() == 4:
        n, _, h, w = feats.shape
        out = out.reshape(n, h, w, -1).movedim(-1, 1)
    return out


class CosineClassifier(nn.Module):
    """Cosine (normalised) classifier: ``y_c = s * cos(x, w_c)``.

    The K = 1, gamma = 0 case of the TDE paper's normalised classifiers
    (TDE supplementary Eq. 1 with ``N(x, w) = ||x|| ||w||``); used as the
    starred (*) classifier in DisAlign Table 1-2. No bias.

    Args:
        in_channels: D.
        num_classes: C.
        scale: s, ``> 0``.
        learn_scale: make ``scale`` a learnable parameter.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 scale: float = 16.0,
                 learn_scale: bool = False) -> None:
        super().__init__()
        check_size('in_channels', in_channels)
        check_size('num_classes', num_classes)
        scale = check_range('scale', scale, 0.0, low_inclusive=False)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.learn_scale = bool(learn_scale)
        self.weight = nn.Parameter(
            torch.empty(self.num_classes, self.in_channels))
        if self.learn_scale:
            self.scale = nn.Parameter(torch.tensor(scale))
        else:
            self.scale = scale
        self._weight_cache = WeightCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Init ``weight`` ~ U(+-1/sqrt(D))."""
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)

    def train(self, mode: bool = True) -> 'CosineClassifier':
        """Switch mode and drop the cached normalised weights."""
        self._weight_cache.clear()
        return super().train(mode)

    def _scaled_weight(self, dtype: torch.dtype) -> Tensor:
        """``s * w / ||w||`` (C, D): the scale folded into the weights."""
        scale = self.scale
        sources = [self.weight]
        if isinstance(scale, Tensor):
            sources.append(scale)
        key = (dtype, None if isinstance(scale, Tensor) else float(scale))

        def compute() -> Tensor:
            w = F.normalize(
                self.weight, dim=1, eps=norm_eps(self.weight.dtype)).to(dtype)
            return w * scale.to(dtype) if isinstance(scale, Tensor) \
                else w * scale

        if not cache_enabled(self, sources):
            return compute()
        return self._weight_cache.get('scaled_weight', sources, key, compute)

    def forward(self, feats: Tensor) -> Tensor:
        """(N, D) -> (N, C); (N, D, H, W) -> (N, C, H, W)."""
        _check_dim(feats, self.in_channels)
        x = F.normalize(feats, dim=1, eps=norm_eps(feats.dtype))
        if not cache_enabled(self, (self.weight, )):
            # training path, as written in the paper: s * <x_hat, w_hat>
            w = F.normalize(
                self.weight, dim=1,
                eps=norm_eps(self.weight.dtype)).to(x.dtype)
            return self.scale * _linear(x, w)
        return _linear(x, self._scaled_weight(x.dtype))

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, '
                f'num_classes={self.num_classes}, '
                f'learn_scale={self.learn_scale}')


# ---------------------------------------------------------------------------
# Generic pieces shared by the toolbox adapters (cosine 1x1 conv, cRT
# re-initialisation from a checkpoint, streaming NCM class means)
# ---------------------------------------------------------------------------
def cosine_logits(feats: Tensor, weight: Tensor, scale: float) -> Tensor:
    """Cosine classifier logits ``y_c = s * cos(x, w_c)`` (no bias).

    The functional form of :class:`CosineClassifier` (the K = 1, gamma = 0
    normalised classifier of TDE supp. Eq. 1; the starred (*) classifier of
    DisAlign Table 1-2), for classifiers that keep another parameter layout
    (e.g. a (C, D, 1, 1) segmentation ``conv_seg``).

    Args:
        feats: (N, D) or (N, D, H, W) (per-pixel features).
        weight: (C, D) or (C, D, 1, 1).
        scale: s (a float or a 0-dim tensor, e.g. a learnable scale).

    Returns:
        Tensor: (N, C) or (N, C, H, W).
    """
    w = weight_2d(weight)
    _check_dim(feats, w.shape[1])
    x = F.normalize(feats, dim=1, eps=norm_eps(feats.dtype))
    w = F.normalize(w, dim=1, eps=norm_eps(w.dtype)).to(x.dtype)
    return scale * _linear(x, w)


def reinit_classifier_from_stage1(classifier: nn.Module, state_dict: dict,
                                  param_prefix: str, flag_key: str) -> bool:
    """cRT (Decoupling Sec. 4): drop a stage-1 classifier while it loads.

    Called from a module's ``_load_from_state_dict``: when the checkpoint's
    ``flag_key`` entry (a 0/1 "classifier already re-trained" buffer) is
    missing or 0, ``classifier`` is re-initialised
    (:func:`reinit_classifier`, PyTorch's default init as the reference)
    and its fresh values replace the checkpoint's entries
    ``param_prefix + <parameter name>`` in ``state_dict`` (the loader's own
    dict), so the keys stay present and the stage-1 values are not copied
    in; a missing flag is filled with 0. A flag of 1 (a stage-2
    checkpoint: resume, test) leaves everything as is.

    Args:
        classifier: the layer to re-initialise (``nn.Linear`` / ``nn.Conv*d``).
        state_dict: the checkpoint entries being loaded (modified in place).
        param_prefix: key prefix of the classifier's parameters, e.g.
            ``'head.fc.'`` or ``'decode_head.conv_seg.'``.
        flag_key: full key of the flag buffer, e.g.
            ``'decode_head.conv_seg.crt_retrained'``.

    Returns:
        bool: whether the classifier was re-initialised.
    """
    flag = state_dict.get(flag_key)
    if flag is not None and int(flag) != 0:
        return False
    reinit_classifier(classifier)
    for name, p in classifier.named_parameters(recurse=False):
        key = param_prefix + name
        if key in state_dict:
            state_dict[key] = p.detach().clone()
    if flag is None:
        state_dict[flag_key] = torch.zeros((), dtype=torch.long)
    return True


def class_feature_sums(
        feats: Tensor,
        labels: Tensor,
        num_classes: int,
        feat_type: str = 'un',
        global_mean: Optional[Tensor] = None,
        ignore_index: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Per-class sums of transformed features, for streaming NCM means.

    The class means of :func:`class_centroids` (Decoupling Sec. 4, NCM)
    accumulated batch by batch, for training sets whose features do not fit
    in memory (per-pixel segmentation features):
    ``centroid_c = sum_batches sums[c] / sum_batches counts[c]``
    (:func:`centroids_from_sums`). ``'cl2n'`` needs the global mean first:
    a pass with ``feat_type='un'`` gives it as
    ``sums.sum(0) / counts.sum()``.

    Args:
        feats: (N, D) or (N, D, H, W).
        labels: (N,) or (N, H, W) in ``[0, num_classes)`` or
            ``ignore_index``.
        num_classes: C.
        feat_type: ``'un'``, ``'l2n'`` or ``'cl2n'`` (see
            :func:`class_centroids`).
        global_mean: (D,) mean raw feature, required for ``'cl2n'``.
        ignore_index: label to skip (e.g. 255).

    Returns:
        tuple: ``sums`` (C, D) float64 and ``counts`` (C,) int64.
    """
    check_choice('feat_type', feat_type, NCM_FEAT_TYPES)
    check_size('num_classes', num_classes)
    x, y = _labelled_samples(feats, labels, num_classes, ignore_index)
    z = _ncm_transform(x.double(), feat_type,
                       None if global_mean is None else global_mean.double())
    sums = z.new_zeros(int(num_classes), x.shape[1]).index_add_(0, y, z)
    counts = torch.bincount(y, minlength=int(num_classes))
    return sums, counts


def centroids_from_sums(sums: Tensor,
                        counts: Tensor,
                        allow_missing: bool = False) -> Tensor:
    """Class means ``sums[c] / counts[c]`` (Decoupling Sec. 4, NCM).

    Args:
        sums: (C, D) accumulated :func:`class_feature_sums`.
        counts: (C,) samples (pixels) per class.
        allow_missing: give a zero row for a class without any sample
            instead of raising (the caller must then keep that class from
            being predicted).

    Returns:
        Tensor: (C, D) float32 centroids.

    Raises:
        ValueError: naming the classes without any sample (unless
            ``allow_missing``).
    """
    if sums.dim() != 2 or counts.shape != sums.shape[:1]:
        raise ValueError(f'sums (C, D) and counts (C,) expected, got shapes '
                         f'{tuple(sums.shape)} and {tuple(counts.shape)}.')
    if (counts == 0).any() and not allow_missing:
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f'classes {missing} have no sample: their centroid is undefined. '
            'Compute centroids on the full training set (features of every '
            'class).')
    n = counts.clamp_min(1).to(sums.dtype).unsqueeze(1)
    return (sums / n).float()


#: the buffers of :class:`ClassMeansMixin`
NCM_BUFFERS = ('centroids', 'global_mean', 'ncm_ready')


class ClassMeansMixin:
    """The stored class means of an NCM classifier (Decoupling Sec. 4).

    One implementation for the classification head, the per-pixel
    ``conv_seg`` and the box classifier: persistent buffers ``centroids``
    (C, D), ``global_mean`` (D,) (the mean raw training feature, for
    ``'cl2n'``) and ``ncm_ready`` (0-dim long), filled by the toolbox's
    ``NCMCentroidHook`` and saved in checkpoints; they are the module's
    ``_optional_buffers`` (a module with more extends the tuple), which the
    module's loading reads so that a stage-1 checkpoint without them loads:
    combine the mixin with :class:`~lt_mm.core._utils.OptionalBuffersMixin`
    or a ``_load_from_state_dict`` that honours the tuple, as the three
    adapters do; on its own it leaves strict loading failing with "Missing
    key(s)". :meth:`ncm_scores` gives the
    scores of :func:`ncm_logits` and refuses to run before the means exist.
    Put the mixin before the ``nn.Module`` base.
    """

    _optional_buffers: Tuple[str, ...] = NCM_BUFFERS

    #: what ``NCMCentroidHook`` runs over, named in the not-ready error
    ncm_source = 'the model over the training set'

    def init_class_means(self, num_classes: int, dim: int, feat_type: str,
                         dist: str) -> None:
        """Validate ``feat_type`` / ``dist`` and register the buffers.

        Args:
            num_classes: C (foreground classes for a box classifier).
            dim: D, the classifier input.
            feat_type: ``'un'``, ``'l2n'`` or ``'cl2n'``.
            dist: ``'l2'`` or ``'cos'``.
        """
        self.feat_type = check_choice('feat_type', feat_type, NCM_FEAT_TYPES)
        self.dist = check_choice('dist', dist, NCM_DISTS)
        self.register_buffer('centroids',
                             torch.zeros(int(num_classes), int(dim)))
        self.register_buffer('global_mean', torch.zeros(int(dim)))
        self.register_buffer('ncm_ready', torch.zeros((), dtype=torch.long))

    @property
    def ready(self) -> bool:
        """Whether the class means have been computed."""
        return bool(int(self.ncm_ready))

    @torch.no_grad()
    def store_class_means(self, centroids: Tensor,
                          global_mean: Tensor) -> None:
        """Keep (C, D) ``centroids`` and the (D,) ``global_mean``; the
        module is ready from now on."""
        self.centroids.copy_(centroids.float().to(self.centroids.device))
        self.global_mean.copy_(global_mean.float().to(self.global_mean.device))
        self.ncm_ready.fill_(1)

    def ncm_scores(self, feats: Tensor) -> Tensor:
        """:func:`ncm_logits` of ``feats`` (N, D) or (N, D, H, W) against
        the stored means: (N, C) or (N, C, H, W), larger is closer.

        Raises:
            RuntimeError: before the class means are computed.
        """
        if not self.ready:
            raise RuntimeError(
                f'{type(self).__name__}: the class means are not computed. '
                "Add custom_hooks=[dict(type='NCMCentroidHook')] to the "
                f'config (it runs {self.ncm_source} before testing) or test a '
                'checkpoint that contains them.')
        return ncm_logits(feats, self.centroids, self.global_mean,
                          self.feat_type, self.dist)
