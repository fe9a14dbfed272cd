"""Quickstart runs: stage 1 and every method, through the user's configs.

Each run builds an mmengine Runner from a config under
``configs/quickstart`` exactly as ``tools/train.py`` / ``tools/test.py`` do
(:func:`lt_mm.engine.runner_utils.build_runner`), in-process so that the
toolboxes are imported once. Stage-1 checkpoints are never overwritten: a
stage-1 work dir that already holds a checkpoint is reused when its record
(:data:`STAGE1_RECORD`) says it was trained with the same settings, and
the run stops otherwise.
"""
from __future__ import annotations

import glob
import json
import numbers
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

#: the lt_mm checkout whose configs/quickstart and tools/ the quickstart
#: runs: ``LT_MM_REPO`` if set, else the checkout this package lives in
#: (an editable install; a wheel has no configs, :func:`checkout_path`)
REPO = os.environ.get('LT_MM_REPO') or osp.dirname(
    osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART_CONFIGS = osp.join(REPO, 'configs', 'quickstart')


def checkout_path(*parts: str) -> str:
    """``REPO/<parts>``, which must exist: the quickstart runs the configs
    and tools of an lt_mm checkout, which ``pip install .`` (a wheel) does
    not install."""
    path = osp.join(REPO, *parts)
    if not osp.exists(path):
        raise FileNotFoundError(
            f'{path} does not exist: lt_mm.quickstart runs the configs and '
            f'tools of an lt_mm checkout, and {REPO} is not one (a '
            'non-editable install has no configs/ or tools/). Install the '
            'checkout with `pip install -e .`, or set LT_MM_REPO to it.')
    return path


@dataclass
class Method:
    """One row of a results table.

    ``kind``: ``'stage2'`` (trained from the stage-1 checkpoint),
    ``'one_stage'`` (trained from scratch) or ``'posthoc'`` (no training:
    the stage-1 checkpoint tested with another head); the report labels
    the baseline row, which is not a ``Method``, ``'stage1'``. ``extra``
    rows run only with ``tools/quickstart.py --all`` (or when named in
    ``--methods``), so the default quickstart keeps its time budget.
    """
    name: str
    config: str
    kind: str
    paper: str = ''
    extra: bool = False


# the name of every task's stage-1 row in the results tables
BASELINE = 'baseline (joint)'


@dataclass
class TaskSpec:
    """What the quickstart runs for one task and how it reads the metrics."""
    name: str
    stage1: str
    methods: List[Method]
    # (column title, metric key) in the results table
    columns: List[tuple]
    # --cfg-options of the --fast mode (tiny schedules, same code path)
    fast_options: Dict[str, List[str]] = field(default_factory=dict)


TASKS: Dict[str, TaskSpec] = {
    'cls':
    TaskSpec(
        name='classification (mmpretrain, ImageNet-LT format)',
        stage1='digits_cls_resnet_stage1.py',
        methods=[
            Method('DisAlign', 'digits_cls_disalign.py', 'stage2',
                   'DisAlign CVPR21'),
            Method('TDE', 'digits_cls_tde.py', 'one_stage', 'TDE NeurIPS20'),
            Method('tau-norm', 'digits_cls_taunorm.py', 'posthoc',
                   'Decoupling ICLR20'),
            Method('LWS', 'digits_cls_lws.py', 'stage2', 'Decoupling ICLR20'),
            Method('cRT', 'digits_cls_crt.py', 'stage2', 'Decoupling ICLR20'),
            Method('NCM', 'digits_cls_ncm.py', 'posthoc', 'Decoupling ICLR20'),
            Method('CDT', 'digits_cls_cdt.py', 'one_stage', 'CDT arXiv20'),
        ],
        columns=[('top-1', 'accuracy/top1'), ('many', 'accuracy/many'),
                 ('medium', 'accuracy/medium'), ('few', 'accuracy/few')],
        fast_options=dict(
            stage1=['train_cfg.max_epochs=2', 'train_cfg.val_interval=2'],
            stage2=['train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
            one_stage=['train_cfg.max_epochs=2', 'train_cfg.val_interval=2'])),
    'seg':
    TaskSpec(
        name='semantic segmentation (mmseg, ADE20K layout)',
        stage1='digits_seg_fcn_stage1.py',
        methods=[
            Method('DisAlign', 'digits_seg_disalign.py', 'stage2',
                   'DisAlign CVPR21'),
            Method('TDE', 'digits_seg_tde.py', 'one_stage', 'TDE NeurIPS20'),
            Method('CDT', 'digits_seg_cdt.py', 'one_stage', 'CDT arXiv20'),
            Method('tau-norm', 'digits_seg_taunorm.py', 'posthoc',
                   'Decoupling ICLR20'),
            Method(
                'LWS',
                'digits_seg_lws.py',
                'stage2',
                'Decoupling ICLR20',
                extra=True),
            Method(
                'cRT',
                'digits_seg_crt.py',
                'stage2',
                'Decoupling ICLR20',
                extra=True),
            Method(
                'NCM',
                'digits_seg_ncm.py',
                'posthoc',
                'Decoupling ICLR20',
                extra=True),
            Method(
                'N_c^tau',
                'digits_seg_posthoc_nc_tau.py',
                'posthoc',
                'CDT arXiv20',
                extra=True),
            Method(
                'logit adj.',
                'digits_seg_posthoc_logit_adjust.py',
                'posthoc',
                'Menon ICLR21',
                extra=True),
            Method(
                'cosine',
                'digits_seg_cosine.py',
                'one_stage',
                'DisAlign CVPR21 (*)',
                extra=True),
        ],
        columns=[('mIoU', 'mIoU'), ('head', 'mIoU_head'),
                 ('body', 'mIoU_body'), ('tail', 'mIoU_tail')],
        fast_options=dict(
            stage1=['train_cfg.max_iters=4', 'train_cfg.val_interval=4'],
            stage2=['train_cfg.max_iters=2', 'train_cfg.val_interval=2'],
            one_stage=['train_cfg.max_iters=2', 'train_cfg.val_interval=2'])),
    'det':
    TaskSpec(
        name='detection / instance segmentation (mmdet, LVIS v1 format)',
        stage1='digits_det_mask_rcnn_stage1.py',
        methods=[
            Method('DisAlign', 'digits_det_disalign.py', 'stage2',
                   'DisAlign CVPR21'),
            Method('TDE', 'digits_det_tde.py', 'one_stage', 'TDE NeurIPS20'),
            Method('tau-norm', 'digits_det_taunorm.py', 'posthoc',
                   'Decoupling ICLR20'),
            Method(
                'LWS',
                'digits_det_lws.py',
                'stage2',
                'Decoupling ICLR20',
                extra=True),
            Method(
                'cRT',
                'digits_det_crt.py',
                'stage2',
                'Decoupling ICLR20',
                extra=True),
            Method(
                'NCM',
                'digits_det_ncm.py',
                'posthoc',
                'Decoupling ICLR20',
                extra=True),
            Method(
                'N_c^tau',
                'digits_det_posthoc_nc_tau.py',
                'posthoc',
                'CDT arXiv20',
                extra=True),
            Method(
                'logit adj.',
                'digits_det_posthoc_logit_adjust.py',
                'posthoc',
                'Menon ICLR21',
                extra=True),
        ],
        columns=[('box AP', 'lvis/bbox_AP'), ('APr', 'lvis/bbox_APr'),
                 ('APc', 'lvis/bbox_APc'), ('APf', 'lvis/bbox_APf'),
                 ('mask AP', 'lvis/segm_AP')],
        fast_options=dict(
            stage1=['train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
            stage2=['train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
            one_stage=['train_cfg.max_epochs=1', 'train_cfg.val_interval=1'])),
}


def _options_to_dict(options: Sequence[str]) -> dict:
    """``['a.b=1']`` -> ``{'a.b': 1}`` with mmengine's DictAction parsing."""
    from mmengine.config import DictAction
    out: dict = {}
    for item in options:
        key, value = item.split('=', 1)
        out[key] = DictAction._parse_iterable(value)
    return out


def find_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint named in ``work_dir/last_checkpoint`` (or None)."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
    ckpts = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
    return ckpts[-1] if ckpts else None


@dataclass
class RunResult:
    metrics: Dict[str, float]
    work_dir: str
    checkpoint: Optional[str]
    per_class: Optional[List[float]] = None
    seconds: float = 0.0
    reused: bool = False


def run_config(config: str,
               work_dir: str,
               train: bool,
               load_from: Optional[str] = None,
               options: Sequence[str] = (),
               quiet: bool = True,
               on_runner: Optional[Callable] = None) -> RunResult:
    """Train (optionally) and test one config in-process."""
    from lt_mm.engine.runner_utils import build_runner, load_config
    start = time.time()
    cfg_path = config if osp.isabs(config) else checkout_path(
        'configs', 'quickstart', config)
    cfg = load_config(cfg_path, _options_to_dict(options), work_dir)
    if load_from is not None:
        cfg.load_from = load_from
    if quiet:
        cfg.log_level = 'WARNING'
    os.makedirs(work_dir, exist_ok=True)
    runner = build_runner(cfg, 'none')
    if train:
        runner.train()
    metrics = runner.test()
    per_class = None
    for metric in runner.test_evaluator.metrics:
        if getattr(metric, 'per_class', None) is not None:
            per_class = list(metric.per_class)
    if on_runner is not None:
        on_runner(runner)
    ckpt = find_checkpoint(work_dir) if train else load_from
    return RunResult(
        metrics={
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, numbers.Real) or getattr(v, 'ndim', 1) == 0
        },
        work_dir=work_dir,
        checkpoint=ckpt,
        per_class=per_class,
        seconds=time.time() - start)


#: written beside a stage-1 checkpoint the quickstart trains: what it was
#: trained on (task, config, fast / full data, seed, the data generator's
#: arguments) and whether the training finished
STAGE1_RECORD = 'lt_mm_quickstart_stage1.json'


class Stage1Mismatch(RuntimeError):
    """A stage-1 work dir holds a checkpoint of another (or an unfinished)
    quickstart run; reusing it would test the methods on a model of other
    data."""


def stage1_record(task: str, fast: bool, seed: int) -> dict:
    """What a quickstart stage 1 of ``task`` depends on."""
    from .data import data_params
    size = 'fast' if fast else 'full'
    return dict(
        task=task,
        config=TASKS[task].stage1,
        size=size,
        seed=seed,
        data=data_params(task, size, seed))


def _describe(rec: dict) -> str:
    return (f'{rec.get("size")} data, seed {rec.get("seed")}' if isinstance(
        rec, dict) else repr(rec))


def reusable_stage1(task: str, work_dir: str, fast: bool,
                    seed: int) -> Optional[str]:
    """The stage-1 checkpoint of ``task`` under ``work_dir`` to reuse, or
    None when there is none.

    Raises:
        Stage1Mismatch: the checkpoint there was trained with other
            settings (seed, ``--fast``, data), its training did not finish,
            or nothing records what it was trained on (a work dir of an
            older lt_mm). It is never overwritten, so the run stops.
    """
    s1_dir = osp.join(work_dir, task, 'stage1')
    ckpt = find_checkpoint(s1_dir)
    if ckpt is None:
        return None
    want = stage1_record(task, fast, seed)
    rec_path = osp.join(s1_dir, STAGE1_RECORD)
    fix = (f'Stage-1 checkpoints are never overwritten: choose another '
           f'--work-dir (or --seeds N, which gives every seed its own '
           f'folder) or remove {s1_dir}.')
    if not osp.isfile(rec_path):
        raise Stage1Mismatch(
            f'{ckpt}: {rec_path} is missing, so nothing says what this '
            f'stage 1 was trained on (this run: {_describe(want)}). {fix}')
    try:
        with open(rec_path) as f:
            have = json.load(f)
    except (OSError, ValueError) as exc:
        raise Stage1Mismatch(
            f'{ckpt}: {rec_path} cannot be read ({exc}). {fix}') from None
    if not isinstance(have, dict) or not have.get('complete'):
        raise Stage1Mismatch(
            f'{ckpt}: the stage-1 training in {s1_dir} did not finish '
            f'({rec_path} is not marked complete). {fix}')
    have = {k: v for k, v in have.items() if k != 'complete'}
    if have != want:
        raise Stage1Mismatch(
            f'{ckpt} was trained on {_describe(have)} ({have.get("config")}'
            f'), this run uses {_describe(want)} ({want["config"]}); '
            f'reusing it would test the methods on a model of other data. '
            f'{fix}')
    return ckpt


def _write_record(s1_dir: str, record: dict, complete: bool) -> None:
    os.makedirs(s1_dir, exist_ok=True)
    with open(osp.join(s1_dir, STAGE1_RECORD), 'w') as f:
        json.dump(dict(record, complete=complete), f, indent=1)


def run_task(task: str,
             work_dir: str,
             fast: bool = False,
             methods: Optional[Sequence[str]] = None,
             seed: int = 0,
             log: Callable[[str], None] = print,
             all_methods: bool = False) -> Dict[str, RunResult]:
    """Stage 1 (reused if present and trained with the same settings,
    :func:`reusable_stage1`) then the methods of ``task``: those named in
    ``methods``, else every non-``extra`` one (every one with
    ``all_methods``)."""
    spec = TASKS[task]
    results: Dict[str, RunResult] = {}
    fast_opts = {
        kind: (list(spec.fast_options.get(kind, [])) if fast else []) +
        [f'randomness.seed={seed}']
        for kind in ('stage1', 'stage2', 'one_stage')
    }

    s1_dir = osp.join(work_dir, task, 'stage1')
    s1_ckpt = reusable_stage1(task, work_dir, fast, seed)
    if s1_ckpt is None:
        log(f'[{task}] stage 1: training {spec.stage1} ...')
        record = stage1_record(task, fast, seed)
        _write_record(s1_dir, record, complete=False)
        res = run_config(
            spec.stage1,
            s1_dir,
            train=True,
            options=fast_opts.get('stage1', []))
        s1_ckpt = res.checkpoint
        _write_record(s1_dir, record, complete=True)
    else:
        log(f'[{task}] stage 1: reusing {s1_ckpt} (never overwritten)')
        res = run_config(
            spec.stage1,
            osp.join(s1_dir, 'test'),
            train=False,
            load_from=s1_ckpt,
            options=fast_opts['stage1'])
        res.reused = True
        res.checkpoint = s1_ckpt
    results[BASELINE] = res
    log(f'[{task}] stage 1 done in {res.seconds:.0f} s: ' +
        _summary(task, res.metrics))

    for m in spec.methods:
        if methods and m.name not in methods:
            continue
        if not methods and m.extra and not all_methods:
            continue
        mdir = osp.join(work_dir, task, m.config[:-3])
        log(f'[{task}] {m.name} ({m.kind}) ...')
        if m.kind == 'stage2':
            res = run_config(
                m.config,
                mdir,
                train=True,
                load_from=s1_ckpt,
                options=fast_opts.get('stage2', []))
        elif m.kind == 'one_stage':
            res = run_config(
                m.config,
                mdir,
                train=True,
                options=fast_opts.get('one_stage', []))
        else:
            res = run_config(
                m.config,
                mdir,
                train=False,
                load_from=s1_ckpt,
                options=fast_opts['stage1'])
        results[m.name] = res
        log(f'[{task}] {m.name} done in {res.seconds:.0f} s: ' +
            _summary(task, res.metrics))
    return results


class ElapsedLog:
    """``print('[<seconds since start>s] <msg>')``, flushed at once; a
    picklable ``log`` for :func:`run_task` in worker processes."""

    def __init__(self, start: Optional[float] = None) -> None:
        self.start = time.time() if start is None else start

    def __call__(self, msg: str) -> None:
        print(f'[{time.time() - self.start:6.1f}s] {msg}', flush=True)


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity where the platform
    reports it, else ``os.cpu_count()``)."""
    if hasattr(os, 'sched_getaffinity'):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _init_worker(threads: Optional[int]) -> None:
    if threads is not None:
        import torch
        torch.set_num_threads(threads)


def _run_task_in_worker(task: str, work_dir: str, log: Callable[[str], None],
                        **kwargs) -> Dict[str, RunResult]:
    """:func:`run_task`; a failure is logged at once (the other workers
    may still be running) and raised to the parent."""
    try:
        return run_task(task, work_dir, log=log, **kwargs)
    except BaseException as exc:
        log(f'[{task}] FAILED: {type(exc).__name__}: {exc}')
        raise


def run_tasks_parallel(tasks: Sequence[str], work_dir: str, jobs: int,
                       log: Callable[[str], None],
                       **kwargs) -> Dict[str, Dict[str, RunResult]]:
    """:func:`run_task` for every task of ``tasks`` in ``jobs`` worker
    processes (``kwargs`` as for :func:`run_task`; ``log`` picklable, e.g.
    :class:`ElapsedLog`). The tasks are independent (own data, work dirs
    and seeded runners), so the results equal a sequential run. The first
    failure in a worker is logged at once and raised here; tasks not
    started by then are not run.

    Workers are forked where the platform can (the parent's imports are
    shared). Unless ``OMP_NUM_THREADS`` is set, each worker gets
    ``available_cpus() // jobs`` intra-op threads, so the workers do not
    oversubscribe the cores."""
    import multiprocessing as mp
    import sys
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    if jobs < 1:
        raise ValueError(f'jobs={jobs!r}: need at least 1 worker process.')
    method = 'fork' if 'fork' in mp.get_all_start_methods() else 'spawn'
    threads = None if 'OMP_NUM_THREADS' in os.environ else max(
        1,
        available_cpus() // jobs)
    # nothing buffered is written twice by the forked workers
    sys.stdout.flush()
    sys.stderr.flush()
    with ProcessPoolExecutor(
            jobs,
            mp_context=mp.get_context(method),
            initializer=_init_worker,
            initargs=(threads, )) as pool:
        futures = {
            task: pool.submit(_run_task_in_worker, task, work_dir, log,
                              **kwargs)
            for task in tasks
        }
        wait(futures.values(), return_when=FIRST_EXCEPTION)
        for fut in futures.values():
            if fut.done() and fut.exception() is not None:
                # tasks not started yet are dropped; running ones finish
                pool.shutdown(wait=False, cancel_futures=True)
                raise fut.exception()
        return {task: fut.result() for task, fut in futures.items()}


def percent_scale(task: str) -> float:
    """Factor to percent: mmdet's LVIS AP is in [0, 1]; accuracy and IoU
    are percentages already."""
    return 100.0 if task == 'det' else 1.0


def _summary(task: str, metrics: Dict[str, float]) -> str:
    scale = percent_scale(task)
    return ', '.join(f'{title} {scale * metrics.get(key, float("nan")):.2f}'
                     for title, key in TASKS[task].columns)
