"""Stage-2 (decoupled) training: freeze everything but what the method learns.

Used by every two-stage method of every toolbox: DisAlign (α, β, σ), LWS
(scales), cRT (the re-initialised classifier) and the detector / segmentor
variants. Registered in mmengine's root ``HOOKS`` so that every scope finds
it.
"""
from __future__ import annotations

import fnmatch
import os.path as osp
from typing import Iterable, List, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def collect_stage2_parameter_names(model: nn.Module) -> List[str]:
    """Names of the parameters lt_mm modules declare trainable in stage 2.

    Any submodule may implement ``stage2_parameter_names() -> list[str]``
    (names relative to itself); they are prefixed with the submodule path.
    """
    names: List[str] = []
    for prefix, module in model.named_modules():
        fn = getattr(module, 'stage2_parameter_names', None)
        if callable(fn):
            for n in fn():
                names.append(f'{prefix}.{n}' if prefix else n)
    return names


def _matches(name: str, patterns: Sequence[str]) -> bool:
    for p in patterns:
        if name == p or name.startswith(p + '.') or \
                fnmatch.fnmatchcase(name, p):
            return True
    return False


@HOOKS.register_module()
class Stage2FreezeHook(Hook):
    """Freeze all parameters except the stage-2 ones, before training.

    Args:
        trainable (list[str], optional): parameter names, module prefixes
            (``'head.fc'`` selects everything below it) or glob patterns
            (``'*.logit_scale'``). ``None`` (default) uses what the lt_mm
            modules in the model declare (``stage2_parameter_names``).
        freeze_bn_stats (bool): keep the running statistics of frozen
            BatchNorm layers fixed (eval mode during training). The
            reference DisAlign / cRT code let them update; default True so
            that a frozen stage-1 model really stays unchanged.
        allow_backbone (bool): permit backbone parameters to train. Default
            False: a stage-2 run that trains the backbone is almost always a
            config mistake.
        require_load_from (bool): stage 2 starts from a stage-1 checkpoint,
            so ``load_from`` (or ``--resume``) must be set.

    Raises before training when nothing would train, when a backbone
    parameter would train, when no stage-1 checkpoint is given, and when the
    work dir is the stage-1 checkpoint's folder (stage 2 would overwrite
    stage-1 checkpoints).
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 trainable: Optional[Iterable[str]] = None,
                 freeze_bn_stats: bool = True,
                 allow_backbone: bool = False,
                 require_load_from: bool = True) -> None:
        self.trainable = list(trainable) if trainable is not None else None
        self.freeze_bn_stats = freeze_bn_stats
        self.allow_backbone = allow_backbone
        self.require_load_from = require_load_from
        self._frozen_bn: List[nn.Module] = []

    # ------------------------------------------------------------------
    def _check_checkpoint(self, runner) -> None:
        load_from = runner._load_from
        if self.require_load_from and not load_from and not runner._resume:
            raise ValueError(
                'Stage2FreezeHook: this is a stage-2 config but load_from is '
                'not set. Point load_from at the stage-1 checkpoint, e.g. '
                "--cfg-options load_from=work_dirs/stage1/epoch_90.pth.")
        if load_from and osp.isfile(load_from) and osp.isdir(
                runner.work_dir) and osp.samefile(
                    osp.dirname(osp.abspath(load_from)), runner.work_dir) \
                and not runner._resume:
            raise ValueError(
                f'Stage2FreezeHook: work_dir {runner.work_dir!r} is the '
                f'folder of the stage-1 checkpoint {load_from!r}; stage 2 '
                'would overwrite stage-1 checkpoints. Use another --work-dir.')

    def before_run(self, runner) -> None:
        self._check_checkpoint(runner)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        patterns = self.trainable
        if patterns is None:
            patterns = collect_stage2_parameter_names(model)
        if not patterns:
            raise ValueError(
                'Stage2FreezeHook: no trainable parameters given and the '
                'model has no lt_mm stage-2 module (DisAlign, LWS, cRT ...). '
                'Set trainable=[...] or use a stage-2 head.')
        trained, frozen = [], 0
        for name, p in model.named_parameters():
            if _matches(name, patterns):
                p.requires_grad_(True)
                trained.append((name, p.numel()))
            else:
                p.requires_grad_(False)
                frozen += p.numel()
        if not trained:
            raise ValueError(
                f'Stage2FreezeHook: the patterns {patterns} match no '
                'parameter of the model, so nothing would train.')
        backbone = [n for n, _ in trained if n.startswith('backbone.')]
        if backbone and not self.allow_backbone:
            raise ValueError(
                f'Stage2FreezeHook: {len(backbone)} backbone parameters '
                f'would train (e.g. {backbone[0]}); stage 2 keeps the '
                'backbone frozen. Narrow `trainable` or set '
                'allow_backbone=True.')
        if is_model_wrapper(runner.model) and not getattr(
                runner.model, 'find_unused_parameters', True):
            raise ValueError(
                'Stage2FreezeHook under DDP needs find_unused_parameters=True '
                '(set it in the config) because frozen parameters get no '
                'gradient.')
        self._frozen_bn = []
        if self.freeze_bn_stats:
            for m in model.modules():
                if isinstance(m, _BatchNorm) and not any(
                        p.requires_grad for p in m.parameters()):
                    self._frozen_bn.append(m)
        n_train = sum(n for _, n in trained)
        runner.logger.info(
            f'Stage2FreezeHook: training {len(trained)} tensors '
            f'({n_train} parameters), frozen {frozen} parameters, '
            f'{len(self._frozen_bn)} BatchNorm layers with frozen stats:\n  ' +
            '\n  '.join(f'{n} ({k})' for n, k in trained))

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        # the train loop calls model.train() at each epoch start; put the
        # frozen BN layers back in eval mode so their statistics stay fixed
        for m in self._frozen_bn:
            if m.training:
                m.eval()
