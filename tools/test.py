# Copyright (c) lt_mm contributors. Test a checkpoint of any mmpretrain /
# mmseg / mmdet config (the toolbox is the config's ``default_scope``).
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from lt_mm.engine.dist import distributed_run
from lt_mm.engine.runner_utils import (build_runner, enable_visualization,
                                       load_config)


def parse_args():
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a checkpoint (lt_mm)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out', help='dump the raw predictions to this pickle file')
    parser.add_argument(
        '--show-dir', help='directory where painted images will be saved')
    parser.add_argument(
        '--interval',
        type=int,
        help='with --show-dir: paint every N-th test image (default: 1 for '
        'mmpretrain, the visualization hook\'s interval for mmdet / mmseg, '
        'as their own tools)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument(
        '--allow-missing-keys',
        action='store_true',
        help='evaluate even when model parameters/buffers are missing from '
        'the checkpoint or have another shape in it (they keep their '
        'initial, random values; only a warning is logged). Without it '
        'such a checkpoint (e.g. one of another model) is refused')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise SystemExit(f'checkpoint {args.checkpoint!r} does not exist.')
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    # a scheme lt_mm cannot load safely (e.g. registered by a plugin of
    # custom_imports) fails before anything is built
    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out {args.out}: give a .pkl file (mmengine '
                         'DumpResults pickles the predictions).')
    from lt_mm.engine.checkpoint import (CheckpointMismatchError,
                                         UnverifiedSchemeError,
                                         check_checkpoint_scheme,
                                         require_complete_checkpoint)
    from lt_mm.engine.hooks import Stage2GuardError
    try:
        check_checkpoint_scheme(args.checkpoint)
    except UnverifiedSchemeError as exc:
        raise SystemExit(f'lt_mm: UnverifiedSchemeError: {exc}')
    from lt_mm.engine.preflight import check_config
    try:
        check_config(cfg, mode='test')
        # the same counts as training (a checkpoint's inference statistics,
        # e.g. the posthoc counts, replace them when it is loaded)
        from lt_mm.engine.counts import fill_class_counts
        fill_class_counts(cfg)
    except ValueError as exc:
        raise SystemExit(f'lt_mm: {exc}')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        try:
            enable_visualization(cfg, args.show_dir, args.interval)
        except ValueError as exc:
            raise SystemExit(f'lt_mm: {exc}')

    runner = build_runner(cfg, args.launcher)
    # mmengine loads with strict=False and only warns when the checkpoint
    # lacks model entries: refuse that (--allow-missing-keys: warn)
    require_complete_checkpoint(runner, args.allow_missing_keys)
    if args.out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    # distributed: every rank waits for the others, then the process group
    # is destroyed; a rank that failed leaves without waiting
    with distributed_run():
        try:
            runner.test()
        except (Stage2GuardError, CheckpointMismatchError) as exc:
            raise SystemExit(f'lt_mm: {type(exc).__name__}: {exc}')


if __name__ == '__main__':
    main()
