"""Stage-2 (decoupled) training: freeze everything but what the method learns.

Used by every two-stage method of every toolbox: DisAlign (α, β, σ), LWS
(scales), cRT (the re-initialised classifier) and the detector / segmentor
variants. Registered in mmengine's root ``HOOKS`` so that every scope finds
it.

How stage 2 protects stage 1 (the rules, checked before the first training
iteration; :func:`check_stage2_work_dir` also runs in ``tools/train.py``
before the Runner creates anything in the work dir):

* a fresh stage 2 needs ``load_from`` (the stage-1 checkpoint);
* the work dir, and the folder the checkpoints go to when
  ``default_hooks.checkpoint.out_dir`` is set (mmengine saves them to
  ``<out_dir>/<basename of the work dir>``), must not be the folder of
  ``load_from`` and must not hold a checkpoint that is not a stage-2
  checkpoint (a checkpoint is "stage 2" when its ``meta`` carries
  ``lt_mm_stage2``, written by this hook, or its saved config uses
  ``Stage2FreezeHook``), and the work dir's ``last_checkpoint`` must not
  name one: stage 1's checkpoints are never resumed from, overwritten or
  deleted by ``max_keep_ckpts``;
* a resumed stage 2 resumes only from a stage-2 checkpoint of the same
  method (its state dict holds every stage-2 parameter with the right
  shape); with no checkpoint to resume from it refuses (``tools/train.py
  --resume`` then starts from ``load_from`` instead);
* after the checkpoint is read, every parameter that stage 2 keeps frozen
  (and the BatchNorm statistics) must be in it with the model's shape
  (``strict_stage1=True``; ``False`` turns the refusal into a warning).
  The stage-2 parameters the checkpoint lacks are expected: they are
  reported in one info line instead of mmengine's mismatch warning.
"""
from __future__ import annotations

import fnmatch
import logging
import os.path as osp
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .checkpoint import (checkpoint_is_complete, list_checkpoints,
                         read_checkpoint_meta)

#: ``meta`` key of the checkpoints a stage-2 run writes
STAGE2_META_KEY = 'lt_mm_stage2'


class Stage2GuardError(ValueError):
    """A stage-2 run would harm stage 1 or train on the wrong weights."""


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


def _is_stage2_hook(h: Any) -> bool:
    t = h.get('type') if isinstance(h, dict) else type(h)
    return t in ('Stage2FreezeHook', 'mmengine.Stage2FreezeHook') or (
        isinstance(t, type) and issubclass(t, Stage2FreezeHook))


def is_stage2_config(cfg: Any) -> bool:
    """Whether ``cfg.custom_hooks`` holds a :class:`Stage2FreezeHook`."""
    return any(_is_stage2_hook(h) for h in cfg.get('custom_hooks', None) or [])


def stage2_hook_cfgs(cfg: Any) -> List[dict]:
    """The :class:`Stage2FreezeHook` entries of ``cfg.custom_hooks`` as
    dicts of their arguments (a built hook: its attributes)."""
    out = []
    for h in cfg.get('custom_hooks', None) or []:
        if _is_stage2_hook(h):
            out.append(
                h if isinstance(h, dict) else dict(
                    require_load_from=h.require_load_from))
    return out


def is_stage2_checkpoint_meta(meta: Dict[str, Any]) -> bool:
    """Whether a checkpoint's ``meta`` shows a stage-2 run wrote it."""
    if meta.get(STAGE2_META_KEY):
        return True
    return 'Stage2FreezeHook' in str(meta.get('cfg', ''))


def _stage2_meta_or_none(path: str) -> Optional[bool]:
    """True / False for a complete checkpoint, None when unreadable."""
    if not checkpoint_is_complete(path):
        return None
    try:
        return is_stage2_checkpoint_meta(read_checkpoint_meta(path))
    except Exception:  # unreadable: the resume logic reports it
        return None


def _same_dir(a: str, b: str) -> bool:
    try:
        return osp.samefile(a, b)
    except OSError:
        return osp.abspath(a) == osp.abspath(b)


def checkpoint_save_dir(work_dir: str,
                        out_dir: Optional[Any] = None,
                        backend_args: Optional[dict] = None,
                        file_client_args: Optional[dict] = None) -> str:
    """The folder mmengine's ``CheckpointHook`` saves checkpoints to.

    Mirrors ``CheckpointHook.before_train`` (mmengine 0.10): ``out_dir``
    defaults to the Runner's work dir (``osp.abspath(work_dir)``); any
    other ``out_dir`` becomes ``join_path(out_dir, basename(work_dir))``
    with the file backend of ``out_dir``.

    Args:
        work_dir: the run's work dir (as in the config).
        out_dir: ``default_hooks.checkpoint.out_dir``.
        backend_args / file_client_args: the hook's file backend settings.
    """
    work_dir = osp.abspath(work_dir)  # what Runner.work_dir holds
    if out_dir is None:
        return work_dir
    if out_dir == work_dir:
        return work_dir
    if file_client_args is not None:
        from mmengine.fileio import FileClient
        backend: Any = FileClient.infer_client(file_client_args, out_dir)
    else:
        from mmengine.fileio import get_file_backend
        backend = get_file_backend(out_dir, backend_args=backend_args)
    return str(
        backend.join_path(out_dir, osp.basename(work_dir.rstrip(osp.sep))))


def _is_local(path: str) -> bool:
    return '://' not in str(path)


def _in_folder(path: str, folder: str) -> bool:
    """Whether the checkpoint ``path`` lies directly in ``folder``."""
    if _is_local(path) and _is_local(folder):
        return osp.isfile(path) and osp.isdir(folder) and _same_dir(
            osp.dirname(osp.abspath(path)), folder)
    return str(path).rsplit('/', 1)[0].rstrip('/') == str(folder).rstrip('/')


def _check_no_stage1_checkpoint(folder: str, what: str, resume: bool,
                                fix: str) -> None:
    """Refuse when the local ``folder`` holds a non-stage-2 checkpoint."""
    if not osp.isdir(folder):
        return
    for path in reversed(list_checkpoints(folder)):
        if _stage2_meta_or_none(path) is False:
            verb = 'resume from it, ' if resume else ''
            raise Stage2GuardError(
                f'Stage2FreezeHook: {what} {folder!r} holds {path!r}, which '
                'is not a stage-2 checkpoint (its config has no '
                'Stage2FreezeHook: stage 1?). Stage 2 there would '
                f'{verb}overwrite or delete (max_keep_ckpts) stage-1 '
                f'checkpoints. {fix}')


def check_stage2_work_dir(work_dir: str,
                          load_from: Optional[str],
                          resume: bool,
                          resume_from: Optional[str] = None,
                          out_dir: Optional[Any] = None,
                          backend_args: Optional[dict] = None,
                          file_client_args: Optional[dict] = None) -> None:
    """Refuse a stage-2 run that would touch stage-1 checkpoints.

    Two folders are checked: the work dir (logs, ``last_checkpoint`` and,
    by default, the checkpoints) and the folder the checkpoints go to
    (:func:`checkpoint_save_dir`: ``<out_dir>/<basename(work_dir)>`` when
    ``default_hooks.checkpoint.out_dir`` is set). Neither may be the folder
    of ``load_from`` (fresh run) nor hold a checkpoint that is not a
    stage-2 checkpoint, and the work dir's ``last_checkpoint`` may not name
    one (stage 2 would overwrite stage 1's resume pointer).

    Args:
        work_dir: the run's work dir (need not exist).
        load_from: the configured checkpoint (stage 1 for a fresh run).
        resume: whether the run resumes.
        resume_from: the checkpoint it resumes from (when resuming).
        out_dir: ``default_hooks.checkpoint.out_dir`` (None: the work dir).
        backend_args / file_client_args: the checkpoint hook's file
            backend settings (only used to place the checkpoint folder).

    Raises:
        Stage2GuardError: naming the folder and the offending checkpoint.
    """
    ckpt_dir = checkpoint_save_dir(work_dir, out_dir, backend_args,
                                   file_client_args)
    separate = not (_is_local(ckpt_dir) and _same_dir(ckpt_dir, work_dir))
    fix = ('Use a new --work-dir for stage 2 and load_from=<stage-1 '
           'checkpoint>.')
    if separate:
        fix = (f'Stage 2 saves its checkpoints to {ckpt_dir!r} '
               '(default_hooks.checkpoint.out_dir joined with the last '
               'folder name of the work dir): use another '
               'default_hooks.checkpoint.out_dir, or a new --work-dir with '
               'another last folder name, for stage 2, with '
               'load_from=<stage-1 checkpoint>.')
    if not resume and load_from:
        for folder, what in ((work_dir, 'work_dir'),
                             (ckpt_dir, 'the checkpoint folder')):
            if _in_folder(load_from, folder):
                raise Stage2GuardError(
                    f'Stage2FreezeHook: {what} {folder!r} is the folder of '
                    f'the stage-1 checkpoint {load_from!r}; stage 2 would '
                    f'overwrite stage-1 checkpoints. {fix}')
    if resume and resume_from and _is_local(resume_from) and \
            osp.isfile(resume_from):
        flag = _stage2_meta_or_none(resume_from)
        if flag is False:
            raise Stage2GuardError(
                f'Stage2FreezeHook: refusing to resume stage 2 from '
                f'{resume_from!r}: it is not a stage-2 checkpoint (its '
                'config has no Stage2FreezeHook, e.g. a stage-1 '
                'checkpoint). Start stage 2 with load_from='
                f'{resume_from} (no --resume) and a new --work-dir.')
    _check_no_stage1_checkpoint(work_dir, 'work_dir', resume, fix)
    if separate and _is_local(ckpt_dir):
        _check_no_stage1_checkpoint(ckpt_dir, 'the checkpoint folder', resume,
                                    fix)
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
        if named and _is_local(named) and osp.isfile(named) and \
                _stage2_meta_or_none(named) is False:
            raise Stage2GuardError(
                f'Stage2FreezeHook: {marker!r} names {named!r}, which is '
                'not a stage-2 checkpoint (stage 1?): stage 2 in work_dir '
                f'{work_dir!r} would overwrite stage 1\'s last_checkpoint. '
                f'{fix}')


def _checkpoint_hook_settings(runner) -> List[Dict[str, Any]]:
    """``out_dir`` / backend settings of the runner's CheckpointHooks (as
    configured: their ``before_train`` has not run yet)."""
    from mmengine.hooks import CheckpointHook
    return [
        dict(
            out_dir=h.out_dir,
            backend_args=getattr(h, 'backend_args', None),
            file_client_args=getattr(h, 'file_client_args', None))
        for h in getattr(runner, 'hooks', []) if isinstance(h, CheckpointHook)
    ] or [dict()]


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
            so ``load_from`` (or a stage-2 checkpoint to resume) must exist.
        strict_stage1 (bool): refuse a checkpoint that lacks a frozen
            parameter (or BatchNorm statistic) of the model or holds one of
            another shape (default True). False logs a warning instead, for
            users who knowingly start stage 2 from a partial checkpoint.

    Raises (:class:`Stage2GuardError`, a ``ValueError``) before the first
    training iteration when nothing would train, when a backbone parameter
    would train, when no stage-1 checkpoint is given, when the work dir or
    the checkpoint folder (``out_dir``) holds stage-1 checkpoints, when a
    resume finds no stage-2 checkpoint,
    and when the loaded checkpoint does not fit the frozen model.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 trainable: Optional[Iterable[str]] = None,
                 freeze_bn_stats: bool = True,
                 allow_backbone: bool = False,
                 require_load_from: bool = True,
                 strict_stage1: bool = True) -> None:
        self.trainable = list(trainable) if trainable is not None else None
        self.freeze_bn_stats = freeze_bn_stats
        self.allow_backbone = allow_backbone
        self.require_load_from = require_load_from
        self.strict_stage1 = bool(strict_stage1)
        self._frozen_bn: List[nn.Module] = []
        self._trained_names: Set[str] = set()
        self._source: Optional[str] = None
        self._training = False
        self._resuming = False

    # ------------------------------------------------------------------
    def _check_checkpoint(self, runner) -> None:
        """The work-dir / load_from / resume rules (module docstring)."""
        load_from = runner._load_from
        resume = bool(runner._resume)
        self._resuming = resume
        self._source = load_from
        if not self._training:  # test / val: only the loaded weights count
            return
        resume_from = None
        if resume:
            if load_from is None:
                from mmengine.runner.checkpoint import find_latest_checkpoint
                resume_from = find_latest_checkpoint(runner.work_dir)
                if resume_from is None and self.require_load_from:
                    raise Stage2GuardError(
                        'Stage2FreezeHook: resume=True but work_dir '
                        f'{runner.work_dir!r} has no checkpoint to resume '
                        '(no last_checkpoint file), and load_from is not '
                        'set: stage 2 would train from randomly '
                        'initialised weights. For a fresh stage 2 set '
                        'load_from=<stage-1 checkpoint> and resume=False '
                        '(tools/train.py --resume does this when the work '
                        'dir holds no checkpoint).')
            else:
                resume_from = load_from
            self._source = resume_from
        elif self.require_load_from and not load_from:
            raise Stage2GuardError(
                'Stage2FreezeHook: this is a stage-2 config but load_from is '
                'not set. Point load_from at the stage-1 checkpoint, e.g. '
                "--cfg-options load_from=work_dirs/stage1/epoch_90.pth.")
        for settings in _checkpoint_hook_settings(runner):
            check_stage2_work_dir(runner.work_dir, load_from, resume,
                                  resume_from, **settings)

    def before_run(self, runner) -> None:
        self._training = isinstance(
            getattr(runner, '_train_loop', None), BaseLoop)
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
        self._trained_names = {n for n, _ in trained}
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
                if isinstance(m,
                              _BatchNorm) and not any(p.requires_grad
                                                      for p in m.parameters()):
                    self._frozen_bn.append(m)
        n_train = sum(n for _, n in trained)
        runner.logger.info(
            f'Stage2FreezeHook: training {len(trained)} tensors '
            f'({n_train} parameters), frozen {frozen} parameters, '
            f'{len(self._frozen_bn)} BatchNorm layers with frozen stats:\n  ' +
            '\n  '.join(f'{n} ({k})' for n, k in trained))

    # ------------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Check the checkpoint against the frozen model (before mmengine
        copies it in) and report the expected new stage-2 parameters.

        Missing stage-2 parameters and lt_mm buffers are filled with the
        model's initial values, so mmengine's "missing keys" warning only
        appears for keys that matter.
        """
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not self._trained_names:
            patterns = self.trainable or collect_stage2_parameter_names(model)
            self._trained_names = {
                n
                for n, _ in model.named_parameters() if _matches(n, patterns)
            }
        state = checkpoint.get('state_dict', checkpoint) if isinstance(
            checkpoint, dict) else None
        source = self._source or runner._load_from or '<checkpoint>'
        if not isinstance(state, dict):
            raise Stage2GuardError(
                f'Stage2FreezeHook: {source!r} holds no state_dict.')
        keys = {re.sub(r'^module\.', '', k): k for k in state}
        params = {n for n, _ in model.named_parameters()}
        bn_stats = set()
        for mname, m in model.named_modules():
            if isinstance(m, _BatchNorm):
                for b in ('running_mean', 'running_var'):
                    bn_stats.add(f'{mname}.{b}' if mname else b)
        missing, mismatched, new = [], [], []
        model_state = model.state_dict()
        for name, tensor in model_state.items():
            if name in keys:
                value = state[keys[name]]
                shape = tuple(getattr(value, 'shape', ()))
                if hasattr(value, 'shape') and shape != tuple(tensor.shape):
                    mismatched.append(f'{name}: checkpoint {shape} vs '
                                      f'model {tuple(tensor.shape)}')
                continue
            if name.endswith('num_batches_tracked'):
                state[name] = tensor.detach().clone()  # mmengine ignores it
            elif name in self._trained_names:
                new.append(name)
            elif name in params or name in bn_stats:
                missing.append(name)
            else:  # an lt_mm buffer (class statistics from the config)
                new.append(name)
        # stage 2 resumed from its own checkpoint: the stage-2 parameters
        # must be there (else: another method's or a stage-1 checkpoint)
        lacking = [n for n in new if n in self._trained_names] \
            if self._resuming and self._training else []
        if not self._training:
            self._check_tested_checkpoint(checkpoint, source, new)
        problems = []
        if lacking:
            problems.append(
                f'it is not a stage-2 checkpoint of this config: it lacks '
                f'{len(lacking)} stage-2 parameter(s) ({_head(lacking)})')
        if missing:
            problems.append(
                f'{len(missing)} tensor(s) that stage 2 keeps frozen are '
                f'missing ({_head(missing)})')
        if mismatched:
            problems.append(f'{len(mismatched)} tensor(s) have another shape '
                            f'({_head(mismatched)})')
        if problems:
            msg = (f'Stage2FreezeHook: the checkpoint {source!r} does not '
                   'fit this stage-2 model: ' + '; '.join(problems) +
                   '. Frozen parameters would stay randomly initialised. '
                   'Point load_from at the stage-1 checkpoint of this '
                   'model (same architecture and classes)')
            if self.strict_stage1 or lacking:
                raise Stage2GuardError(
                    msg + ', or set strict_stage1=False in the '
                    'Stage2FreezeHook config if this is intended.')
            print_log(msg + ' (strict_stage1=False: continuing).', 'current',
                      30)
        if new:
            for name in new:
                state[name] = model_state[name].detach().clone()
            if not self._resuming:
                print_log(
                    f'stage 2: initialised {len(new)} new parameters: ' +
                    ', '.join(new), 'current')

    def _check_tested_checkpoint(self, checkpoint: dict, source: str,
                                 new: List[str]) -> None:
        """Testing a stage-2 config needs the stage-2 entries in the
        checkpoint: a stage-1 checkpoint lacks them, and they would keep
        their initial values (a DisAlign calibration at identity, LWS
        scales of 1, a cRT classifier re-initialised when it loads, its
        ``crt_retrained`` flag missing) while the metrics are reported
        under the method's name. A checkpoint a stage-2 run wrote
        (:func:`is_stage2_checkpoint_meta`), or one that holds every entry
        (e.g. converted official weights), is tested.
        ``strict_stage1=False`` turns the refusal into a warning.
        """
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        if not new or is_stage2_checkpoint_meta(
                meta if isinstance(meta, dict) else {}):
            return
        msg = (f'Stage2FreezeHook: {source!r} lacks {len(new)} entr'
               f'{"y" if len(new) == 1 else "ies"} of this stage-2 model '
               f'({_head(new)}) and was not written by a stage-2 run (its '
               'meta has no lt_mm stage-2 record): testing it would '
               'evaluate untrained stage-2 parts under the method\'s name. '
               'Test the checkpoint of the stage-2 run (in its work dir), '
               'or the stage-1 checkpoint with the stage-1 config')
        if self.strict_stage1:
            raise Stage2GuardError(
                msg + '; strict_stage1=False in the Stage2FreezeHook config '
                'tests it anyway.')
        print_log(msg + ' (strict_stage1=False: testing it anyway).',
                  'current', 30)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Mark the checkpoint as written by a stage-2 run."""
        meta = checkpoint.setdefault('meta', {})
        meta[STAGE2_META_KEY] = dict(trainable=sorted(self._trained_names))

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        # the train loop calls model.train() at each epoch start; put the
        # frozen BN layers back in eval mode so their statistics stay fixed
        for m in self._frozen_bn:
            if m.training:
                m.eval()


def _head(items: List[str], n: int = 6) -> str:
    more = f', ... (+{len(items) - n})' if len(items) > n else ''
    return ', '.join(items[:n]) + more


# ----------------------------------------------------------- exact resume
#: ``meta`` key of the random states saved with every checkpoint
RNG_META_KEY = 'lt_mm_rng_state'
#: ``meta`` key of every rank's random states (distributed runs, rank order)
RNG_RANKS_META_KEY = 'lt_mm_rng_state_ranks'


def get_rng_state() -> Dict[str, Any]:
    """The python, numpy and torch (CPU, CUDA) random states as plain
    types and tensors (what ``weights_only`` unpickling accepts)."""
    import random

    import numpy as np
    import torch
    np_state = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=[
            np_state[0], np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4])
        ],
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    import random

    import numpy as np
    import torch
    py = state['python']
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state['numpy']
    np.random.set_state((n[0], np.asarray(n[1],
                                          dtype=np.uint32), n[2], n[3], n[4]))
    # mmengine's resume loads the checkpoint onto the GPU when there is one
    # (map_location='default'); the generators take CPU ByteTensors only
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        saved = [s.cpu() for s in state['cuda']]
        count = torch.cuda.device_count()
        if len(saved) != count:
            print_log(
                f'lt_mm: the checkpoint holds the random states of '
                f'{len(saved)} CUDA devices and {count} are visible now; '
                f'the first {min(len(saved), count)} are restored, so the '
                'resumed run need not repeat the straight one exactly.',
                logger='current',
                level=logging.WARNING)
        for i, s in enumerate(saved[:count]):
            torch.cuda.set_rng_state(s, i)


def same_rng_state(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Whether two :func:`get_rng_state` results are the same state."""
    import torch
    if a.keys() != b.keys() or a['python'] != b['python'] or \
            a['numpy'] != b['numpy'] or \
            not torch.equal(a['torch'], b['torch']):
        return False
    return 'cuda' not in a or (len(a['cuda']) == len(b['cuda']) and all(
        torch.equal(x, y) for x, y in zip(a['cuda'], b['cuda'])))


def warn_persistent_workers_resume(dataloader: Any) -> bool:
    """Warn that an epoch-based resume with persistent workers is not exact.

    A straight run's persistent DataLoader workers carry their random state
    (random augmentations of the pipeline) from epoch to epoch; a resumed
    run starts new workers, seeded by ``worker_init_fn`` as at the first
    epoch, so its augmentations differ from the straight run's. That state
    lives in the worker processes and cannot be saved in the checkpoint.
    Without persistent workers every epoch starts new, identically seeded
    workers in both runs, so the resume is exact.

    Returns:
        bool: whether the warning was logged.
    """
    workers = int(getattr(dataloader, 'num_workers', 0) or 0)
    if workers <= 0 or not getattr(dataloader, 'persistent_workers', False):
        return False
    print_log(
        f'Resuming an epoch-based run whose train_dataloader has '
        f'num_workers={workers} and persistent_workers=True: the resume is '
        "not exact. The workers' random state (random augmentations) "
        'restarts from the seed of worker_init_fn, while the persistent '
        'workers of the interrupted run carried it across epochs, so the '
        'augmented data differ from a straight run. Set '
        'train_dataloader.persistent_workers=False in the training config '
        '(for the original run and the resume) to make --resume exact.',
        'current', logging.WARNING)
    return True


class _RestoreRNGAfterSkip:
    """Wraps the iteration-based loop's data iterator: after the ``skip``
    batches mmengine replays on resume, restore the saved random states
    just before the first new batch is fetched (where the straight run
    fetched it from exactly those states)."""

    def __init__(self, iterator: Any, skip: int, state: Dict[str,
                                                             Any]) -> None:
        self._iterator = iterator
        self._skip = int(skip)
        self._state: Optional[Dict[str, Any]] = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        elif self._state is not None:
            set_rng_state(self._state)
            self._state = None
        return next(self._iterator)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


@HOOKS.register_module()
class ResumeRNGHook(Hook):
    """Make ``--resume`` continue with the random state of the straight run.

    mmengine 0.10.7 re-seeds a resumed run and replays (iteration-based
    loop) the consumed batches, but does not save the random number
    generators: the torch generator that dropout (e.g. the decode heads'
    ``dropout_ratio=0.1``) and random augmentations draw from continues
    from the fresh seed instead of where the interrupted run stopped, so a
    resumed run drifts from the straight one. This hook saves the python,
    numpy and torch states in every checkpoint (``meta['lt_mm_rng_state']``)
    and, on resume, restores them where the straight run was when the
    checkpoint was written: before the first new batch is fetched
    (iteration-based loop, after mmengine's replay) or at the start of the
    next epoch (epoch-based loop). In a distributed run every rank has its
    own generators, and mmengine saves checkpoints on rank 0 alone (a
    collective there would hang): the hook gathers all ranks' states (one
    ``all_gather_object`` of ~13 KB per rank) at each epoch end and after
    the iterations an iteration-based ``CheckpointHook`` saves at, before
    that hook runs (hence priority ``LOW``); rank 0 writes them
    into the checkpoint (``meta['lt_mm_rng_state_ranks']``, rank order)
    when its own state is still the gathered one, and on resume with the
    same number of processes each rank gets its own back. With another
    number (the batches are split differently, so the run cannot repeat
    anyway) or no per-rank states (e.g. a checkpoint written after a
    validation), nothing is restored and a warning says so. The random
    state of persistent DataLoader workers is out of reach: an epoch-based
    resume with ``persistent_workers=True`` and ``num_workers > 0`` logs a
    warning (:func:`warn_persistent_workers_resume`).
    ``lt_mm.engine.runner_utils.build_runner`` registers it for training.
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None
        self._ranks: Optional[List[Dict[str, Any]]] = None

    def _gather(self) -> None:
        """Every rank's random states to every rank (distributed runs)."""
        from mmengine.dist import all_gather_object, get_world_size
        if get_world_size() > 1:
            self._ranks = all_gather_object(get_rng_state())

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Any = None) -> None:
        """Gather where an iteration-based ``CheckpointHook`` saves next
        (every ``interval`` from ``save_begin``, the last iteration)."""
        from mmengine.hooks import CheckpointHook
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or hook.by_epoch:
                continue
            if self.every_n_train_iters(
                    runner, hook.interval,
                    hook.save_begin) or (hook.save_last
                                         and self.is_last_train_iter(runner)):
                self._gather()
                return

    def after_train_epoch(self, runner) -> None:
        self._gather()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # rank 0 only (mmengine's Runner.save_checkpoint is master_only)
        state = get_rng_state()
        meta = checkpoint.setdefault('meta', {})
        meta[RNG_META_KEY] = state
        if self._ranks is not None and same_rng_state(self._ranks[0], state):
            meta[RNG_RANKS_META_KEY] = self._ranks

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.dist import get_rank, get_world_size
        meta = checkpoint.get('meta', {}) if isinstance(checkpoint,
                                                        dict) else {}
        state = meta.get(RNG_META_KEY) if isinstance(meta, dict) else None
        loop = getattr(runner, '_train_loop', None)
        if runner._resume and isinstance(loop, BaseLoop) and \
                not isinstance(loop, IterBasedTrainLoop):
            warn_persistent_workers_resume(loop.dataloader)
        if (state is None or not runner._resume
                or not isinstance(loop, BaseLoop)):
            return
        ranks = meta.get(RNG_RANKS_META_KEY)
        saved = len(ranks) if isinstance(ranks, (list, tuple)) else 1
        world = get_world_size()
        if saved != world:
            print_log(
                f'lt_mm: the checkpoint holds the random states of {saved} '
                f'process(es) and this run has {world}; they are not '
                'restored, so the resumed run need not repeat the straight '
                'one (resume with the number of processes of the '
                'interrupted run to continue it exactly).',
                logger='current',
                level=logging.WARNING)
            return
        if world > 1:
            state = ranks[get_rank()]
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreRNGAfterSkip(
                loop.dataloader_iterator, int(meta.get('iter', 0)), state)
        else:
            self._pending = state

    def before_train(self, runner) -> None:
        if self._pending is not None:
            set_rng_state(self._pending)
            self._pending = None
