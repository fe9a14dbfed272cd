"""Framework-free long-tail math (plain torch; no OpenMMLab import).

* :mod:`.stats` - class statistics JSON, many/medium/few, head/body/tail and
  rare/common/frequent splits (ADE20K's Table-16 ratios ship as data);
* :mod:`.disalign` - DisAlign calibration (Eq. 4-6);
* :mod:`.grw` - generalized re-weighting loss (DisAlign Eq. 8-11);
* :mod:`.reduction` - the reductions of GRW and CDT, their common
  ``nn.Module`` base and the one shared toolbox wrapper;
* :mod:`.causal_norm` - causal-norm classifier and TDE inference;
* :mod:`.decoupling` - tau-norm, LWS, cRT, NCM, cosine classifier;
* :mod:`.cdt` - class-dependent temperatures and post-hoc prior rules;
* :mod:`.sampling` - instance/class/square-root/progressive sampling;
* :mod:`.checks` - input validation with clear errors.
"""
from .causal_norm import (CausalNormClassifier, background_exempt_log_probs,
                          causal_norm_logits, suggest_alpha, tde_logits)
from .cdt import (POSTHOC_RULES, CDTCrossEntropy, PosthocAdjust, PosthocMixin,
                  apply_posthoc, build_posthoc, cdt_logits, cdt_temperatures,
                  logit_adjust, nc_tau_adjust, parse_posthoc, posthoc_adjust)
from .checks import as_counts, check_choice, check_range
from .decoupling import (NCM_BUFFERS, ClassMeansMixin, CosineClassifier,
                         LearnableWeightScaling, class_centroids, ncm_logits,
                         reinit_classifier, tau_norm_logits, tau_normalize)
from .disalign import DisAlignCalibration, disalign_calibrate
from .grw import GRWCrossEntropy, grw_class_weights, grw_cross_entropy
from .reduction import (LongTailCrossEntropy, reduced_cross_entropy,
                        toolbox_loss, toolbox_losses, with_defaults)
from .sampling import (class_aware_indices, class_sampling_probs,
                       class_weighted_indices, progressive_class_probs)
from .stats import (ClassStats, ade20k_class_stats, compute_splits,
                    load_class_stats, lvis_splits, ratio_splits,
                    resolve_counts, shot_splits)

__all__ = [
    'CausalNormClassifier', 'background_exempt_log_probs',
    'causal_norm_logits', 'suggest_alpha', 'tde_logits', 'CDTCrossEntropy',
    'cdt_logits', 'cdt_temperatures', 'logit_adjust', 'nc_tau_adjust',
    'POSTHOC_RULES', 'PosthocAdjust', 'PosthocMixin', 'apply_posthoc',
    'build_posthoc', 'parse_posthoc', 'posthoc_adjust', 'as_counts',
    'check_choice', 'check_range', 'CosineClassifier',
    'LearnableWeightScaling', 'class_centroids', 'ClassMeansMixin',
    'NCM_BUFFERS', 'ncm_logits', 'reinit_classifier', 'tau_norm_logits',
    'tau_normalize', 'DisAlignCalibration', 'disalign_calibrate',
    'GRWCrossEntropy', 'grw_class_weights', 'grw_cross_entropy',
    'LongTailCrossEntropy', 'reduced_cross_entropy', 'toolbox_loss',
    'toolbox_losses', 'with_defaults', 'class_aware_indices',
    'class_sampling_probs', 'class_weighted_indices',
    'progressive_class_probs', 'ClassStats', 'ade20k_class_stats',
    'compute_splits', 'load_class_stats', 'lvis_splits', 'ratio_splits',
    'resolve_counts', 'shot_splits'
]
