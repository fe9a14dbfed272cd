# Copyright (c) lt_mm contributors.
"""lt_mm quickstart: long-tail methods on all three tasks in minutes, on CPU.

With nothing on disk it

1. builds long-tailed data sets from scikit-learn's bundled handwritten
   digits (real images) in the real on-disk formats: ImageNet-LT lists
   (10 classes, imbalance ratio 50, balanced test split), an ADE20K folder
   layout (digit mosaics, long-tailed pixel frequencies, 0 = other) and an
   LVIS v1 json (digits on canvases with boxes and masks, r/c/f);
2. trains a small stage-1 model per task, then runs the methods through the
   configs in ``configs/quickstart`` (the same registries and tools a user
   runs): classification DisAlign, TDE, tau-norm, LWS, cRT, NCM, CDT;
   segmentation DisAlign, TDE, CDT, tau-norm; detection DisAlign, TDE,
   tau-norm;
3. prints one results table per task and writes them as markdown and JSON,
   plus PNG plots: per-class accuracy against training frequency, classifier
   weight norms before/after tau-norm and LWS, and the alpha / tau sweeps.

Everything lands under ``--work-dir`` (default ``work_dirs/quickstart``);
a stage-1 checkpoint already there is reused when it was trained with the
same settings (seed, ``--fast``) and never overwritten: with other settings
the run stops before any work and names the folder.

    python tools/quickstart.py [--work-dir DIR] [--tasks cls seg det]
                               [--fast] [--seed 0 | --seeds 3] [--jobs N]

The tasks of a seed are independent and run side by side in ``--jobs``
worker processes (default: one per task, at most one per CPU core; the
numbers equal a one-process run, ``--jobs 1``).

``--seeds 3`` (or ``--seeds 0 1 2``) repeats everything -- data, stage 1,
every method -- per seed under ``WORK_DIR/seed_<s>`` and reports the mean
and the standard deviation of every column over the seeds.
"""
import argparse
import os
import os.path as osp
import runpy
import sys
import time
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='lt_mm quickstart')
    p.add_argument('--work-dir', default='work_dirs/quickstart')
    p.add_argument(
        '--tasks',
        nargs='+',
        default=['cls', 'seg', 'det'],
        choices=['cls', 'seg', 'det'])
    p.add_argument(
        '--methods',
        nargs='+',
        help='only these methods (names as in the '
        'tables, e.g. DisAlign TDE)')
    p.add_argument(
        '--all',
        action='store_true',
        help='also the extra method x task cells (seg LWS / cRT / NCM / '
        'post-hoc priors / cosine, det LWS / cRT / NCM / post-hoc priors); '
        'the default set keeps the single-seed run within ~10 minutes')
    p.add_argument(
        '--fast',
        action='store_true',
        help='tiny data and schedules (seconds per run; used by the tests)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument(
        '--jobs',
        type=int,
        default=None,
        help='worker processes that run the tasks side by side (default: '
        'the number of tasks or of CPU cores, whichever is smaller; 1 runs '
        'everything in this process). Each worker gets cores / jobs '
        'threads unless OMP_NUM_THREADS is set')
    p.add_argument(
        '--seeds',
        nargs='+',
        type=int,
        help='evidence over several seeds: "--seeds 3" runs seeds 0 1 2, '
        '"--seeds 4 7" runs seeds 4 and 7; every seed builds its own data '
        'and models under WORK_DIR/seed_<s> and results.md / results.json '
        'give mean ± std per column')
    return p.parse_args(argv)


def _sweep(config, ckpt, out, log):
    """Run tools/analysis/sweep_posthoc.py in-process; returns its JSON."""
    import contextlib
    import io
    import json

    from lt_mm.quickstart.report import tool_path
    argv = [
        config, ckpt, '--select-on', 'val', '--report', 'test', '--out', out
    ]
    buf = io.StringIO()
    saved = sys.argv
    try:
        sys.argv = ['sweep_posthoc.py'] + argv
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            runpy.run_path(
                tool_path('analysis', 'sweep_posthoc.py'), run_name='__main__')
    finally:
        sys.argv = saved
    for line in buf.getvalue().splitlines():
        if line.startswith(('  ', 'feature extraction')) and '->' in line \
                or line.startswith('feature extraction'):
            log('    ' + line.strip())
    with open(out) as f:
        return json.load(f)


def run_seed(args, seed, work_dir, log):
    """Data, stage 1, every method and the plots for one seed.

    Writes ``work_dir/results.md`` / ``results.json``; returns the tables
    ({task: rows}) and the paths of the plots.
    """
    t_start = time.time()
    data_root = osp.join(work_dir, 'data')
    os.environ['LT_MM_DATA_ROOT'] = data_root

    from lt_mm.quickstart.data import build_task_data
    from lt_mm.quickstart.report import (classifier_norms,
                                         plot_per_class_accuracy, plot_sweeps,
                                         plot_weight_norms, print_table,
                                         results_table, write_tables)
    from lt_mm.quickstart.runs import (BASELINE, QUICKSTART_CONFIGS, run_task,
                                       run_tasks_parallel)

    size = 'fast' if args.fast else 'full'
    summaries = {}
    for task in args.tasks:
        log(f'data: building the {task} set from sklearn digits ({size}, '
            f'seed {seed})')
        summaries[task] = build_task_data(
            task, osp.join(data_root, task), size=size, seed=seed)

    tables, plots = {}, []
    kwargs = dict(
        fast=args.fast, methods=args.methods, seed=seed, all_methods=args.all)
    if args.jobs > 1:
        all_results = run_tasks_parallel(args.tasks, work_dir, args.jobs, log,
                                         **kwargs)
    else:
        all_results = {
            task: run_task(task, work_dir, log=log, **kwargs)
            for task in args.tasks
        }
    for task, results in all_results.items():
        tables[task] = results_table(task, results)
        print_table(task, tables[task])

    if 'cls' in all_results:
        res = all_results['cls']
        counts = summaries['cls']['counts']
        p = plot_per_class_accuracy(
            osp.join(work_dir, 'cls_per_class_accuracy.png'), counts, res)
        plots += [p] if p else []
        lws = res.get('LWS')
        norms = classifier_norms(res[BASELINE].checkpoint,
                                 lws.checkpoint if lws else None)
        plots.append(
            plot_weight_norms(
                osp.join(work_dir, 'cls_weight_norms.png'), counts, norms))
        log('sweeps on cached features (tools/analysis/sweep_posthoc.py)')
        sweeps = {
            'stage 1':
            _sweep(
                osp.join(QUICKSTART_CONFIGS, 'digits_cls_resnet_stage1.py'),
                res[BASELINE].checkpoint,
                osp.join(work_dir, 'cls', 'sweep_stage1.json'), log)
        }
        if 'TDE' in res and res['TDE'].checkpoint:
            sweeps['TDE'] = _sweep(
                osp.join(QUICKSTART_CONFIGS, 'digits_cls_tde.py'),
                res['TDE'].checkpoint,
                osp.join(work_dir, 'cls', 'sweep_tde.json'), log)
        p = plot_sweeps(osp.join(work_dir, 'cls_sweeps.png'), sweeps)
        plots += [p] if p else []

    elapsed = time.time() - t_start
    extra = {
        'elapsed_seconds': round(elapsed, 1),
        'mode': size,
        'seed': seed,
        'metrics': METRICS_NOTE,
    }
    write_tables(
        osp.join(work_dir, 'results.md'), osp.join(work_dir, 'results.json'),
        tables, extra)
    return tables, plots


METRICS_NOTE = ('percent; cls: top-1 on the balanced test split, '
                'many (> 25) / medium / few (< 10) by training images; seg: '
                'IoU, head/body/tail by training pixel share; det: LVIS AP '
                '(bbox; mask AP: segm), r (<= 2) / c (3-6) / f (>= 7) by '
                'training images')


def job_count(jobs, num_tasks):
    """``--jobs`` -> worker processes: at most one per task; by default
    also at most one per CPU core."""
    from lt_mm.quickstart.runs import available_cpus
    if jobs is None:
        jobs = available_cpus()
    elif jobs < 1:
        raise SystemExit(f'--jobs {jobs}: give 1 (one process) or more.')
    return max(1, min(jobs, num_tasks))


def seed_list(seeds):
    """``--seeds K`` -> 0 .. K-1; ``--seeds a b c`` -> those seeds."""
    if len(seeds) == 1:
        if seeds[0] < 1:
            raise SystemExit(f'--seeds {seeds[0]}: give a number of seeds '
                             '>= 1 or several seeds (e.g. --seeds 0 1 2).')
        return list(range(seeds[0]))
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f'--seeds {seeds}: seeds repeat.')
    for seed in seeds:
        check_seed(seed, '--seeds')
    return list(seeds)


def check_seed(seed, option='--seed'):
    """numpy / mmengine seeds are 0 .. 2**32 - 1; refused before any data
    is written."""
    if not 0 <= seed < 2**32:
        raise SystemExit(f'{option} {seed}: seeds are 0 .. 2**32 - 1 '
                         '(numpy and mmengine seeds).')
    return seed


def check_tasks(tasks):
    """A task named twice would run twice, side by side, in one work dir
    (two trainings writing the same checkpoints)."""
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise SystemExit(f'--tasks {" ".join(tasks)}: {", ".join(repeated)} '
                         'named more than once; name each task once.')


def check_stage1(args, seeds_and_dirs):
    """Before any data is written: a stage-1 checkpoint already in a work
    dir must have been trained with this run's settings (seed, --fast, data;
    :func:`lt_mm.quickstart.runs.reusable_stage1`), since it is reused and
    never overwritten."""
    from lt_mm.quickstart.runs import Stage1Mismatch, reusable_stage1
    for seed, work_dir in seeds_and_dirs:
        for task in args.tasks:
            try:
                reusable_stage1(task, work_dir, args.fast, seed)
            except Stage1Mismatch as exc:
                raise SystemExit(f'--work-dir {args.work_dir}: {exc}')


def check_methods(methods, tasks):
    """``--methods`` names that no chosen task has stop the run before any
    data or stage 1 is built (a misspelt name used to run only the
    baselines and exit 0)."""
    if not methods:
        return
    from lt_mm.quickstart.runs import TASKS
    known = {t: [m.name for m in TASKS[t].methods] for t in tasks}
    unknown = [m for m in methods if not any(m in v for v in known.values())]
    if unknown:
        listed = '; '.join(f'{t}: {", ".join(v)}' for t, v in known.items())
        raise SystemExit(
            f'--methods {" ".join(unknown)}: no such method in --tasks '
            f'{" ".join(tasks)} (names are case-sensitive). Choose from '
            f'{listed}.')


def main(argv=None):
    args = parse_args(argv)
    check_tasks(args.tasks)
    check_methods(args.methods, args.tasks)
    check_seed(args.seed)
    if args.seeds is not None and args.seed != 0:
        raise SystemExit(f'--seed {args.seed} and --seeds {args.seeds}: '
                         'give one of them (--seeds 4 runs seeds 0-3, '
                         '--seeds 7 8 runs seeds 7 and 8).')
    args.jobs = job_count(args.jobs, len(args.tasks))
    t_start = time.time()
    work_dir = osp.abspath(args.work_dir)
    os.environ.setdefault('MPLBACKEND', 'Agg')

    from lt_mm.quickstart.runs import ElapsedLog
    log = ElapsedLog(t_start)
    log(f'tasks {" ".join(args.tasks)}: ' +
        (f'side by side in {args.jobs} worker processes (--jobs)' if args.
         jobs > 1 else 'one after another in this process'))

    if args.seeds is None:
        check_stage1(args, [(args.seed, work_dir)])
        tables, plots = run_seed(args, args.seed, work_dir, log)
        md = osp.join(work_dir, 'results.md')
        js = osp.join(work_dir, 'results.json')
        print(f'\nresults: {md}\n         {js}')
        for p in plots:
            print(f'plot:    {p}')
        elapsed = time.time() - t_start
        print(f'quickstart finished in {elapsed:.0f} s '
              f'({elapsed / 60:.1f} min)')
        return tables

    from lt_mm.quickstart.report import (aggregate_tables, paired_differences,
                                         print_aggregate_table,
                                         print_paired_table, write_aggregate)
    seeds = seed_list(args.seeds)
    check_stage1(args, [(s, osp.join(work_dir, f'seed_{s}')) for s in seeds])
    per_seed, seconds = {}, {}
    for seed in seeds:
        t0 = time.time()
        log(f'=== seed {seed} ({seeds.index(seed) + 1} of {len(seeds)}) ===')
        per_seed[seed], _ = run_seed(args, seed,
                                     osp.join(work_dir, f'seed_{seed}'), log)
        seconds[seed] = round(time.time() - t0, 1)
        log(f'=== seed {seed} done in {seconds[seed]:.0f} s ===')
    agg = aggregate_tables(per_seed)
    for task, rows in agg.items():
        print_aggregate_table(task, rows, len(seeds))
    for task, rows in paired_differences(per_seed).items():
        print_paired_table(task, rows)
    elapsed = time.time() - t_start
    extra = {
        'elapsed_seconds': round(elapsed, 1),
        'seconds_per_seed': seconds,
        'mode': 'fast' if args.fast else 'full',
        'seeds': seeds,
        'statistic': 'mean ± sample standard deviation (n - 1) over seeds; '
        'each seed builds its own data and trains its own models',
        'metrics': METRICS_NOTE,
    }
    md = osp.join(work_dir, 'results.md')
    js = osp.join(work_dir, 'results.json')
    write_aggregate(md, js, agg, per_seed, extra)
    print(f'\nresults: {md}\n         {js}')
    print(f'quickstart ({len(seeds)} seeds) finished in {elapsed:.0f} s '
          f'({elapsed / 60:.1f} min)')
    return agg


if __name__ == '__main__':
    main()
