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
a stage-1 checkpoint already there is reused, never overwritten.

    python tools/quickstart.py [--work-dir DIR] [--tasks cls seg det]
                               [--fast] [--seed 0]
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
        '--tasks', nargs='+', default=['cls', 'seg', 'det'],
        choices=['cls', 'seg', 'det'])
    p.add_argument(
        '--methods', nargs='+', help='only these methods (names as in the '
        'tables, e.g. DisAlign TDE)')
    p.add_argument(
        '--fast',
        action='store_true',
        help='tiny data and schedules (seconds per run; used by the tests)')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def _sweep(config, ckpt, out, log):
    """Run tools/analysis/sweep_posthoc.py in-process; returns its JSON."""
    import contextlib
    import io
    import json

    from lt_mm.quickstart.report import tool_path
    argv = [config, ckpt, '--select-on', 'val', '--report', 'test', '--out',
            out]
    buf = io.StringIO()
    saved = sys.argv
    try:
        sys.argv = ['sweep_posthoc.py'] + argv
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            runpy.run_path(
                tool_path('analysis', 'sweep_posthoc.py'),
                run_name='__main__')
    finally:
        sys.argv = saved
    for line in buf.getvalue().splitlines():
        if line.startswith(('  ', 'feature extraction')) and '->' in line \
                or line.startswith('feature extraction'):
            log('    ' + line.strip())
    with open(out) as f:
        return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    work_dir = osp.abspath(args.work_dir)
    data_root = osp.join(work_dir, 'data')
    os.environ['LT_MM_DATA_ROOT'] = data_root
    os.environ.setdefault('MPLBACKEND', 'Agg')

    def log(msg):
        print(f'[{time.time() - t_start:6.1f}s] {msg}', flush=True)

    from lt_mm.quickstart.data import build_task_data
    from lt_mm.quickstart.report import (classifier_norms,
                                         plot_per_class_accuracy, plot_sweeps,
                                         plot_weight_norms, print_table,
                                         results_table, write_tables)
    from lt_mm.quickstart.runs import QUICKSTART_CONFIGS, run_task

    size = 'fast' if args.fast else 'full'
    summaries = {}
    for task in args.tasks:
        log(f'data: building the {task} set from sklearn digits ({size})')
        summaries[task] = build_task_data(
            task, osp.join(data_root, task), size=size, seed=args.seed)

    tables, plots, all_results = {}, [], {}
    for task in args.tasks:
        results = run_task(
            task,
            work_dir,
            fast=args.fast,
            methods=args.methods,
            seed=args.seed,
            log=log)
        all_results[task] = results
        tables[task] = results_table(task, results)
        print_table(task, tables[task])

    if 'cls' in all_results:
        res = all_results['cls']
        counts = summaries['cls']['counts']
        p = plot_per_class_accuracy(
            osp.join(work_dir, 'cls_per_class_accuracy.png'), counts, res)
        plots += [p] if p else []
        lws = res.get('LWS')
        norms = classifier_norms(res['baseline (joint)'].checkpoint,
                                 lws.checkpoint if lws else None)
        plots.append(
            plot_weight_norms(
                osp.join(work_dir, 'cls_weight_norms.png'), counts, norms))
        log('sweeps on cached features (tools/analysis/sweep_posthoc.py)')
        sweeps = {
            'stage 1':
            _sweep(
                osp.join(QUICKSTART_CONFIGS, 'digits_cls_resnet_stage1.py'),
                res['baseline (joint)'].checkpoint,
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
        'seed': args.seed,
        'metrics': 'percent; cls: top-1 on the balanced test split, '
        'many/medium/few by training images; seg: IoU; det: LVIS AP (bbox)',
    }
    md = osp.join(work_dir, 'results.md')
    js = osp.join(work_dir, 'results.json')
    write_tables(md, js, tables, extra)
    print(f'\nresults: {md}\n         {js}')
    for p in plots:
        print(f'plot:    {p}')
    print(f'quickstart finished in {elapsed:.0f} s '
          f'({elapsed / 60:.1f} min)')
    return tables


if __name__ == '__main__':
    main()
