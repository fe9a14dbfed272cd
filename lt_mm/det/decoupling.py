"""Decoupled and post-hoc box classifiers (``fc_cls``) for mmdet.

The classification cells of Decoupling (Kang et al., "Decoupling
Representation and Classifier for Long-Tailed Recognition", ICLR 2020,
Sec. 4) and of the post-hoc prior rules (CDT, Ye et al., Eq. 5; logit
adjustment) for two-stage box heads. Like
:mod:`lt_mm.det.classifiers`, every layer is built by mmdet's ``BBoxHead``
from ``cls_predictor_cfg`` with ``in_features`` = D (the box-head feature)
and ``out_features`` = C + 1 (background LAST), keeps the stock keys
``fc_cls.weight`` / ``fc_cls.bias`` (a stock mmdet checkpoint loads as
stage 1) and never changes the background column's *probability*:

* :class:`LWSLinear` -- LWS, Eq. 4: learned scales of the C foreground
  weight rows (``fc_cls.lws.scales``, stage 2), background scale fixed 1;
* :class:`CRTLinear` -- cRT: ``fc_cls`` re-initialised when a stage-1
  checkpoint is loaded, re-trained on the frozen detector (stage 2);
* :class:`PosthocLinear` -- CDT's ``z_c / N_c ** tau`` rule (Eq. 5) or
  logit adjustment ``z_c - tau * log N_c`` on the foreground at test time;
* :class:`NCMLinear` -- nearest class mean ranking of the foreground with
  the stock background probability (class means from
  :class:`lt_mm.det.hooks.NCMCentroidHook`).

Kept background probability
---------------------------
mmdet's ``BBoxHead.predict_by_feat`` applies ``softmax`` over the C + 1
columns and keeps the (box, class) pairs whose foreground probability
exceeds ``score_thr`` (1e-4 on LVIS), which are then ranked across images
by LVIS AP. A rule that re-ranks the foreground (prior adjustment, NCM)
should therefore not move the background probability ``p_bg``: adjusting
the foreground *logits* before mmdet's softmax changes ``p_bg`` too, by an
amount that depends on the arbitrary scale of the counts (images,
instances or frequencies: ``z_c - tau * log(k N_c)`` shifts all foreground
logits by ``-tau log k`` against the background) -- with LVIS image counts
(up to ~10^4) and ``tau = 1`` it divides every foreground probability by
about ``sum_c p_c / N_c`` and drops most detections under the score
threshold. The layers here return instead (as TDE Eq. 9, background
exemption, :func:`lt_mm.core.causal_norm.background_exempt_log_probs`,
exact in log space, no epsilon)::

    P_bg = p_bg = softmax(z)_bg                       (stock classifier)
    P_c  = (1 - p_bg) * softmax(s_fg)_c               (c < C)

with ``s_fg`` the method's foreground scores; the output is ``log P``, so
mmdet's softmax returns exactly ``P`` (see
:mod:`lt_mm.det.bbox_heads` for Cascade's stage averaging). For logit
adjustment this is "divide the foreground probabilities by ``N_c ** tau``
and renormalise them within the foreground mass ``1 - p_bg``", invariant
to the scale of the counts. :class:`PosthocLinear` keeps the
before-softmax variant as an option (``keep_background_prob=False``).
Either way a per-class factor ``1 / N_c ** tau`` does not reorder one
class's detections: LVIS AP (per class, ranked across images) moves only
through the per-box normaliser, the score threshold and the cap of 300
detections per image -- sweep tau on val (:mod:`lt_mm.det.posthoc_sweep`).
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.logging import MMLogger
from torch import Tensor

from lt_mm.core._utils import OptionalBuffersMixin
from lt_mm.core.causal_norm import background_exempt_log_probs
from lt_mm.core.cdt import PosthocAdjust, PosthocMixin, build_posthoc
from lt_mm.core.checks import check_range
from lt_mm.core.decoupling import (ClassMeansMixin, LearnableWeightScaling,
                                   centroids_from_sums, class_feature_sums,
                                   reinit_classifier_from_stage1)
from .classifiers import _check_out_features
from .counts import resolve_det_counts


def keep_background_log_probs(logits: Tensor, fg_scores: Tensor) -> Tensor:
    """Re-rank the foreground, keep the background probability (log P).

    ``P_bg = softmax(logits)_bg``, ``P_c = (1 - P_bg) * softmax(fg_scores)_c``
    -- TDE's background exemption (Tang et al., NeurIPS 2020, Eq. 9) with
    any foreground scores, exact in log space
    (:func:`lt_mm.core.causal_norm.background_exempt_log_probs`).

    Args:
        logits: (N, C + 1) stock logits, background last.
        fg_scores: (N, C) foreground scores of the method.

    Returns:
        Tensor: (N, C + 1) ``log P`` (rows ``logsumexp`` to 0).
    """
    if fg_scores.dim() != 2 or logits.dim() != 2 or \
            fg_scores.shape != (logits.shape[0], logits.shape[1] - 1):
        raise ValueError(
            f'fg_scores {tuple(fg_scores.shape)} must be (N, C) for logits '
            f'{tuple(logits.shape)} (N, C + 1).')
    padded = torch.cat([fg_scores.to(logits.dtype), logits[:, -1:]], dim=1)
    return background_exempt_log_probs(logits, padded)


@MODELS.register_module()
class LWSLinear(nn.Linear):
    """Learnable weight scaling for box heads (Decoupling Eq. 4).

    ``w_j_tilde = f_j * w_j`` for the C foreground rows of the frozen
    stage-1 ``fc_cls`` (keys ``weight`` (C + 1, D), ``bias`` (C + 1,)); the
    background row keeps scale 1 (not a parameter)::

        y_j = f_j * <w_j, x> + b_j        j < C  (scale_bias=False)
        y_j = f_j * (<w_j, x> + b_j)      j < C  (scale_bias=True)
        y_C = <w_C, x> + b_C              (background)

    Eq. 4 scales the weights; the default (``scale_bias=False``) leaves the
    biases as they are, the detection variant of
    :class:`lt_mm.core.decoupling.LearnableWeightScaling`; ``True`` is the
    reference classification code (bias scaled too). ``f`` =
    ``lws.scales`` (C,), init ones (the layer equals stage 1), is the only
    stage-2 parameter (Decoupling: class-balanced sampling).

    Args:
        in_features: D, set by the box head.
        out_features: C + 1, set by the box head.
        bias: the linear bias (mmdet's ``fc_cls`` has one).
        scale_bias: scale the foreground biases too.

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 scale_bias: bool = False) -> None:
        out_features = _check_out_features(out_features, 'LWSLinear')
        super().__init__(in_features, out_features, bias=bias)
        self.lws = LearnableWeightScaling(
            out_features - 1, scale_bias=bool(scale_bias))

    def forward(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, C + 1) logits with scaled foreground rows."""
        z = F.linear(x, self.weight)
        num_fg = self.out_features - 1
        b = self.bias
        fg = self.lws(z[:, :num_fg], None if b is None else b[:num_fg])
        bg = z[:, num_fg:] if b is None else z[:, num_fg:] + b[num_fg:]
        return torch.cat([fg, bg], dim=1)

    def stage2_parameter_names(self) -> List[str]:
        """Only the foreground scales ``f`` train (Eq. 4)."""
        return ['lws.scales']


@MODELS.register_module()
class CRTLinear(nn.Linear):
    """Classifier re-training, cRT, for box heads (Decoupling Sec. 4).

    The stock ``fc_cls`` (``weight`` (C + 1, D), ``bias``) plus a persistent
    buffer ``crt_retrained`` (0 or 1), as
    :class:`lt_mm.cls.heads.CRTClsHead`:

    * loading a checkpoint whose ``crt_retrained`` is missing or 0 (a
      stage-1 / stock mmdet checkpoint) re-initialises the layer (PyTorch's
      default ``nn.Linear`` init, the reference cRT choice; not mmdet's
      Normal(0, 0.01)) instead of copying the stage-1 classifier, in
      ``_load_from_state_dict`` because mmengine runs ``init_weights``
      before ``load_from`` (:func:`lt_mm.core.decoupling.
      reinit_classifier_from_stage1`);
    * the first training forward sets ``crt_retrained = 1``, so stage-2
      checkpoints (resume, ``tools/test.py``) load the re-trained layer.

    Stage 2 trains ``weight`` and ``bias`` on the frozen detector (box
    regression, RPN, mask head frozen) with softmax cross-entropy over the
    C + 1 columns of the sampled RoIs and class-balanced image sampling
    (``ClassBalancedSampler``: instance classes of each image).

    Args:
        in_features: D.
        out_features: C + 1.
        bias: the linear bias.

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True) -> None:
        out_features = _check_out_features(out_features, 'CRTLinear')
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer(
            'crt_retrained',
            torch.zeros((), dtype=torch.long),
            persistent=True)

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        """Load; a stage-1 classifier is replaced by a fresh one."""
        if reinit_classifier_from_stage1(self, state_dict, prefix,
                                         prefix + 'crt_retrained'):
            MMLogger.get_current_instance().info(
                f'CRTLinear ({prefix or "fc_cls"}): the checkpoint has no '
                're-trained classifier (stage-1 weights): the layer is '
                're-initialised for cRT.')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, C + 1); a training forward marks the layer as
        re-trained."""
        if self.training and int(self.crt_retrained) == 0:
            self.crt_retrained.fill_(1)
        return super().forward(x)

    def stage2_parameter_names(self) -> List[str]:
        """The re-initialised classifier: ``weight`` and ``bias``."""
        return ['weight', 'bias'] if self.bias is not None else ['weight']


@MODELS.register_module()
class PosthocLinear(PosthocMixin, nn.Linear):
    """Stock box classifier with a post-hoc prior rule at test time.

    ``train()``: the plain ``nn.Linear`` (stock keys; stage 1 or a stock
    checkpoint). ``eval()`` with ``posthoc=dict(type, tau, <counts>)``
    (the option format of every lt_mm toolbox,
    :func:`lt_mm.core.cdt.parse_posthoc`), on the C foreground columns of
    ``z = W x + b`` (:func:`lt_mm.core.cdt.posthoc_adjust`,
    ``background=True``):

    * ``'nc_tau'``: CDT Eq. 5, ``s_c = z_c / N_c ** tau``;
    * ``'logit_adjust'``: ``s_c = z_c - tau * log N_c`` (= dividing the
      foreground probabilities by ``N_c ** tau``).

    With ``keep_background_prob=True`` (default) the output is
    ``log P`` with ``P_bg = softmax(z)_bg`` and ``P_c = (1 - P_bg) *
    softmax(s)_c`` (see the module docstring: mmdet's softmax and score
    threshold follow, and adjusting before that softmax would make the
    background probability depend on the scale of the counts). ``False``
    returns ``[s, z_bg]`` for mmdet's softmax over C + 1 (background
    logit untouched, its probability not).

    The counts ``N_c`` (C foreground classes; LVIS ``image_count``, the
    quantity of the r/c/f groups) are resolved at build time
    (:func:`lt_mm.det.counts.resolve_det_counts`; a ``posthoc`` without a
    count source is filled from ``train_dataloader.dataset`` by
    :func:`lt_mm.engine.counts.fill_class_counts` in ``tools/train.py`` /
    ``tools/test.py``) and kept in the persistent float64 buffer
    ``posthoc.counts`` (:class:`lt_mm.core.cdt.PosthocAdjust`; saved in
    checkpoints, a checkpoint without it loads and keeps the configured
    counts).

    Args:
        in_features: D.
        out_features: C + 1.
        bias: the linear bias.
        posthoc: ``dict(type='nc_tau'|'logit_adjust', tau=1.0,
            counts=[...] | stats_file=PATH | train_ann_file=PATH)``, or
            None (a plain linear layer).
        keep_background_prob: see above.

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    posthoc_background = True

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 posthoc: Optional[dict] = None,
                 keep_background_prob: bool = True) -> None:
        out_features = _check_out_features(out_features, 'PosthocLinear')
        super().__init__(in_features, out_features, bias=bias)
        self.keep_background_prob = bool(keep_background_prob)

        def read_counts(counts=None, stats_file=None, train_ann_file=None):
            # checked on the CPU whatever the default device (e.g. 'meta')
            with torch.device('cpu'):
                return resolve_det_counts(
                    counts,
                    stats_file,
                    train_ann_file,
                    num_classes=out_features - 1,
                    unit='images',
                    what='PosthocLinear')

        # core's PosthocAdjust (buffer posthoc.counts, in the checkpoint)
        self.posthoc: Optional[PosthocAdjust] = build_posthoc(
            posthoc, read_counts, 'PosthocLinear', background=True)

    def apply_posthoc(self,
                      logits: Tensor,
                      kind: Optional[str] = None,
                      tau: Optional[float] = None,
                      counts: Optional[Tensor] = None) -> Tensor:
        """The test rule on stock logits ``W x + b`` (background last):
        (N, C + 1) -> (N, C + 1). :class:`PosthocMixin`'s rule (``kind``,
        ``tau``, ``counts`` override the configured ones, e.g. in a sweep;
        no rule: ``logits``), then, with ``keep_background_prob``, the stock
        background probability in log space."""
        if self.posthoc is None and kind is None:
            return logits
        adjusted = super().apply_posthoc(logits, kind, tau, counts)
        if not self.keep_background_prob:
            return adjusted
        return keep_background_log_probs(logits, adjusted[:, :-1])

    def forward(self, x: Tensor) -> Tensor:
        """Plain logits (train) or the adjusted test output (eval)."""
        logits = super().forward(x)
        if self.training:
            return logits
        return self.apply_posthoc(logits)

    def extra_repr(self) -> str:
        return (super().extra_repr() +
                f', keep_background_prob={self.keep_background_prob}')


@MODELS.register_module()
class NCMLinear(ClassMeansMixin, OptionalBuffersMixin, nn.Linear):
    """Nearest-class-mean ranking for box heads (Decoupling Sec. 4, NCM).

    ``train()``: the stock ``nn.Linear``. ``eval()``: the background
    probability of the stock classifier is kept and the foreground is
    ranked by the NCM scores (:func:`lt_mm.core.decoupling.ncm_logits`:
    ``-||x_hat - c_j||^2`` or ``cos(x_hat, c_j)``, ``x_hat`` the
    ``feat_type`` transform of the box-head feature ``x``), in log space
    (:func:`keep_background_log_probs`)::

        P_bg = softmax(W x + b)_bg
        P_c  = (1 - P_bg) * softmax(scale * ncm(x))_c     (c < C)

    Why not NCM over C + 1 classes: "background" is not a class with a
    compact mean (every RoI that is not an object), and NCM gives no
    objectness; the stock classifier's ``P_bg`` keeps mmdet's score
    threshold and the cross-image ranking of LVIS AP meaningful. NCM
    scores are distances, not logits: ``scale`` is the softmax temperature
    that turns them into the foreground distribution (it changes the
    scores LVIS AP ranks across images, not the per-box argmax); tune it on
    val like tau-norm's tau.

    Buffers (persistent, filled by :class:`lt_mm.det.hooks.
    NCMCentroidHook` or :meth:`set_centroids`; a checkpoint without them
    loads): ``centroids`` (C, D), ``global_mean`` (D,), ``ncm_ready``.

    Args:
        in_features: D.
        out_features: C + 1.
        bias: the linear bias.
        feat_type: ``'un'``, ``'l2n'`` or ``'cl2n'`` (centred by the
            training mean, L2-normalised; Decoupling's best).
        dist: ``'l2'`` or ``'cos'``.
        scale: ``> 0``, multiplies the NCM scores before the foreground
            softmax.

    Shapes: ``x`` (N, D) -> (N, C + 1).
    """

    ncm_source = 'the detector over the training boxes'

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 feat_type: str = 'cl2n',
                 dist: str = 'l2',
                 scale: float = 1.0) -> None:
        out_features = _check_out_features(out_features, 'NCMLinear')
        super().__init__(in_features, out_features, bias=bias)
        self.init_class_means(out_features - 1, in_features, feat_type, dist)
        self.scale = check_range(
            'scale',
            scale,
            0.0,
            low_inclusive=False,
            hint='the NCM softmax temperature must be positive.')

    @property
    def num_fg(self) -> int:
        """C, the foreground classes."""
        return self.out_features - 1

    @torch.no_grad()
    def set_centroids(self,
                      feats: Tensor,
                      labels: Tensor,
                      chunk: int = 65536) -> None:
        """Class means of training box features (Decoupling Sec. 4).

        Accumulated in float64 chunks
        (:func:`lt_mm.core.decoupling.class_feature_sums`), so that the
        ~1.3M LVIS v1 training instances need no transformed copy.

        Args:
            feats: (M, D) box-head features of training instances.
            labels: (M,) their classes in ``[0, C)``.
            chunk: rows per accumulation step.
        """
        if feats.dim() != 2 or feats.shape[1] != self.in_features or \
                labels.reshape(-1).numel() != feats.shape[0]:
            raise ValueError(
                f'feats {tuple(feats.shape)} must be (M, {self.in_features}) '
                f'with one label each (labels {tuple(labels.shape)}).')
        labels = labels.reshape(-1)
        mean = feats.double().sum(0) / max(feats.shape[0], 1)
        sums = counts = None
        for i in range(0, feats.shape[0], chunk):
            s, n = class_feature_sums(feats[i:i + chunk], labels[i:i + chunk],
                                      self.num_fg, self.feat_type, mean)
            sums = s if sums is None else sums + s
            counts = n if counts is None else counts + n
        if sums is None:
            raise ValueError('NCMLinear.set_centroids: no training feature.')
        self.store_class_means(centroids_from_sums(sums, counts), mean)

    def fg_scores(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, C) ``scale * ncm(x)`` (larger = closer)."""
        return self.scale * self.ncm_scores(x)

    def forward(self, x: Tensor) -> Tensor:
        """Plain logits (train) or ``log P`` as above (eval)."""
        logits = super().forward(x)
        if self.training:
            return logits
        return keep_background_log_probs(logits, self.fg_scores(x))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', feat_type={self.feat_type}, '
                f'dist={self.dist}, scale={self.scale}')
