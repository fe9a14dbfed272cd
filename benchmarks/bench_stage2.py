"""Stage 2: standard loop vs. cached features, side by side (cls/seg/det).

For every seed and method (DisAlign, LWS, cRT) the standard stage 2 (the
quickstart config as a user runs it: the frozen backbone runs on every
image of every epoch) and the cached stage 2 (the same config with
``train_cfg`` switched to ``CachedFeatureEpochBasedTrainLoop``,
:mod:`lt_mm.cls.feature_cache`) are trained for the same epochs from the
same stage-1 checkpoint in one process, interleaved (the order alternates
with the seed), with the same number of threads. Printed per run: the
training wall time (``runner.train()``: for the cached run including
building or opening the cache; validation during training is switched off
in both so the timing covers the training epochs), the cache build time,
the ratio as run, the "cold" ratio (as if the run had built the cache
itself), and top-1 / few-shot accuracy of ``runner.test()``; then mean +-
std over seeds and the ratio over all runs. The cache is built once per
seed and reused by the seed's methods (its fingerprint: frozen weights,
data list, pipeline, views, dtype and, for the random training pipeline,
the seed); ``--no-reuse`` makes every cached run build its own.

    python benchmarks/bench_stage2.py                  # 3 seeds, full data
    python benchmarks/bench_stage2.py --seeds 0 1 2 --methods disalign
    python benchmarks/bench_stage2.py --quick          # tiny, agreement only

``--quick``: the tiny quickstart data, one seed, DisAlign, 2 epochs, and a
deterministic training pipeline (the test pipeline) in both runs, so that
the two paths see the same features up to the float16 storage; it checks
that the trained DisAlign parameters agree (tolerance
:data:`QUICK_PARAM_TOL`) and asserts no timing. Acceptance of the full run
(printed, checked with ``--check``): cached >= 10x faster over all runs,
top-1 and few within 1 point (mean over seeds).

``--task seg``: the same for segmentation (``digits_seg_<method>.py``, the
tiny FCN, ``CachedFeatureIterBasedTrainLoop`` of
:mod:`lt_mm.seg.feature_cache` caching the whole pre-classifier maps);
``--epochs`` then sets ``max_iters``, the metrics are mIoU and tail mIoU,
and ``--quick`` (6 iterations) also switches the decode head's dropout off
(the cached loop re-draws it after the cache with other random numbers).
The accuracy acceptance is the same (1 point of mIoU / tail mIoU); the
speed-up is smaller than for classification because the per-step cost of
the decode head's loss at label resolution (bilinear resize of the logits
to 64 x 64 + cross-entropy) remains.

    python benchmarks/bench_stage2.py --task seg --quick

``--task det``: the same for detection (``digits_det_<method>.py``, the
tiny Mask R-CNN, ``CachedRoIFeatureEpochBasedTrainLoop`` of
:mod:`lt_mm.det.feature_cache` caching the input of
``roi_head.bbox_head.fc_cls`` for the sampled RoIs); the metrics are LVIS
box AP and APr. ``--quick`` (1 epoch) makes both paths deterministic in
the detection way: ``RandomFlip(prob=0)`` instead of the test pipeline
(mmdet's test pipelines load the boxes after ``Resize``) and a RoI sampler
that keeps every proposal (``num=1024``), so both see the same RoIs.

    python benchmarks/bench_stage2.py --task det --quick
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

from mmengine.hooks import Hook

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

METHODS = {
    'disalign': 'digits_cls_disalign.py',
    'lws': 'digits_cls_lws.py',
    'crt': 'digits_cls_crt.py',
}
STAGE1 = 'digits_cls_resnet_stage1.py'
# per task: stage-2 configs, stage-1 config, scope, the two reported metrics
# (labels), the trained parameters' prefix, the schedule length key, the
# module with use_cached_features, quick stage-1 options and quick length
TASKS = {
    'cls':
    dict(
        methods=METHODS,
        stage1=STAGE1,
        scope='mmpretrain',
        metrics=('accuracy/top1', 'accuracy/few'),
        labels=('top-1', 'few'),
        prefix='head.',
        length='max_epochs',
        module='lt_mm.cls.feature_cache',
        quick_stage1=['train_cfg.max_epochs=2', 'train_cfg.val_interval=2'],
        quick_length=2),
    'seg':
    dict(
        methods={
            'disalign': 'digits_seg_disalign.py',
            'lws': 'digits_seg_lws.py',
            'crt': 'digits_seg_crt.py',
        },
        stage1='digits_seg_fcn_stage1.py',
        scope='mmseg',
        metrics=('mIoU', 'mIoU_tail'),
        labels=('mIoU', 'tail'),
        prefix='decode_head.conv_seg.',
        length='max_iters',
        module='lt_mm.seg.feature_cache',
        quick_stage1=[
            'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
            'param_scheduler.0.end=4'
        ],
        quick_length=6),
    'det':
    dict(
        methods={
            'disalign': 'digits_det_disalign.py',
            'lws': 'digits_det_lws.py',
            'crt': 'digits_det_crt.py',
        },
        stage1='digits_det_mask_rcnn_stage1.py',
        scope='mmdet',
        metrics=('lvis/bbox_AP', 'lvis/bbox_APr'),
        # LVIS metrics are fractions: percent points like cls / seg
        scale=100.0,
        labels=('box AP', 'APr'),
        prefix='roi_head.bbox_head.fc_cls.',
        length='max_epochs',
        module='lt_mm.det.feature_cache',
        quick_stage1=[
            'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
            'param_scheduler.0.end=4'
        ],
        quick_length=1),
}
# --quick: the trained head parameters of both paths agree to this absolute
# tolerance. The features differ only by float16 rounding (relative error
# <= 2**-11 ~ 4.9e-4 per element); the head parameters are a smooth function
# of the features and move by > 5e-2 in the 2 quick epochs, so a difference
# of the order of the feature rounding is the first-order bound (measured:
# ~1e-6; a float32 cache gives 0). A wrong sampler order or loss moves them
# by > 1e-2.
QUICK_PARAM_TOL = 2.0**-11


class _Clock(Hook):
    """Records ``before_train`` (``'start'``) or ``after_train``
    (``'end'``) time: the training loop (cache build + epochs + checkpoint)
    without the Runner's setup (optimizer, checkpoint loading, hooks'
    ``before_run``)."""

    priority = 'NORMAL'

    def __init__(self, clock: Dict[str, float], which: str) -> None:
        self.clock = clock
        self.which = which

    def before_train(self, runner) -> None:
        if self.which == 'start':
            self.clock['start'] = time.perf_counter()

    def after_train(self, runner) -> None:
        if self.which == 'end':
            self.clock['end'] = time.perf_counter()


def _train_test(config: str,
                work_dir: str,
                load_from: str,
                seed: int,
                options: Sequence[str],
                cached: Optional[dict],
                deterministic_pipeline: bool,
                task: str = 'cls') -> dict:
    """Train stage 2 (standard or cached) and test it, in-process."""
    import importlib

    from mmengine.registry import DefaultScope
    spec = TASKS[task]
    with DefaultScope.overwrite_default_scope(spec['scope']):
        return _train_test_in_scope(
            config, work_dir, load_from, seed, options, cached,
            deterministic_pipeline, spec,
            importlib.import_module(spec['module']).use_cached_features)


def _train_test_in_scope(config, work_dir, load_from, seed, options, cached,
                         deterministic_pipeline, spec,
                         use_cached_features) -> dict:
    import torch
    from mmengine.model import is_model_wrapper

    from lt_mm.engine.runner_utils import build_runner, load_config
    from lt_mm.quickstart.runs import QUICKSTART_CONFIGS, _options_to_dict
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    opts = list(options) + [f'randomness.seed={seed}']
    cfg = load_config(
        osp.join(QUICKSTART_CONFIGS, config), _options_to_dict(opts), work_dir)
    cfg.load_from = load_from
    cfg.log_level = 'WARNING'
    # time the training epochs only: no validation inside runner.train()
    cfg.val_cfg = None
    cfg.val_dataloader = None
    cfg.val_evaluator = None
    if deterministic_pipeline and spec['scope'] == 'mmdet':
        # det: no flip; the RoI sampler keeps every proposal (same RoIs)
        for t in cfg.train_dataloader.dataset.pipeline:
            if t['type'] == 'RandomFlip':
                t['prob'] = 0.0
        cfg.model.train_cfg.rcnn.sampler.num = 1024
    elif deterministic_pipeline:
        cfg.train_dataloader.dataset.pipeline = \
            cfg.test_dataloader.dataset.pipeline
        if spec['length'] == 'max_iters':  # seg: no decode-head dropout
            cfg.model.decode_head.dropout_ratio = 0.0
    # one checkpoint, at the end (saving costs the same in both paths)
    cfg.default_hooks.checkpoint.interval = cfg.train_cfg[spec['length']]
    if cached is not None:
        use_cached_features(cfg, **cached)
    runner = build_runner(cfg, 'none')
    clock: Dict[str, float] = {}
    runner.register_hook(_Clock(clock, 'start'), priority='HIGHEST')
    runner.register_hook(_Clock(clock, 'end'), priority='LOWEST')
    t0 = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - t0
    loop = runner.train_loop
    metrics = runner.test()
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    head = {
        k: v.detach().cpu().clone()
        for k, v in model.state_dict().items()
        if k.startswith(spec['prefix']) and torch.is_floating_point(v)
    }
    return dict(
        train_s=train_s,
        loop_s=clock['end'] - clock['start'],
        cache_s=float(getattr(loop, 'cache_seconds', 0.0)),
        reused=bool(getattr(loop, 'cache_reused', False)),
        top1=spec.get('scale', 1.0) * float(metrics[spec['metrics'][0]]),
        few=spec.get('scale', 1.0) * float(metrics[spec['metrics'][1]]),
        head=head)


def _stage1(work_dir: str, quick: bool, log, task: str = 'cls') -> str:
    from mmengine.registry import DefaultScope

    from lt_mm.quickstart.runs import find_checkpoint, run_config
    spec = TASKS[task]
    s1_dir = osp.join(work_dir,
                      'stage1' if task == 'cls' else f'stage1_{task}')
    ckpt = find_checkpoint(s1_dir)
    if ckpt is not None:
        log(f'stage 1: reusing {ckpt}')
        return ckpt
    opts = spec['quick_stage1'] if quick else []
    log('stage 1: training ' + spec['stage1'] + ' ...')
    with DefaultScope.overwrite_default_scope(spec['scope']):
        res = run_config(spec['stage1'], s1_dir, train=True, options=opts)
    log(f"stage 1: {res.seconds:.0f} s, {spec['labels'][0]} "
        f"{res.metrics.get(spec['metrics'][0], float('nan')):.2f}")
    return res.checkpoint


def _fmt_ms(values: List[float]) -> str:
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}'


def _fmt_paired(cached: Sequence[float], standard: Sequence[float]) -> str:
    """Per-seed differences: mean +- std (standard error of the mean)."""
    d = [c - s for c, s in zip(cached, standard)]
    if len(d) < 2:
        return f'{d[0]:+.2f}'
    sd = statistics.stdev(d)
    return f'{statistics.mean(d):+.2f} +- {sd:.2f} ({sd / len(d)**0.5:.2f})'


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, list]:
    """Run the benchmark; returns the rows (also printed)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true')
    p.add_argument('--task', choices=sorted(TASKS), default='cls')
    p.add_argument('--seeds', type=int, nargs='+', default=None)
    p.add_argument(
        '--methods', nargs='+', choices=sorted(METHODS), default=None)
    p.add_argument(
        '--work-dir', default=osp.join(REPO, 'work_dirs', 'bench_stage2'))
    p.add_argument(
        '--data-root',
        default=None,
        help='existing LT_MM_DATA_ROOT (default: build the '
        'quickstart data under the work dir)')
    p.add_argument(
        '--stage1',
        default=None,
        help='stage-1 checkpoint (default: train / reuse one)')
    p.add_argument(
        '--epochs',
        type=int,
        default=None,
        help='override max_epochs (cls, det) / max_iters (seg) of every '
        'method')
    p.add_argument('--views', type=int, default=1)
    p.add_argument(
        '--cache-batch-size',
        type=int,
        default=None,
        help='batch size of the cache extraction (default: the training '
        "dataloader's)")
    p.add_argument('--dtype', default='float16')
    p.add_argument('--pipeline', default='train')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument(
        '--no-channels-last',
        action='store_true',
        help='cls: extract with contiguous (NCHW) image batches')
    p.add_argument(
        '--no-fuse-conv-bn',
        action='store_true',
        help='cls: extract without folding BatchNorm into the convolutions')
    p.add_argument(
        '--view-allocation',
        choices=('uniform', 'class_balanced'),
        default='uniform',
        help="cls: 'class_balanced' gives an image of class c "
        'ceil(views * N_min / N_c) views (lt_mm.cls.feature_cache)')
    p.add_argument(
        '--no-reuse',
        action='store_true',
        help='every cached run builds its own cache')
    p.add_argument(
        '--check',
        action='store_true',
        help='exit 1 unless the acceptance holds')
    args = p.parse_args(argv)
    spec = TASKS[args.task]
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    methods = args.methods or (['disalign']
                               if args.quick else ['disalign', 'lws', 'crt'])
    epochs = args.epochs or (spec['quick_length'] if args.quick else None)
    length = spec['length']
    lab1, lab2 = spec['labels']

    import torch
    torch.set_num_threads(args.threads)
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.data_root is None:
        from lt_mm.quickstart.data import build_task_data
        args.data_root = osp.join(work_dir,
                                  'data_fast' if args.quick else 'data')
        build_task_data(
            args.task,
            osp.join(args.data_root, args.task),
            size='fast' if args.quick else 'full',
            seed=0)
    os.environ['LT_MM_DATA_ROOT'] = osp.abspath(args.data_root)
    stage1 = args.stage1 or _stage1(work_dir, args.quick, log, args.task)

    options = ['default_hooks.logger.interval=1000']
    if epochs is not None:
        options += [
            f'train_cfg.{length}={epochs}',
            f'default_hooks.checkpoint.interval={epochs}'
        ]
    cache_root = osp.join(work_dir, 'cache')
    shutil.rmtree(cache_root, ignore_errors=True)
    rows: Dict[str, list] = {m: [] for m in methods}
    log(f'task={args.task} threads={args.threads} seeds={seeds} '
        f'methods={methods} '
        f'views={args.views} dtype={args.dtype} pipeline={args.pipeline} '
        f'reuse={not args.no_reuse} '
        f'channels_last={not args.no_channels_last} '
        f'fuse_conv_bn={not args.no_fuse_conv_bn} '
        f'view_allocation={args.view_allocation} stage1={stage1}')
    log(f"{'method':9s} {'seed':>4s} {'standard s':>10s} {'cached s':>9s} "
        f"{'build s':>8s} {'ratio':>6s} {'cold':>6s} {'warm':>6s} "
        f"{'train() ratio':>13s} {lab1 + ' std/cached':>17s} "
        f"{lab2 + ' std/cached':>15s}")
    total = dict(
        standard=0.0, cached=0.0, standard_train=0.0, cached_train=0.0)
    for seed in seeds:
        # one cache per seed (the random training pipeline's crops depend
        # on it), shared by the methods of the seed unless --no-reuse
        cached = dict(
            views=args.views,
            dtype=args.dtype,
            pipeline=args.pipeline,
            batch_size=args.cache_batch_size,
            dir=osp.join(cache_root, f's{seed}'),
            reuse=not args.no_reuse,
            keep=not args.no_reuse)
        if args.task == 'cls':
            cached['channels_last'] = not args.no_channels_last
            cached['view_allocation'] = args.view_allocation
            cached['fuse_conv_bn'] = not args.no_fuse_conv_bn
        elif args.view_allocation != 'uniform':
            p.error('--view-allocation is a classification option')
        build_s = None
        for method in methods:
            runs = {}
            order = ('standard', 'cached') if seed % 2 == 0 else ('cached',
                                                                  'standard')
            for kind in order:
                runs[kind] = _train_test(
                    spec['methods'][method],
                    osp.join(work_dir, 'runs', f'{method}_s{seed}_{kind}'),
                    stage1,
                    seed,
                    options,
                    cached if kind == 'cached' else None,
                    deterministic_pipeline=args.quick,
                    task=args.task)
            s, c = runs['standard'], runs['cached']
            if not c['reused']:
                build_s = c['cache_s']
            epochs_only = c['loop_s'] - c['cache_s']
            total['standard'] += s['loop_s']
            total['cached'] += c['loop_s']
            total['standard_train'] += s['train_s']
            total['cached_train'] += c['train_s']
            row = dict(
                seed=seed,
                standard_s=s['loop_s'],
                cached_s=c['loop_s'],
                cache_s=c['cache_s'],
                reused=c['reused'],
                ratio=s['loop_s'] / c['loop_s'],
                # as if this run had built the cache itself
                cold_ratio=s['loop_s'] / (epochs_only + build_s),
                # on a cache built before
                warm_ratio=s['loop_s'] / max(epochs_only, 1e-9),
                train_ratio=s['train_s'] / c['train_s'],
                top1=(s['top1'], c['top1']),
                few=(s['few'], c['few']),
                param_diff=max(
                    float((s['head'][k] - c['head'][k]).abs().max())
                    for k in s['head']))
            rows[method].append(row)
            build = 'reused' if c['reused'] else f"{c['cache_s']:.2f}"
            log(f"{method:9s} {seed:4d} {row['standard_s']:10.2f} "
                f"{row['cached_s']:9.2f} {build:>8s} {row['ratio']:6.1f} "
                f"{row['cold_ratio']:6.1f} {row['warm_ratio']:6.1f} "
                f"{row['train_ratio']:13.1f} "
                f"{s['top1']:8.2f}/{c['top1']:<8.2f} "
                f"{s['few']:7.2f}/{c['few']:<7.2f}")
    log('')
    log('training loop wall time (cache build + epochs + checkpoint); ratio: '
        'as run; cold: each run building its own cache; warm: on a built '
        'cache; train() ratio: whole runner.train() incl. Runner setup.')
    log('mean +- std over seeds:')
    ok = True
    for method, rs in rows.items():
        t1s, t1c = [r['top1'][0] for r in rs], [r['top1'][1] for r in rs]
        fs, fc = [r['few'][0] for r in rs], [r['few'][1] for r in rs]
        d_top1 = statistics.mean(t1c) - statistics.mean(t1s)
        d_few = statistics.mean(fc) - statistics.mean(fs)
        log(f'{method:9s} standard {_fmt_ms([r["standard_s"] for r in rs])}'
            f' s, cached {_fmt_ms([r["cached_s"] for r in rs])} s; ratio '
            f'{_fmt_ms([r["ratio"] for r in rs])}x, cold '
            f'{_fmt_ms([r["cold_ratio"] for r in rs])}x, warm '
            f'{_fmt_ms([r["warm_ratio"] for r in rs])}x, train() '
            f'{_fmt_ms([r["train_ratio"] for r in rs])}x')
        log(f'{"":9s} {lab1} standard {_fmt_ms(t1s)} cached '
            f'{_fmt_ms(t1c)} (diff {d_top1:+.2f}); {lab2} standard '
            f'{_fmt_ms(fs)} cached {_fmt_ms(fc)} (diff {d_few:+.2f}); max '
            f'|head param diff| {max(r["param_diff"] for r in rs):.2e}')
        log(f'{"":9s} paired cached - standard per seed (mean +- std, '
            f'standard error): {lab1} {_fmt_paired(t1c, t1s)}; {lab2} '
            f'{_fmt_paired(fc, fs)}')
        if args.quick:
            diff = max(r['param_diff'] for r in rs)
            if diff > QUICK_PARAM_TOL:
                raise AssertionError(
                    f'{method}: cached and standard stage 2 disagree: max '
                    f'head parameter difference {diff:.3e} > '
                    f'{QUICK_PARAM_TOL}')
        else:
            acc_ok = abs(d_top1) <= 1 and abs(d_few) <= 1
            ok &= acc_ok
            log(f'{"":9s} {lab1} / {lab2} within 1 point: '
                f"{'PASS' if acc_ok else 'FAIL'}")
    ratio = total['standard'] / total['cached']
    log(f"all runs, training loops: standard {total['standard']:.1f} s, "
        f"cached {total['cached']:.1f} s (cache built once per seed): "
        f"{ratio:.1f}x; whole runner.train(): "
        f"{total['standard_train']:.1f} s vs {total['cached_train']:.1f} s "
        f"({total['standard_train'] / total['cached_train']:.1f}x)")
    if not args.quick:
        ok &= ratio >= 10
        log(f"acceptance (>= 10x over all runs, accuracy within 1 point): "
            f"{'PASS' if ok else 'FAIL'}")
    if args.check and not ok:
        raise SystemExit(1)
    return rows


if __name__ == '__main__':
    main()
