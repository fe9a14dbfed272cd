"""mmengine-level pieces shared by every toolbox, registered in mmengine's
root registries (so the mmpretrain, mmseg and mmdet scopes all find them).

Importing this package also makes mmengine load checkpoints with
``weights_only=True`` plus an allowlist (:mod:`.checkpoint`).
"""
from .checkpoint import (MMENGINE_SAFE_GLOBALS, UnsafeCheckpointError,
                         install_safe_checkpoint_loading, safe_torch_load)
from .dist import CPUDistributedDataParallel, setup_distributed
from .hooks import Stage2FreezeHook, collect_stage2_parameter_names
from .samplers import (ClassBalancedSampler, ProgressivelyBalancedSampler,
                       SquareRootSampler)

install_safe_checkpoint_loading()

__all__ = [
    'MMENGINE_SAFE_GLOBALS', 'UnsafeCheckpointError',
    'install_safe_checkpoint_loading', 'safe_torch_load',
    'CPUDistributedDataParallel', 'setup_distributed', 'Stage2FreezeHook',
    'collect_stage2_parameter_names', 'ClassBalancedSampler',
    'SquareRootSampler', 'ProgressivelyBalancedSampler'
]
