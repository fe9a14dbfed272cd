# Copyright (c) lt_mm contributors. Train any mmpretrain / mmseg / mmdet
# config (the toolbox is the config's ``default_scope``).
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from lt_mm.engine.dist import distributed_run
from lt_mm.engine.runner_utils import apply_resume, build_runner, load_config


def parse_args():
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a model (lt_mm)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest '
        'complete checkpoint in the work dir when no path is given (when '
        'the work dir holds none, a new run starts from load_from)')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (needs CUDA)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local_rank, torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    # data paths, label ranges and class counts, before anything is built
    from lt_mm.engine.preflight import check_config
    try:
        check_config(cfg, mode='train')
        # class counts without a source: from train_dataloader.dataset
        from lt_mm.engine.counts import fill_class_counts
        fill_class_counts(cfg)
    except ValueError as exc:
        raise SystemExit(f'lt_mm: {exc}')

    if args.amp:
        from lt_mm.engine.dist import cuda_usable
        if not cuda_usable():
            raise SystemExit('--amp needs a CUDA device; this machine has '
                             'none. Drop --amp to train in fp32.')
        opt_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if opt_type == 'AmpOptimWrapper':
            print('AMP training is already enabled in your config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    # resume rules and stage-2 guards, before the Runner writes anything
    from lt_mm.engine.checkpoint import (CheckpointMismatchError,
                                         CheckpointReadError)
    from lt_mm.engine.hooks import Stage2GuardError
    try:
        apply_resume(cfg, args.resume)
    except (ValueError, FileNotFoundError, CheckpointReadError) as exc:
        raise SystemExit(f'lt_mm: {type(exc).__name__}: {exc}')
    runner = build_runner(cfg, args.launcher)
    # distributed: every rank waits for the others, then the process group
    # is destroyed; a rank that failed leaves without waiting
    with distributed_run():
        try:
            runner.train()
        except (Stage2GuardError, CheckpointMismatchError) as exc:
            # the checks that need the built model (before iteration 1)
            raise SystemExit(f'lt_mm: {type(exc).__name__}: {exc}')


if __name__ == '__main__':
    main()
