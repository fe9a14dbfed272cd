# Copyright (c) lt_mm contributors. Sweep the post-hoc knobs of long-tail
# classification, segmentation and detection (tau-norm tau, TDE alpha, CDT's
# N_c^tau rule, logit adjustment, NCM scale) on features extracted once.
"""Sweep post-hoc long-tail adjustments without re-running the backbone.

Builds the model and the dataloader(s) from CONFIG, loads CKPT, runs the
network ONCE per split up to the classifier and caches its input, then
evaluates every setting on the cache. The toolbox is the config's
``default_scope``:

* mmpretrain: backbone + neck features; top-1 / balanced / many / medium /
  few (``LongTailAccuracy``);
* mmseg: the decode head's pre-``conv_seg`` maps
  (:mod:`lt_mm.seg.posthoc_sweep`); mIoU / mIoU_head / mIoU_body /
  mIoU_tail (``HeadBodyTailIoUMetric``). ``--max-images`` and
  ``--feat-dtype float16`` bound the memory (ADE20K val: ~16 GB float32);
* mmdet: proposals, RoI features and box deltas
  (:mod:`lt_mm.det.posthoc_sweep`, single-stage RoI heads); LVIS box AP /
  APr / APc / APf (``LTLVISMetric``, boxes only). ``--cache-dir`` keeps
  the cache on disk.

Knobs (``--sweeps``; those the checkpoint does not support are skipped and
listed):

* tau-norm (Decoupling, Kang et al. ICLR 2020, Eq. 3), tau in 0..2;
* TDE alpha (Tang et al. NeurIPS 2020, Eq. 8) of a causal-norm classifier,
  alpha in 0..4;
* CDT's post-hoc rule z_c / N_c^tau (Ye et al., Eq. 5) and logit
  adjustment z_c - tau log N_c on the classifier's own logits, tau in
  0..2, with the training counts (``--stats-file``, else the classifier's
  ``posthoc.counts``, else the training dataset);
* detection only: the NCM softmax scale (``--scales``) and ``model`` (the
  configured classifier, the reference row).

Prints one table per split and knob, the feature-extraction time and the
sweep time. ``--select-on val --report test`` picks each knob on val and
reports test; ``--out`` writes the curves as JSON (``curves[split][knob]
= {values, metrics}``, ``selected``, ``skipped``, ``timing``).

Example::

    python tools/analysis/sweep_posthoc.py \\
        configs/quickstart/digits_cls_resnet_stage1.py STAGE1.pth \\
        --select-on val --report test --out work_dirs/sweep.json
"""
import argparse
import contextlib
import importlib
import json
import logging
import numbers
import os
import os.path as osp
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

#: classification metric keys (kept for callers of the original tool)
METRIC_KEYS = ('top1', 'balanced', 'many', 'medium', 'few')
SEG_KEYS = ('mIoU', 'mIoU_head', 'mIoU_body', 'mIoU_tail')
DET_KEYS = ('lvis/bbox_AP', 'lvis/bbox_APr', 'lvis/bbox_APc', 'lvis/bbox_APf')
SWEEPS = ('taunorm', 'tde_alpha', 'nc_tau', 'logit_adjust', 'ncm_scale',
          'model')
LABELS = dict(
    taunorm='tau-norm (Decoupling Eq. 3): tau',
    tde_alpha='TDE (Eq. 8): alpha',
    nc_tau='N_c^tau rule (CDT Eq. 5): tau',
    logit_adjust='logit adjustment: tau',
    ncm_scale='NCM softmax scale',
    model='the configured classifier (reference)')
SHORT = dict(
    taunorm='tau',
    tde_alpha='alpha',
    nc_tau='tau',
    logit_adjust='tau',
    ncm_scale='scale',
    model='-')


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='Sweep tau-norm / TDE alpha / N_c^tau / logit '
        'adjustment (/ NCM scale) on features extracted once, for '
        'mmpretrain, mmseg and mmdet configs (lt_mm)')
    p.add_argument('config', help='mmpretrain / mmseg / mmdet config')
    p.add_argument('checkpoint', help='checkpoint file')
    splits = ['train', 'val', 'test']
    p.add_argument(
        '--split',
        default='test',
        choices=splits,
        help='split to sweep on (without --select-on)')
    p.add_argument(
        '--select-on', choices=splits, help='choose every knob on this split')
    p.add_argument(
        '--report',
        choices=splits,
        default='test',
        help='... and report it on this split')
    p.add_argument(
        '--metric',
        help='selection criterion (default: cls balanced = mean per-class '
        'accuracy, seg mIoU, det lvis/bbox_AP; det accepts AP, APr, ...)')
    p.add_argument(
        '--sweeps',
        nargs='+',
        choices=list(SWEEPS),
        help='which sweeps to run (default: all of the task; inapplicable '
        'ones are skipped)')
    p.add_argument(
        '--taus',
        type=float,
        nargs='+',
        help='tau values (default 0, 0.1, ..., 2.0)')
    p.add_argument(
        '--alphas',
        type=float,
        nargs='+',
        help='TDE alpha values (default 0, 0.25, ..., 4.0)')
    p.add_argument(
        '--scales',
        type=float,
        nargs='+',
        help='NCM softmax scales, det (default 0.25, 0.5, ..., 16)')
    p.add_argument(
        '--stats-file',
        help='class statistics for N_c (default: the classifier\'s posthoc '
        'counts, else the training set\'s: cls images (the test '
        'evaluator\'s), seg pixels, det images)')
    p.add_argument(
        '--max-images',
        type=int,
        help='seg: cache at most this many images per split')
    p.add_argument(
        '--feat-dtype',
        default='float32',
        choices=['float32', 'float16'],
        help='seg / det: storage dtype of the cached features')
    p.add_argument(
        '--cache-dir',
        help='det: keep the cached RoI outputs on disk, one file per image '
        '(under CACHE_DIR/<split>)')
    p.add_argument('--out', help='write the curves to this JSON file')
    p.add_argument(
        '--allow-missing-keys',
        action='store_true',
        help='sweep even when model entries are missing from the '
        'checkpoint or have another shape (only a warning), as tools/test.py')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs')
    return p.parse_args(argv)


# ------------------------------------------------------------ helpers
def _grid(values, start, stop, step):
    if values:
        return [float(v) for v in values]
    n = int(round((stop - start) / step))
    return [round(start + i * step, 6) for i in range(n + 1)]


def _grids(args) -> Dict[str, List[float]]:
    taus = _grid(args.taus, 0.0, 2.0, 0.1)
    return dict(
        taunorm=taus,
        nc_tau=taus,
        logit_adjust=taus,
        tde_alpha=_grid(args.alphas, 0.0, 4.0, 0.25),
        ncm_scale=[float(v) for v in args.scales]
        if args.scales else [2.0**k for k in range(-2, 5)],
        model=[0.0])


def _loader_cfg(cfg, split):
    from lt_mm.engine.features import eval_dataloader_cfg
    loader = eval_dataloader_cfg(cfg, split)
    loader['num_workers'] = loader.get('num_workers', 0)
    if loader['num_workers'] == 0:
        loader['persistent_workers'] = False
    return loader


def warn_same_images(args, cfg) -> bool:
    """Warn when ``--select-on`` and ``--report`` read the same images
    (e.g. ADE20K / LVIS configs whose test set is the val set): the
    reported numbers are then tuned on the images they report."""
    if not args.select_on or args.select_on == args.report:
        return False

    def dataset(split):  # config dicts compare by value
        return _loader_cfg(cfg, split).get('dataset')

    if dataset(args.select_on) != dataset(args.report):
        return False
    print(
        f'WARNING: --select-on {args.select_on} and --report '
        f'{args.report} are the same images in this config: the '
        'reported numbers are chosen on the images they are reported '
        'on. Select on other images (e.g. --select-on train --report '
        f'{args.report}).',
        flush=True)
    return True


def _evaluator_cfg(cfg, split):
    """The split's evaluator config (the test one for train), first metric
    of a list."""
    evaluator = cfg.get(f'{split}_evaluator') or cfg.test_evaluator
    if isinstance(evaluator, (list, tuple)):
        evaluator = evaluator[0]
    return evaluator


def _training_counts(cfg, unit, num_classes):
    """Counts of the training dataset, or None (no annotations)."""
    from lt_mm.engine.counts import training_class_stats
    try:
        return list(training_class_stats(cfg, unit, num_classes).counts)
    except (ValueError, OSError):
        return None


def _no_nan(obj):
    """NaN (a group without test sample) -> null, for strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def _scalars(metrics):
    """The numbers of a metric dict as floats (JSON)."""
    return {
        k: float(v)
        for k, v in metrics.items() if isinstance(v, numbers.Real)
    }


def _fmt(v, digits=2):
    return '   nan' if v != v else f'{v:6.{digits}f}'


def print_table(title, name, values, rows, keys=METRIC_KEYS, digits=2):
    """One curve: a row per value, a column per metric key."""
    widths = [max(8, len(k)) for k in keys]
    print(f'\n{title}')
    print(f'{name:>8} | ' + ' | '.join(f'{k:>{w}}'
                                       for k, w in zip(keys, widths)))
    print('-' * (11 + sum(w + 3 for w in widths)))
    for v, r in zip(values, rows):
        cells = (_fmt(r.get(k, float('nan')), digits) for k in keys)
        print(f'{v:8.3f} | ' + ' | '.join(f'{c:>{w}}'
                                          for c, w in zip(cells, widths)))


@contextlib.contextmanager
def _quiet_logger():
    """Silence the per-evaluation tables metrics print through MMLogger."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_model(cfg, checkpoint, allow_missing_keys=False):
    """The config's model (toolbox registry of ``default_scope``) with the
    checkpoint loaded (lt_mm's safe loading), in eval mode.

    A checkpoint that leaves model entries unloaded (another model's; the
    statistics a module fills itself do not count) stops the tool, as in
    ``tools/test.py`` (``--allow-missing-keys``: a warning)."""
    import re
    from collections import OrderedDict

    import torch  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmengine.runner.checkpoint import _load_checkpoint

    from lt_mm.engine.checkpoint import (CheckpointMismatchError,
                                         check_state_dict_fit,
                                         install_safe_checkpoint_loading,
                                         load_state_dict_checked)
    scope = cfg.default_scope
    DefaultScope.get_instance(f'sweep_posthoc_{time.time()}', scope_name=scope)
    importlib.import_module(TASKS[scope].adapter)  # registers lt_mm modules
    models = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        # as mmengine's Runner does: the top-level preprocessor (mean/std)
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = models.build(model_cfg)
    install_safe_checkpoint_loading()
    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise SystemExit(f'{checkpoint}: holds no state dict.')
    state = OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in state.items())
    missing, _, errors = load_state_dict_checked(model, state)
    try:
        check_state_dict_fit(checkpoint, missing, errors, len(state),
                             allow_missing_keys)
    except CheckpointMismatchError as exc:
        raise SystemExit(f'lt_mm: CheckpointMismatchError: {exc}')
    return model.eval()


def _metrics_registry(cfg):
    return importlib.import_module(f'{cfg.default_scope}.registry').METRICS


# ------------------------------------------------------ classification
def cls_prepare(args, cfg) -> dict:
    """Model, head, LongTailAccuracy and counts of an mmpretrain config."""
    import torch
    model = build_model(cfg, args.checkpoint, args.allow_missing_keys)
    head = model.head
    evaluator = _evaluator_cfg(cfg, 'test')
    if evaluator.get('type') != 'LongTailAccuracy':
        raise SystemExit('the config\'s test_evaluator must be '
                         'LongTailAccuracy (it defines the class groups).')
    metric = _metrics_registry(cfg).build(dict(evaluator, per_class_file=None))
    counts = None
    if args.stats_file:
        from lt_mm.core.stats import load_class_stats
        try:  # N_c of the papers' rule: training images per class
            counts = load_class_stats(
                args.stats_file, metric.num_classes, unit='images').counts
        except ValueError as exc:
            raise SystemExit(f'lt_mm: --stats-file: {exc}')
    elif getattr(head, 'posthoc', None) is not None:
        counts = head.posthoc.counts.tolist()
    elif metric.counts is not None:
        counts = metric.counts
    fc = getattr(head, 'fc', None)
    fc_weight = fc.weight.detach() if isinstance(fc, torch.nn.Linear) \
        else None
    return dict(
        model=model,
        head=head,
        metric=metric,
        counts=counts,
        fc_weight=fc_weight,
        groups=metric.splits)


def cls_check(ctx, name, values) -> Optional[str]:
    """Why ``name`` does not apply to this checkpoint (None: it does)."""
    from lt_mm.cls.heads import CausalNormClsHead
    if name == 'taunorm' and ctx['fc_weight'] is None:
        return 'the head has no linear fc'
    if name == 'tde_alpha' and not isinstance(ctx['head'], CausalNormClsHead):
        return 'not a CausalNormClsHead (TDE) checkpoint'
    if name in ('nc_tau', 'logit_adjust') and ctx['counts'] is None:
        return 'no class counts (give --stats-file)'
    if name in ('ncm_scale', 'model'):
        return 'detection only'
    return None


def _cls_base_logits(head, x):
    """The head's own test logits, before any post-hoc adjustment."""
    if not hasattr(head, 'test_logits'):  # a stock mmpretrain head
        return head((x, ))
    try:
        return head.test_logits(x)
    except RuntimeError:  # e.g. NCM without class means
        return head.classifier_logits(x)


def cls_extract(ctx, cfg, split, args):
    """Backbone + neck once: features, labels and the head's logits."""
    from mmengine.runner import Runner

    from lt_mm.cls.hooks import extract_pre_logits
    loader = Runner.build_dataloader(_loader_cfg(cfg, split))
    x, y = extract_pre_logits(ctx['model'], loader)
    return dict(x=x, y=y, base=_cls_base_logits(ctx['head'], x)), len(y)


def cls_curve(ctx, cache, name, values) -> List[dict]:
    """LongTailAccuracy of every value of one knob on cached features."""
    from lt_mm.cls.metrics import long_tail_accuracy
    from lt_mm.core.cdt import logit_adjust, nc_tau_adjust
    from lt_mm.core.decoupling import tau_norm_logits
    x, metric = cache['x'], ctx['metric']
    rows = []
    for v in values:
        if name == 'taunorm':
            logits = tau_norm_logits(x, ctx['fc_weight'], v)
        elif name == 'tde_alpha':
            logits = ctx['head'].test_logits(x, alpha=v)
        else:
            fn = nc_tau_adjust if name == 'nc_tau' else logit_adjust
            logits = fn(cache['base'], ctx['counts'], v)
        res = long_tail_accuracy(
            logits, cache['y'], metric.splits, metric.num_classes, topk=(1, ))
        res.pop('per_class')
        rows.append(res)
    return rows


# -------------------------------------------------------- segmentation
#: the tool's knob names -> lt_mm.seg.posthoc_sweep.KNOBS
SEG_KNOBS = dict(taunorm='tau_norm')


def seg_prepare(args, cfg) -> dict:
    """Model, decode head and pixel counts of an mmseg config."""
    model = build_model(cfg, args.checkpoint, args.allow_missing_keys)
    head = model.decode_head
    n = head.num_classes
    if args.stats_file:
        from lt_mm.core.stats import resolve_counts
        counts = resolve_counts(
            stats_file=args.stats_file, num_classes=n, unit='pixels')
    elif getattr(head, 'posthoc', None) is not None:
        counts = head.posthoc.counts.tolist()
    else:
        counts = _training_counts(cfg, 'pixels', n)
    return dict(model=model, head=head, counts=counts, groups=None)


def seg_check(ctx, name, values) -> Optional[str]:
    """Try one value on a zero map: the library's ValueError, or None."""
    import torch

    from lt_mm.seg.posthoc_sweep import knob_logits
    if name in ('ncm_scale', 'model'):
        return 'detection only'
    head = ctx['head']
    feat = torch.zeros(1, head.channels, 1, 1)
    try:
        knob_logits(head, SEG_KNOBS.get(name, name), values[0], feat,
                    ctx['counts'])
    except ValueError as e:
        return str(e)
    return None


def seg_extract(ctx, cfg, split, args):
    """Pre-classifier maps once (lt_mm.seg.posthoc_sweep.extract_split)."""
    import torch
    from mmengine.runner import Runner

    from lt_mm.seg.posthoc_sweep import extract_split
    loader = Runner.build_dataloader(_loader_cfg(cfg, split))
    metric = _metrics_registry(cfg).build(_evaluator_cfg(cfg, split))
    metric.dataset_meta = loader.dataset.metainfo
    cached = extract_split(ctx['model'], loader, args.max_images,
                           getattr(torch, args.feat_dtype))
    return dict(cached=cached, metric=metric), len(cached)


def seg_curve(ctx, cache, name, values) -> List[dict]:
    """HeadBodyTailIoUMetric of every value of one knob."""
    from lt_mm.seg.posthoc_sweep import sweep
    knob = SEG_KNOBS.get(name, name)
    with _quiet_logger():
        out = sweep(ctx['head'], cache['cached'], cache['metric'],
                    {knob: values}, ctx['counts'])
    return [_scalars(m) for _, m in out[knob]]


# ----------------------------------------------------------- detection
def det_prepare(args, cfg) -> dict:
    """Detector, box classifier and foreground counts of an mmdet config."""
    from lt_mm.det.posthoc_sweep import _box_head
    model = build_model(cfg, args.checkpoint, args.allow_missing_keys)
    try:
        _, bbox_head = _box_head(model)
    except ValueError as e:
        raise SystemExit(f'lt_mm: {e}')
    fc_cls = bbox_head.fc_cls
    n = bbox_head.num_classes
    if args.stats_file:
        from lt_mm.det.counts import resolve_det_counts
        counts = resolve_det_counts(stats_file=args.stats_file, num_classes=n)
    elif getattr(fc_cls, 'posthoc', None) is not None:
        counts = fc_cls.posthoc.counts.tolist()
    else:
        counts = _training_counts(cfg, 'images', n)
    return dict(model=model, fc_cls=fc_cls, counts=counts, groups=None)


def det_check(ctx, name, values) -> Optional[str]:
    """The library's ValueError for this classifier, or None."""
    from lt_mm.det.posthoc_sweep import score_function
    try:
        score_function(ctx['fc_cls'], name, values[0], ctx['counts'])
    except ValueError as e:
        return str(e)
    return None


def det_extract(ctx, cfg, split, args):
    """RoIs, fc_cls inputs and box deltas once (cache_roi_outputs)."""
    import torch
    from mmengine.runner import Runner

    from lt_mm.det.posthoc_sweep import cache_roi_outputs
    if split == 'train':
        raise SystemExit('det: sweep val or test (the LVIS evaluator '
                         'scores the val annotations).')
    loader = Runner.build_dataloader(_loader_cfg(cfg, split))
    metric = _metrics_registry(cfg).build(
        dict(_evaluator_cfg(cfg, split), metric='bbox'))
    metric.dataset_meta = loader.dataset.metainfo
    cache_dir = osp.join(args.cache_dir, split) if args.cache_dir else None
    items = cache_roi_outputs(ctx['model'], loader,
                              getattr(torch, args.feat_dtype), cache_dir)
    return dict(items=items, metric=metric), len(items)


def det_curve(ctx, cache, name, values) -> List[dict]:
    """LVIS box metrics of every value of one rule."""
    from lt_mm.det.posthoc_sweep import sweep
    with _quiet_logger():
        rows = sweep(ctx['model'], cache['items'], cache['metric'],
                     {name: values}, ctx['counts'])
    for row in rows:
        row['metrics'].pop('seconds', None)
    return [_scalars(row['metrics']) for row in rows]


# -------------------------------------------------------------- tasks
@dataclass
class Task:
    """The per-toolbox parts of the sweep."""
    adapter: str
    keys: Tuple[str, ...]
    default_metric: str
    sweeps: Tuple[str, ...]
    extracted: str
    prepare: Callable
    check: Callable
    extract: Callable
    curve: Callable
    digits: int = 2


TASKS = dict(
    mmpretrain=Task('lt_mm.cls', METRIC_KEYS, 'balanced',
                    ('taunorm', 'tde_alpha', 'nc_tau', 'logit_adjust'),
                    'backbone + neck', cls_prepare, cls_check, cls_extract,
                    cls_curve),
    mmseg=Task('lt_mm.seg', SEG_KEYS, 'mIoU',
               ('taunorm', 'tde_alpha', 'nc_tau', 'logit_adjust'),
               'backbone + decode head', seg_prepare, seg_check, seg_extract,
               seg_curve),
    mmdet=Task('lt_mm.det', DET_KEYS, 'lvis/bbox_AP',
               ('model', 'taunorm', 'tde_alpha', 'nc_tau', 'logit_adjust',
                'ncm_scale'), 'backbone + RPN + RoI features', det_prepare,
               det_check, det_extract, det_curve, 4))


def load_task(args):
    """Config (counts filled as tools/train.py does) and its Task."""
    from lt_mm.engine.counts import fill_class_counts
    from lt_mm.engine.runner_utils import load_config
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} does not exist.')
    cfg = load_config(args.config, args.cfg_options)
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise SystemExit(f'default_scope={scope!r}: the sweep supports '
                         f'{sorted(TASKS)} configs.')
    task = TASKS[scope]
    if args.max_images is not None and scope != 'mmseg':
        raise SystemExit('--max-images is for segmentation configs.')
    if args.max_images is not None and args.max_images < 1:
        raise SystemExit(f'--max-images {args.max_images}: give 1 or more.')
    # the class counts of the training set, as tools/train.py gives them
    fill_class_counts(cfg)
    args.metric = _metric_key(task, args.metric)
    return cfg, task


def _metric_key(task, name):
    if name is None:
        return task.default_metric
    for key in task.keys:
        if name == key or key.endswith(('/' + name, '_' + name)):
            return key
    raise SystemExit(f'--metric {name}: choose one of {list(task.keys)}.')


def plan_sweeps(args, task, ctx):
    """(sweeps {name: values}, skipped {name: why}) for this checkpoint."""
    grids = _grids(args)
    sweeps, skipped = {}, {}
    for name in args.sweeps or task.sweeps:
        why = task.check(ctx, name, grids[name])
        if why is None:
            sweeps[name] = grids[name]
        else:
            skipped[name] = why
    return sweeps, skipped


def run_sweeps(args, cfg, task, ctx, sweeps):
    """Extract every needed split once, then every curve on the cache."""
    import torch
    needed = [args.select_on, args.report] if args.select_on else \
        [args.split]
    caches, t_feat, n_img = {}, 0.0, 0
    with torch.no_grad():
        for split in dict.fromkeys(needed):
            t0 = time.perf_counter()
            caches[split], n = task.extract(ctx, cfg, split, args)
            t_feat += time.perf_counter() - t0
            n_img += n
        curves = {}
        t0 = time.perf_counter()
        for split, cache in caches.items():
            curves[split] = {
                name:
                dict(
                    values=values,
                    metrics=task.curve(ctx, cache, name, values))
                for name, values in sweeps.items()
            }
    timing = dict(
        feature_extraction_s=t_feat,
        sweep_s=time.perf_counter() - t0,
        num_images=n_img,
        num_settings=sum(len(v) for v in sweeps.values()) * len(caches))
    return curves, timing


def _best(scores):
    return max(
        range(len(scores)),
        key=lambda i: -1e9 if scores[i] != scores[i] else scores[i])


def select(args, task, curves) -> dict:
    """Each knob's value chosen on --select-on, its --report numbers."""
    print(f'\nselected on {args.select_on} by {args.metric}, reported '
          f'on {args.report}:')
    selected = {}
    for name, sel in curves[args.select_on].items():
        scores = [m.get(args.metric, float('nan')) for m in sel['metrics']]
        best = _best(scores)
        value = sel['values'][best]
        rep = curves[args.report][name]['metrics'][best]
        selected[name] = dict(
            value=value,
            select_score=scores[best],
            report={k: rep[k]
                    for k in task.keys if k in rep})
        print(f'  {LABELS[name]} = {value:g} '
              f'({args.select_on} {args.metric} '
              f'{_fmt(scores[best], task.digits).strip()}) -> '
              f'{args.report}: ' + ', '.join(
                  f'{k} {_fmt(rep.get(k, float("nan")), task.digits).strip()}'
                  for k in task.keys))
    return selected


def report(args, task, curves, skipped, timing):
    """Print the tables, the skipped knobs, the selection and the times."""
    for split, by_name in curves.items():
        for name, c in by_name.items():
            print_table(f'[{split}] {LABELS[name]}', SHORT[name], c['values'],
                        c['metrics'], task.keys, task.digits)
    for name, why in skipped.items():
        print(f'\nskipped {name}: {why}')
    selected = select(args, task, curves) if args.select_on else {}
    print(f'\nfeature extraction ({task.extracted}, {timing["num_images"]} '
          f'images, once): {timing["feature_extraction_s"]:.3f} s | sweeps '
          f'({timing["num_settings"]} settings on cached features): '
          f'{timing["sweep_s"]:.3f} s')
    return selected


def write_json(args, task, ctx, curves, selected, skipped, timing):
    """The curves, the selection, the skipped knobs and the timing."""
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    payload = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        task=task.adapter.split('.')[-1],
        metric_keys=list(task.keys),
        splits=ctx['groups'],
        curves=curves,
        selected=selected,
        skipped=skipped,
        timing=timing)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(_no_nan(payload), f, indent=1)
    print(f'curves written to {args.out}')


def main(argv=None):
    args = parse_args(argv)
    cfg, task = load_task(args)
    ctx = task.prepare(args, cfg)
    sweeps, skipped = plan_sweeps(args, task, ctx)
    if not sweeps:
        # nothing applies: stop before the (long) feature extraction
        # instead of extracting, printing empty tables and exiting 0
        why = '; '.join(f'{k}: {v}' for k, v in skipped.items())
        raise SystemExit(
            f'nothing to sweep for this checkpoint ({why}). Choose --sweeps '
            f'among {", ".join(task.sweeps)} that fit it, or give '
            '--stats-file for the prior rules.')
    warn_same_images(args, cfg)
    curves, timing = run_sweeps(args, cfg, task, ctx, sweeps)
    selected = report(args, task, curves, skipped, timing)
    if args.out:
        write_json(args, task, ctx, curves, selected, skipped, timing)


if __name__ == '__main__':
    main()
