"""mmengine-level pieces shared by every toolbox, registered in mmengine's
root registries (so the mmpretrain, mmseg and mmdet scopes all find them).

Importing this package also makes mmengine load checkpoints of every scheme
with ``weights_only=True`` plus an allowlist (:mod:`.checkpoint`).
"""
import warnings

# mmengine's package lookup (`mmpretrain::` / `mmseg::` / `mmdet::` base
# configs, run by lt_mm's load_config) imports pkg_resources, which
# setuptools >= 80 flags as deprecated on every run; only that message is
# silenced.
warnings.filterwarnings(
    'ignore',
    message=r'pkg_resources is deprecated as an API',
    category=UserWarning)

from .checkpoint import (MMENGINE_SAFE_GLOBALS, CheckpointReadError,
                         UnsafeCheckpointError,
                         install_safe_checkpoint_loading,
                         load_checkpoint_safely, safe_torch_load)
from .counts import (fill_class_counts, register_count_reader,
                     training_class_stats)
from .dist import CPUDistributedDataParallel, setup_distributed
from .hooks import (ResumeRNGHook, Stage2FreezeHook, Stage2GuardError,
                    collect_stage2_parameter_names)
from .sample_classes import get_sample_classes
from .samplers import (ClassBalancedSampler, ProgressivelyBalancedSampler,
                       SquareRootSampler)
from .schedule import ResumeScheduleHook

install_safe_checkpoint_loading()

__all__ = [
    'MMENGINE_SAFE_GLOBALS', 'UnsafeCheckpointError', 'CheckpointReadError',
    'install_safe_checkpoint_loading', 'load_checkpoint_safely',
    'safe_torch_load', 'CPUDistributedDataParallel', 'setup_distributed',
    'Stage2FreezeHook', 'Stage2GuardError', 'ResumeRNGHook',
    'ResumeScheduleHook', 'collect_stage2_parameter_names',
    'ClassBalancedSampler', 'SquareRootSampler',
    'ProgressivelyBalancedSampler', 'fill_class_counts',
    'register_count_reader', 'training_class_stats', 'get_sample_classes'
]
