"""Choose the segmentation stage-1 length on the training mosaics.

Experiment tool for issue #11. The calibration methods (DisAlign, tau-norm,
LWS, cRT, NCM, the post-hoc rules) re-balance what the stage-1 model has
learnt; a stage 1 that never labels a tail pixel right, not even on its
training mosaics, leaves them nothing to act on. For every seed (the
quickstart's data of that seed, under ``<work-dir>/seed_<s>/data/seg``,
as ``tools/quickstart.py --seeds`` lays it out; written if absent) and
every candidate length, the tool trains ``configs/quickstart/
digits_seg_fcn_stage1.py`` for that many iterations (training seed ``s``,
the poly schedule over the whole length), tests it on the *training*
mosaics, and prints the tail pixel accuracy there (``mAcc_tail``: the
share of each tail class's training pixels labelled right, averaged over
the tail classes) per seed.

The chosen length is the shortest whose training tail accuracy is at
least ``--min-tail-acc`` (default 50) on average over the seeds and above
0 in every seed. The val numbers (the quickstart's test set) are printed
for the record; the choice never reads them.

``--config`` applies the same rule to another segmentation model trained
from scratch (a one-stage method such as
``configs/quickstart/digits_seg_cdt.py``, whose class-dependent
temperatures slow the fitting of the tail).

Usage::

    OMP_NUM_THREADS=1 python tools/analysis/seg_stage1_length.py \\
        --work-dir W [--seeds 0 1 2] [--iters 1000 1500 2000 3000] \\
        [--min-tail-acc 50] [--config configs/quickstart/digits_seg_cdt.py]

Each (seed, length) run is cached as json under
``<work-dir>/seg_stage1_length`` (``seg_stage1_length_<config name>`` for
another ``--config``; its own work dirs, never the quickstart's).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
STAGE1 = osp.join(REPO, 'configs', 'quickstart', 'digits_seg_fcn_stage1.py')
ITERS = (1000, 1500, 2000, 3000)
#: the test loader of the stage-1 config pointed at the training mosaics
TRAIN_SPLIT_OPTIONS = (
    'test_dataloader.dataset.data_prefix.img_path=images/training',
    'test_dataloader.dataset.data_prefix.seg_map_path=annotations/training')


def seed_data(work_dir: str, seed: int, size: str = 'full') -> str:
    """``work_dir/seed_<seed>``, with the quickstart's segmentation data of
    ``seed`` under ``data/seg`` (written if absent, reused otherwise: the
    layout of ``tools/quickstart.py --seeds``)."""
    from lt_mm.quickstart.data import build_task_data
    seed_dir = osp.join(work_dir, f'seed_{seed}')
    build_task_data('seg', osp.join(seed_dir, 'data', 'seg'), size, seed)
    return seed_dir


def run_length(seed_dir: str,
               seed: int,
               iters: int,
               out_dir: str,
               size: str = 'full',
               config: str = STAGE1) -> Dict[str, Dict[str, float]]:
    """Train ``config`` (default the stage 1) for ``iters`` iterations on
    ``seed_dir``'s data (training seed ``seed``, data size ``size``) and
    test it on val and on the training mosaics; returns ``{'val': metrics,
    'train': metrics}`` (cached in ``out_dir/result.json``; a cache of
    other settings is recomputed)."""
    from lt_mm.quickstart.runs import run_config
    cache = osp.join(out_dir, 'result.json')
    params = dict(seed=seed, iters=iters, size=size)
    if osp.abspath(config) != STAGE1:
        params['config'] = osp.basename(config)
    if osp.isfile(cache):
        with open(cache) as f:
            saved = json.load(f)
        if saved.get('params') == params:
            return dict(val=saved['val'], train=saved['train'])
    os.environ['LT_MM_DATA_ROOT'] = osp.join(seed_dir, 'data')
    seed_opt = f'randomness.seed={seed}'
    trained = run_config(
        config,
        osp.join(out_dir, 'train'),
        train=True,
        options=[
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}', seed_opt
        ])
    on_train = run_config(
        config,
        osp.join(out_dir, 'test_training_mosaics'),
        train=False,
        load_from=trained.checkpoint,
        options=[seed_opt, *TRAIN_SPLIT_OPTIONS])
    result = dict(val=trained.metrics, train=on_train.metrics)
    with open(cache, 'w') as f:
        json.dump(dict(result, params=params), f)
    return result


def choose_length(train_tail_acc: Dict[int, Sequence[float]],
                  min_tail_acc: float) -> Optional[int]:
    """The shortest length whose per-seed training tail accuracies (percent)
    average at least ``min_tail_acc`` and are all above 0; None if none
    is."""
    for iters in sorted(train_tail_acc):
        accs = np.asarray(train_tail_acc[iters], dtype=float)
        if accs.mean() >= min_tail_acc and (accs > 0).all():
            return iters
    return None


def _cells(vals: Sequence[float]) -> str:
    a = np.asarray(vals, dtype=float)
    per_seed = ' / '.join(f'{v:.1f}' for v in a)
    return f'{a.mean():.1f} ({per_seed})'


def table(results: Dict[int, Dict[int, dict]], min_tail_acc: float) -> str:
    """Markdown table of ``results[iters][seed]`` and the chosen length."""
    train_acc = {
        it: [r['train']['mAcc_tail'] for r in per_seed.values()]
        for it, per_seed in results.items()
    }
    chosen = choose_length(train_acc, min_tail_acc)
    lines = [
        '| iterations | training mosaics: tail mAcc, mean (per seed) | '
        'training: tail IoU | val: tail IoU | val: body IoU | chosen |',
        '|---|---|---|---|---|---|'
    ]
    for it in sorted(results):
        rows = list(results[it].values())
        lines.append('| {} | {} | {} | {} | {} | {} |'.format(
            it, _cells(train_acc[it]),
            _cells([r['train']['mIoU_tail'] for r in rows]),
            _cells([r['val']['mIoU_tail'] for r in rows]),
            _cells([r['val']['mIoU_body'] for r in rows]),
            'yes' if it == chosen else ''))
    seeds = sorted(next(iter(results.values())))
    lines.append('')
    lines.append(
        f'seeds {seeds}; chosen: the shortest length with training tail '
        f'mAcc >= {min_tail_acc:g} on average and > 0 in every seed: ' +
        (f'{chosen} iterations'
         if chosen is not None else 'none of these lengths'))
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        '--work-dir',
        required=True,
        help='seed_<s>/data/seg are written or reused here')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument(
        '--size',
        choices=['full', 'fast'],
        default='full',
        help='the quickstart data size (fast: the tests\')')
    p.add_argument('--iters', nargs='+', type=int, default=list(ITERS))
    p.add_argument(
        '--min-tail-acc',
        type=float,
        default=50.0,
        help='percent of the tail training pixels, in (0, 100]')
    p.add_argument(
        '--config',
        default=STAGE1,
        help='the segmentation config to train (default: the quickstart '
        'stage 1)')
    p.add_argument(
        '--out',
        default=None,
        help='cache folder (default <work-dir>/seg_stage1_length, '
        '<work-dir>/seg_stage1_length_<config name> for another --config)')
    args = p.parse_args(argv)
    if not osp.isfile(args.config):
        p.error(f'--config {args.config}: no such file.')
    args.config = osp.abspath(args.config)
    bad = [i for i in args.iters if i < 1]
    if bad or len(set(args.iters)) != len(args.iters):
        p.error(f'--iters {args.iters}: give distinct lengths >= 1.')
    if min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds):
        p.error(f'--seeds {args.seeds}: give distinct seeds >= 0.')
    if not 0 < args.min_tail_acc <= 100:
        p.error(f'--min-tail-acc {args.min_tail_acc:g}: a percentage in '
                '(0, 100].')
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[int, Dict[int, dict]]:
    args = parse_args(argv)
    seeds = {s: seed_data(args.work_dir, s, args.size) for s in args.seeds}
    name = 'seg_stage1_length'
    if osp.abspath(args.config) != STAGE1:
        name += '_' + osp.splitext(osp.basename(args.config))[0]
    out = args.out or osp.join(args.work_dir, name)
    results: Dict[int, Dict[int, dict]] = {}
    for iters in sorted(args.iters):
        results[iters] = {}
        for seed, sdir in seeds.items():
            results[iters][seed] = run_length(
                sdir, seed, iters,
                osp.join(out, f'seed_{seed}', f'iters_{iters}'), args.size,
                args.config)
    text = table(results, args.min_tail_acc)
    print(text)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'table.md'), 'w') as f:
        f.write(text + '\n')
    return results


if __name__ == '__main__':
    main()
