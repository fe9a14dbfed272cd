"""Why does DisAlign not raise APr in toy detection? The cap and the boxes.

Experiment tool for issue #11 (DisAlign, Zhang et al., CVPR 2021, Sec. 3.2
and Table 8; LVIS AP, Gupta et al., CVPR 2019, Sec. 5). LVIS AP keeps the
top 300 detections per image *over all classes*. On LVIS a Mask R-CNN has
far more than 300 (class, box) candidates per image above the test score
threshold (1203 classes x up to 1000 proposals), so the cap binds and a
calibration that raises the rare classes' scores brings rare detections
into the kept 300 -- the mechanism through which DisAlign's re-balancing
raises APr (Dave et al., "Evaluating Large-Vocabulary Object Detectors:
The Devil is in the Details", 2021, make the same point and propose a
per-class cap, under which calibration does not change AP). When the cap
does not bind, LVIS AP is a per-class ranking metric: for class c only
the order of the class-c scores across boxes and images counts, and
DisAlign's per-class map ``(1 + sigma(x)(alpha_c - 1)) z_c + sigma(x)
beta_c`` (Eq. 5-6, background untouched) changes that order only through
the variation of sigma(x) and of the softmax denominator. On the
quickstart data the cap does not bind, and (``--gt-boxes``) the stage-1
box classifier never makes a rare class (1-2 training instances) a box's
top class while its rare scores already order the boxes well (per-class
AUC): the decisions DisAlign re-balances do not count, and the order that
counts is one its per-class map hardly changes (docs/quickstart_evidence.md,
detection).

For every seed of a quickstart run (``python tools/quickstart.py --seeds 3
--tasks det --work-dir W``) the tool tests the baseline (``det/stage1``)
and the stage-2 methods (default: DisAlign) ONCE without a per-image cap
(``max_per_img`` = 10**6; NMS and the 1e-4 score threshold as configured),
then evaluates those detections with the LVIS evaluator at per-image caps
300 (the protocol: identical to the normal test when at most 300
candidates exist), 100, 20, 10 and 5, and prints, per cap, AP / APr / APc /
APf as mean +- std over the seeds, the candidates per image, and the
per-class AP at cap 300. ``--test-proposals 1000`` tests with the stock
LVIS Mask R-CNN's 1000 RPN proposals instead of the quickstart's 100.

``--gt-boxes`` adds how each model's box classifier labels and orders the
ground-truth boxes of the training and val splits, per frequency group:
top-1 over the foreground classes and the mean rank of the true class
(the decisions a classifier re-balancing changes), and the per-class ROC
AUC of the class's score, its boxes against the others
(:mod:`lt_mm.det.gt_box_stats`; the order LVIS AP counts).

Usage::

    OMP_NUM_THREADS=1 python tools/analysis/det_disalign_experiment.py \
        --work-dir work_dirs/qs3 [--caps 300 100 20 10 5] \
        [--methods digits_det_disalign digits_det_lws] [--gt-boxes] \
        [--test-proposals 1000]

A stage 2 trained with other settings into ``seed_<s>/det/FOLDER`` (e.g.
``tools/train.py configs/quickstart/digits_det_disalign.py --work-dir
W/seed_<s>/det/disalign_lr01 --cfg-options ...``) is compared as
``--methods digits_det_disalign disalign_lr01=digits_det_disalign``.

The detections are cached under ``<work-dir>/det_cap_experiment``.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
CONFIGS = osp.join(REPO, 'configs', 'quickstart')
BASELINE = ('stage1', 'digits_det_mask_rcnn_stage1.py')
UNCAPPED = 10**6
CAPS = (300, 100, 20, 10, 5)
KEYS = ('AP', 'APr', 'APc', 'APf')


def _test_config(config: str,
                 checkpoint: str,
                 data_root: str,
                 work_dir: str,
                 options: Optional[dict] = None,
                 loader_split: Optional[str] = None):
    """``config`` loading ``checkpoint`` on ``data_root`` (the folder that
    holds ``det/``), with the class counts of its training set filled in
    and everything of training dropped. With ``loader_split`` ('train' or
    'val') it also returns the ground-truth box loader config of that split
    (:func:`lt_mm.det.hooks.gt_box_dataloader_cfg`), else None."""
    from lt_mm.det.hooks import gt_box_dataloader_cfg
    from lt_mm.engine.counts import fill_class_counts
    from lt_mm.engine.runner_utils import load_config
    os.environ['LT_MM_DATA_ROOT'] = data_root
    cfg = load_config(config, options, work_dir)
    cfg.load_from = checkpoint
    fill_class_counts(cfg)  # from the training set, before it is dropped
    loader = None
    if loader_split is not None:
        if loader_split == 'val':
            cfg.train_dataloader = cfg.val_dataloader
        loader = gt_box_dataloader_cfg(cfg)
    for key in ('train_cfg', 'train_dataloader', 'optim_wrapper',
                'param_scheduler', 'val_cfg', 'val_dataloader',
                'val_evaluator'):
        cfg[key] = None
    cfg.custom_hooks = []
    cfg.log_level = 'WARNING'
    return cfg, loader


def predict(config: str,
            checkpoint: str,
            data_root: str,
            work_dir: str,
            max_per_img: int = UNCAPPED,
            options: Optional[dict] = None):
    """Test ``checkpoint`` with ``config`` on ``data_root`` (the folder that
    holds ``det/``) at ``max_per_img``; returns the LVIS-format box results
    (``image_id``, ``category_id``, ``bbox`` xywh, ``score``), the val
    annotation file and the metrics of the normal test."""
    from lt_mm.engine.runner_utils import build_runner
    cfg, _ = _test_config(config, checkpoint, data_root, work_dir, options)
    cfg.test_evaluator.metric = ['bbox']
    cfg.model.test_cfg.rcnn.max_per_img = int(max_per_img)
    runner = build_runner(cfg, 'none')
    dataset = runner.test_dataloader.dataset
    cat_ids = list(dataset.cat_ids)
    results: List[dict] = []

    def collect(module, inputs, outputs):
        for sample in outputs:
            inst = sample.pred_instances
            boxes = inst.bboxes.detach().cpu().tolist()
            for box, score, label in zip(boxes, inst.scores.tolist(),
                                         inst.labels.tolist()):
                x1, y1, x2, y2 = box
                results.append(
                    dict(
                        image_id=int(sample.img_id),
                        category_id=int(cat_ids[label]),
                        bbox=[x1, y1, x2 - x1, y2 - y1],
                        score=float(score)))

    handle = runner.model.register_forward_hook(collect)
    try:
        metrics = runner.test()
    finally:
        handle.remove()
    # mmengine's BaseDataset has joined data_root into ann_file
    return results, dataset.ann_file, {k: float(v) for k, v in metrics.items()}


def gt_box_classification(config: str,
                          checkpoint: str,
                          data_root: str,
                          work_dir: str,
                          split: str = 'val') -> Dict[str, Dict[str, float]]:
    """How the box classifier of ``checkpoint`` labels the ground-truth boxes
    of ``split`` ('val' or 'train'): per frequency group ('r', 'c', 'f'),
    ``top1`` (the argmax over the C foreground logits is the true class),
    ``rank`` (mean rank of the true class among the C foreground logits,
    1 = first; a classifier without information about a group ranks it at
    (C + 1) / 2 on average), both over the group's boxes, ``boxes``, and
    ``AUC``: the mean over the group's classes of the per-class ROC AUC of
    the class's softmax score, its boxes against the others
    (:func:`lt_mm.det.gt_box_stats.class_aucs`; 0.5 = no information).

    ``top1`` and ``rank`` are the decisions DisAlign re-balances (as top-1
    accuracy in classification); box AP sees them only through ``AUC``,
    the order of each class's scores over the boxes."""
    import torch

    from lt_mm.det.gt_box_stats import (class_aucs, frequency_groups,
                                        group_means)
    from lt_mm.det.hooks import extract_gt_box_features
    from lt_mm.engine.runner_utils import build_runner
    if split not in ('val', 'train'):
        raise ValueError(f"split must be 'val' or 'train', got {split!r}.")
    cfg, loader = _test_config(
        config, checkpoint, data_root, work_dir, loader_split=split)
    runner = build_runner(cfg, 'none')
    runner.load_or_resume()
    model = runner.model.eval()
    dataloader = runner.build_dataloader(loader)
    dataset = dataloader.dataset
    # the LVIS letter per class index
    groups = frequency_groups(dataset.ann_file, dataset.cat_ids)
    fc_cls = model.roi_head.bbox_head.fc_cls
    # the classifier's inputs on the boxes (lt_mm's NCM extraction), then
    # the classifier itself in eval mode
    feats, y = extract_gt_box_features(model, dataloader, {'fc_cls': fc_cls})
    with torch.no_grad():
        logits = fc_cls(feats['fc_cls'])
    z = logits[:, :len(groups)]  # foreground columns
    rank = (z > z.gather(1, y[:, None])).sum(1) + 1
    top1 = z.argmax(1) == y
    aucs = group_means(
        {'AUC': class_aucs(torch.softmax(logits, 1)[:, :len(groups)], y)},
        groups)
    box_groups = np.array([groups[int(k)] for k in y])
    result = {}
    for g in ('r', 'c', 'f'):
        m = torch.from_numpy(box_groups == g)
        if m.any():
            result[g] = dict(
                top1=float(top1[m].float().mean()),
                rank=float(rank[m].float().mean()),
                boxes=int(m.sum()),
                AUC=aucs.get(f'AUC {g}', math.nan))
    return result


def evaluate_caps(gt: str, results: List[dict],
                  caps: Sequence[int]) -> Dict[int, Dict[str, float]]:
    """LVIS box metrics of ``results`` with the top ``cap`` detections per
    image kept (:func:`lt_mm.det.lvis_eval.evaluate_lvis`), per cap, plus
    ``'per_class'`` (AP per category id at the first cap)."""
    from lt_mm.det.lvis_eval import run_lvis_eval
    out: Dict = {}
    for i, cap in enumerate(caps):
        res = run_lvis_eval(gt, results, 'bbox', int(cap))
        out[int(cap)] = dict(res.metrics)
        if i == 0:
            prec = res.precision[..., 0]  # (T, R, K), area 'all'
            per_class = {}
            for k, cat in enumerate(res.cat_ids):
                p = prec[:, :, k]
                per_class[int(cat)] = float(p[p > -1].mean()) \
                    if (p > -1).any() else -1.0
            out['per_class'] = per_class
    return out


def candidates_per_image(results: List[dict]) -> Dict[str, float]:
    """Mean / max detections per image (images with none not counted)."""
    counts: Dict[int, int] = {}
    for r in results:
        counts[r['image_id']] = counts.get(r['image_id'], 0) + 1
    vals = list(counts.values()) or [0]
    return dict(mean=float(np.mean(vals)), max=float(max(vals)))


def seed_dirs(work_dir: str) -> List[str]:
    """``work_dir/seed_<s>`` folders, or ``work_dir`` itself (one seed)."""
    dirs = sorted(glob.glob(osp.join(work_dir, 'seed_*')))
    dirs = [d for d in dirs if osp.isdir(osp.join(d, 'det'))]
    if not dirs and osp.isdir(osp.join(work_dir, 'det')):
        dirs = [work_dir]
    if not dirs:
        raise ValueError(
            f'{work_dir!r} holds no quickstart detection run (det/ or '
            'seed_<s>/det/); run `python tools/quickstart.py --seeds 3 '
            f'--tasks det --work-dir {work_dir}` first.')
    return dirs


def method_spec(spec: str) -> tuple:
    """``'FOLDER=CONFIG'`` -> ``(FOLDER, 'CONFIG.py')``: the stage-2 run in
    ``seed_<s>/det/FOLDER`` tested with ``configs/quickstart/CONFIG.py``
    (e.g. a stage 2 trained with other ``--cfg-options``); a plain
    ``NAME`` is ``NAME=NAME``, a quickstart method's own folder."""
    folder, sep, config = spec.partition('=')
    config = config if sep else folder
    config = config[:-3] if config.endswith('.py') else config
    if not folder or not config or '/' in folder or osp.sep in folder:
        raise ValueError(f'--methods {spec!r}: expected NAME or '
                         'FOLDER=CONFIG, FOLDER a folder name under '
                         'seed_<s>/det/ and CONFIG a config of '
                         'configs/quickstart (without .py).')
    if not osp.isfile(osp.join(CONFIGS, config + '.py')):
        raise ValueError(f'--methods {spec!r}: no config {config}.py in '
                         f'{CONFIGS}; name a quickstart detection config '
                         '(e.g. digits_det_disalign).')
    return folder, config + '.py'


def run_seed(seed_dir: str,
             methods: Sequence[str],
             caps: Sequence[int],
             out_dir: str,
             test_proposals: Optional[int] = None,
             gt_boxes: bool = False) -> Dict[str, dict]:
    """Uncapped detections (cached) and their capped metrics per model;
    ``methods`` are :func:`method_spec` strings;
    ``test_proposals`` replaces the configs' RPN test proposals per image
    (``nms_pre`` and ``max_per_img`` of ``model.test_cfg.rpn``);
    ``gt_boxes`` adds :func:`gt_box_classification` on both splits."""
    options = None
    if test_proposals is not None:
        options = {
            'model.test_cfg.rpn.nms_pre': int(test_proposals),
            'model.test_cfg.rpn.max_per_img': int(test_proposals)
        }
    from lt_mm.quickstart.runs import find_checkpoint
    os.makedirs(out_dir, exist_ok=True)
    per_model: Dict[str, dict] = {}
    for name, config in [BASELINE] + [method_spec(m) for m in methods]:
        ckpt = find_checkpoint(osp.join(seed_dir, 'det', name))
        if ckpt is None:
            raise ValueError(f'no checkpoint in {seed_dir}/det/{name}; run '
                             'the quickstart for this method first.')
        cache = osp.join(out_dir, f'{name}.json')
        if osp.isfile(cache):
            with open(cache) as f:
                saved = json.load(f)
            results, gt = saved['results'], saved['gt']
        else:
            results, gt, _ = predict(
                osp.join(CONFIGS, config),
                ckpt,
                osp.join(seed_dir, 'data'),
                osp.join(out_dir, 'work_' + name),
                options=options)
            with open(cache, 'w') as f:
                json.dump(dict(results=results, gt=gt), f)
        per_model[name] = dict(
            caps=evaluate_caps(gt, results, caps),
            candidates=candidates_per_image(results))
        if gt_boxes:
            per_model[name]['gt_boxes'] = {
                split:
                gt_box_classification(
                    osp.join(CONFIGS, config),
                    ckpt, osp.join(seed_dir, 'data'),
                    osp.join(out_dir, 'gt_' + name), split)
                for split in ('train', 'val')
            }
    return per_model


def _mean_std(vals: Sequence[float],
              scale: float = 100.0,
              digits: int = 1) -> str:
    """``mean ± std`` (sample std, 0 for one value) of ``vals * scale``."""
    a = np.asarray(vals, dtype=float) * scale
    std = a.std(ddof=1) if len(a) > 1 else 0.0
    return f'{a.mean():.{digits}f} ± {std:.{digits}f}'


def gt_box_table(per_seed: List[Dict[str, dict]]) -> str:
    """Markdown table of :func:`gt_box_classification`: per split, model
    and frequency group, top-1 (percent), true-class rank and per-class AUC
    (percent), mean +- std over seeds."""
    names = list(per_seed[0])
    lines = [
        '| split | model | ' + ' | '.join(f'{g} top-1 | {g} rank | {g} AUC'
                                          for g in 'rcf') + ' |',
        '|---|---|' + '---|' * 9
    ]
    for split in ('train', 'val'):
        for name in names:
            cols = []
            for g in 'rcf':
                vals = [s[name]['gt_boxes'][split].get(g) for s in per_seed]
                vals = [v for v in vals if v is not None]
                if not vals:
                    cols += ['-', '-', '-']
                    continue
                cols += [
                    _mean_std([v['top1'] for v in vals]),
                    _mean_std([v['rank'] for v in vals], scale=1, digits=2),
                    _mean_std([v.get('AUC', math.nan) for v in vals])
                ]
            lines.append(f'| {split} | {name} | ' + ' | '.join(cols) + ' |')
    return '\n'.join(lines)


def table(per_seed: List[Dict[str, dict]], caps: Sequence[int]) -> str:
    """Markdown table: per cap and model, mean +- std over seeds."""
    names = list(per_seed[0])
    lines = [
        '| cap / image | model | ' + ' | '.join(KEYS) + ' | APr per seed |',
        '|---|---|' + '---|' * (len(KEYS) + 1)
    ]
    for cap in caps:
        for name in names:
            cols = [
                _mean_std([s[name]['caps'][cap][k] for s in per_seed])
                for k in KEYS
            ]
            seeds = ' / '.join(f"{s[name]['caps'][cap]['APr'] * 100:.1f}"
                               for s in per_seed)
            lines.append(f'| {cap} | {name} | ' + ' | '.join(cols) +
                         f' | {seeds} |')
    lines.append('')
    for name in names:
        cand = [s[name]['candidates'] for s in per_seed]
        per_class = [s[name]['caps']['per_class'] for s in per_seed]
        cats = sorted(per_class[0])
        pc = ', '.join(
            f'{c}: ' +
            _mean_std([p[c] if p[c] >= 0 else 0.0 for p in per_class])
            for c in cats)
        lines.append(
            f'- {name}: candidates per image (uncapped, after NMS) mean '
            f"{np.mean([c['mean'] for c in cand]):.0f}, max "
            f"{max(c['max'] for c in cand):.0f}; AP per category id at cap "
            f'{caps[0]}: {pc}')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        '--work-dir',
        required=True,
        help='a quickstart work dir (seed_<s>/det/... inside)')
    p.add_argument(
        '--methods',
        nargs='*',
        default=['digits_det_disalign'],
        help='stage-2 runs to compare with the baseline: '
        'NAME (a quickstart config without .py, its run in '
        'seed_<s>/det/NAME) or FOLDER=NAME (the run in '
        'seed_<s>/det/FOLDER, tested with config NAME)')
    p.add_argument('--caps', nargs='+', type=int, default=list(CAPS))
    p.add_argument(
        '--test-proposals',
        type=int,
        default=None,
        help='RPN proposals per test image (default: the configs\' 100; '
        'the stock LVIS Mask R-CNN tests with 1000)')
    p.add_argument(
        '--out',
        default=None,
        help='cache folder (default <work-dir>/det_cap_experiment, '
        '<work-dir>/det_cap_experiment_p<N> with --test-proposals N)')
    p.add_argument(
        '--gt-boxes',
        action='store_true',
        help='also the box classifiers\' top-1 / true-class rank / '
        'per-class AUC on the ground-truth boxes of both splits, per '
        'frequency group')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, dict]]:
    args = parse_args(argv)
    for spec in args.methods:  # a bad name fails before any test runs
        method_spec(spec)
    suffix = '' if args.test_proposals is None else \
        f'_p{args.test_proposals}'
    out = args.out or osp.join(args.work_dir, 'det_cap_experiment' + suffix)
    per_seed = []
    for sdir in seed_dirs(args.work_dir):
        per_seed.append(
            run_seed(sdir, args.methods, args.caps,
                     osp.join(out, osp.basename(osp.normpath(sdir))),
                     args.test_proposals, args.gt_boxes))
    text = table(per_seed, args.caps)
    if args.gt_boxes:
        text += '\n\nground-truth boxes (C = number of classes; a ' \
            'classifier without information ranks a class (C + 1) / 2)\n\n' \
            + gt_box_table(per_seed)
    print(text)
    with open(osp.join(out, 'table.md'), 'w') as f:
        f.write(text + '\n')
    return per_seed


if __name__ == '__main__':
    main()
