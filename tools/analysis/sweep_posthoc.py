# Copyright (c) lt_mm contributors. Sweep the post-hoc knobs of long-tail
# classification (tau-norm tau, TDE alpha, CDT's N_c^tau rule, logit
# adjustment) on features extracted once.
"""Sweep post-hoc long-tail adjustments without re-running the backbone.

Builds the model and the dataloader(s) from CONFIG, loads CKPT, runs
backbone + neck ONCE per split to get the classifier-input features, then
evaluates on those cached features:

* tau-norm (Decoupling, Kang et al. ICLR 2020, Eq. 3), tau in 0..2 step 0.1,
  for heads with a linear ``fc``;
* TDE alpha (Tang et al. NeurIPS 2020, Eq. 8) for a causal-norm head;
* CDT's post-hoc rule z_c / N_c^tau (Ye et al., Eq. 5) and logit
  adjustment z_c - tau log N_c, tau in 0..2 step 0.1, on the head's own
  test logits;

printing top-1 / balanced / many / medium / few for every value, the
feature-extraction time and the sweep time. ``--select-on val --report
test`` picks each knob on val and reports test; ``--out`` writes the
curves as JSON.

Example::

    python tools/analysis/sweep_posthoc.py \\
        configs/quickstart/digits_cls_resnet_stage1.py STAGE1.pth \\
        --select-on val --report test --out work_dirs/sweep.json
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

METRIC_KEYS = ('top1', 'balanced', 'many', 'medium', 'few')


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='Sweep tau-norm / TDE alpha / N_c^tau / logit '
        'adjustment on features extracted once (lt_mm)')
    p.add_argument('config', help='classification config (mmpretrain)')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument(
        '--split',
        default='test',
        choices=['train', 'val', 'test'],
        help='split to sweep on (without --select-on)')
    p.add_argument(
        '--select-on',
        choices=['train', 'val', 'test'],
        help='choose every knob on this split ...')
    p.add_argument(
        '--report',
        choices=['train', 'val', 'test'],
        default='test',
        help='... and report it on this split')
    p.add_argument(
        '--metric',
        default='balanced',
        choices=list(METRIC_KEYS),
        help='selection criterion (default: balanced = mean per-class '
        'accuracy)')
    p.add_argument(
        '--sweeps',
        nargs='+',
        default=['taunorm', 'tde_alpha', 'nc_tau', 'logit_adjust'],
        choices=['taunorm', 'tde_alpha', 'nc_tau', 'logit_adjust'],
        help='which sweeps to run (inapplicable ones are skipped)')
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
        '--stats-file',
        help='class statistics for N_c (default: the head\'s posthoc '
        'counts, else the test evaluator\'s training counts)')
    p.add_argument('--out', help='write the curves to this JSON file')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs')
    return p.parse_args(argv)


def _grid(values, start, stop, step):
    if values:
        return [float(v) for v in values]
    n = int(round((stop - start) / step))
    return [round(start + i * step, 6) for i in range(n + 1)]


def _loader_cfg(cfg, split):
    from lt_mm.cls.hooks import eval_dataloader_cfg
    loader = eval_dataloader_cfg(cfg, split)
    loader['num_workers'] = loader.get('num_workers', 0)
    if loader['num_workers'] == 0:
        loader['persistent_workers'] = False
    return loader


def _no_nan(obj):
    """NaN (a group without test sample) -> null, for strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def _fmt(v):
    return '   nan' if v != v else f'{v:6.2f}'


def print_table(title, name, values, rows):
    print(f'\n{title}')
    print(f'{name:>8} | ' + ' | '.join(f'{k:>8}' for k in METRIC_KEYS))
    print('-' * (11 + 11 * len(METRIC_KEYS)))
    for v, r in zip(values, rows):
        print(f'{v:8.3f} | ' + ' | '.join(f'{_fmt(r.get(k, float("nan"))):>8}'
                                          for k in METRIC_KEYS))


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner, load_checkpoint

    from lt_mm.engine.counts import fill_class_counts
    from lt_mm.engine.runner_utils import load_config
    cfg = load_config(args.config, args.cfg_options)
    # the class counts of the training set, as tools/train.py gives them
    fill_class_counts(cfg)
    import lt_mm.cls  # noqa: F401  (registers the lt_mm modules)
    from lt_mm.cls.heads import CausalNormClsHead
    from lt_mm.cls.hooks import extract_pre_logits
    from lt_mm.cls.metrics import long_tail_accuracy
    from lt_mm.core.cdt import logit_adjust, nc_tau_adjust
    from lt_mm.core.decoupling import tau_norm_logits
    from lt_mm.core.stats import load_class_stats

    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} does not exist.')
    DefaultScope.get_instance(
        f'sweep_posthoc_{time.time()}', scope_name=cfg.default_scope)
    from mmpretrain.registry import METRICS, MODELS

    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        # as mmengine's Runner does: the top-level preprocessor (mean/std)
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    head = model.head

    evaluator = cfg.test_evaluator
    if isinstance(evaluator, (list, tuple)):
        evaluator = evaluator[0]
    if evaluator.get('type') != 'LongTailAccuracy':
        raise SystemExit('the config\'s test_evaluator must be '
                         'LongTailAccuracy (it defines the class groups).')
    metric = METRICS.build(dict(evaluator, per_class_file=None))
    splits, num_classes = metric.splits, metric.num_classes
    counts = None
    if args.stats_file:
        counts = load_class_stats(args.stats_file, num_classes).counts
    elif getattr(head, 'posthoc', None) is not None:
        counts = head.posthoc.counts.tolist()
    elif metric.counts is not None:
        counts = metric.counts

    # ---------------------------------------------------- features, once
    if args.select_on:
        needed = [args.select_on, args.report]
    else:
        needed = [args.split]
    needed = list(dict.fromkeys(needed))
    feats, t_feat, n_img = {}, 0.0, 0
    with torch.no_grad():
        for split in needed:
            loader = Runner.build_dataloader(_loader_cfg(cfg, split))
            t0 = time.perf_counter()
            feats[split] = extract_pre_logits(model, loader)
            t_feat += time.perf_counter() - t0
            n_img += len(feats[split][1])

    # ---------------------------------------------------------- sweeps
    taus = _grid(args.taus, 0.0, 2.0, 0.1)
    alphas = _grid(args.alphas, 0.0, 4.0, 0.25)
    fc_weight = None
    fc = getattr(head, 'fc', None)
    if isinstance(fc, torch.nn.Linear):
        fc_weight = fc.weight.detach()
    is_tde = isinstance(head, CausalNormClsHead)

    def base_logits(x):
        """The head's own test logits, before any post-hoc adjustment."""
        if not hasattr(head, 'test_logits'):  # a stock mmpretrain head
            return head((x, ))
        try:
            return head.test_logits(x)
        except RuntimeError:  # e.g. NCM without class means
            return head.classifier_logits(x)

    sweeps = {}
    skipped = {}
    for name in args.sweeps:
        if name == 'taunorm' and fc_weight is None:
            skipped[name] = 'the head has no linear fc'
        elif name == 'tde_alpha' and not is_tde:
            skipped[name] = 'not a CausalNormClsHead (TDE) checkpoint'
        elif name in ('nc_tau', 'logit_adjust') and counts is None:
            skipped[name] = 'no class counts (give --stats-file)'
        else:
            sweeps[name] = alphas if name == 'tde_alpha' else taus

    def logits_for(name, value, x, base):
        if name == 'taunorm':
            return tau_norm_logits(x, fc_weight, value)
        if name == 'tde_alpha':
            return head.test_logits(x, alpha=value)
        fn = nc_tau_adjust if name == 'nc_tau' else logit_adjust
        return fn(base, counts, value)

    curves = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for split, (x, y) in feats.items():
            base = base_logits(x)
            curves[split] = {}
            for name, values in sweeps.items():
                rows = []
                for v in values:
                    res = long_tail_accuracy(
                        logits_for(name, v, x, base),
                        y,
                        splits,
                        num_classes,
                        topk=(1, ))
                    res.pop('per_class')
                    rows.append(res)
                curves[split][name] = dict(values=values, metrics=rows)
    t_sweep = time.perf_counter() - t0
    n_settings = sum(len(v) for v in sweeps.values()) * len(feats)

    # ---------------------------------------------------------- report
    labels = dict(
        taunorm='tau-norm (Decoupling Eq. 3): tau',
        tde_alpha='TDE (Eq. 8): alpha',
        nc_tau='N_c^tau rule (CDT Eq. 5): tau',
        logit_adjust='logit adjustment: tau')
    short = dict(
        taunorm='tau', tde_alpha='alpha', nc_tau='tau', logit_adjust='tau')
    for split, by_name in curves.items():
        for name, c in by_name.items():
            print_table(f'[{split}] {labels[name]}', short[name], c['values'],
                        c['metrics'])
    for name, why in skipped.items():
        print(f'\nskipped {name}: {why}')

    selected = {}
    if args.select_on:
        print(f'\nselected on {args.select_on} by {args.metric}, reported '
              f'on {args.report}:')
        for name in sweeps:
            sel = curves[args.select_on][name]
            scores = [m[args.metric] for m in sel['metrics']]
            best = max(
                range(len(scores)),
                key=lambda i: -1e9 if scores[i] != scores[i] else scores[i])
            value = sel['values'][best]
            rep = curves[args.report][name]['metrics'][best]
            selected[name] = dict(
                value=value,
                select_score=scores[best],
                report={k: rep[k]
                        for k in METRIC_KEYS if k in rep})
            print(f'  {labels[name]} = {value:g} '
                  f'({args.select_on} {args.metric} {scores[best]:.2f}) -> '
                  f'{args.report}: ' +
                  ', '.join(f'{k} {_fmt(rep.get(k, float("nan"))).strip()}'
                            for k in METRIC_KEYS))

    print(f'\nfeature extraction (backbone + neck, {n_img} images, once): '
          f'{t_feat:.3f} s | sweeps ({n_settings} settings on cached '
          f'features): {t_sweep:.3f} s')

    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        payload = dict(
            config=args.config,
            checkpoint=args.checkpoint,
            splits=splits,
            curves=curves,
            selected=selected,
            skipped=skipped,
            timing=dict(
                feature_extraction_s=t_feat,
                sweep_s=t_sweep,
                num_images=n_img,
                num_settings=n_settings))
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(_no_nan(payload), f, indent=1)
        print(f'curves written to {args.out}')


if __name__ == '__main__':
    main()
