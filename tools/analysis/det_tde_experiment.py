"""Why does one-stage TDE lose to the softmax baseline in toy detection?

Experiment tool for issue #11 item 4 (TDE, Tang et al., NeurIPS 2020,
Eq. 7-9). On the quickstart detection data (``lt_mm.quickstart.data``,
LVIS v1 format, 8 digit classes with r / c / f frequencies) it

a) trains, once per seed, the softmax baseline
   (``configs/quickstart/digits_det_mask_rcnn_stage1.py``) and the
   one-stage TDE detector (``configs/quickstart/digits_det_tde.py``,
   causal-norm box classifier K = 2, tau = 16, gamma = 1/32) with the
   configs' schedule (36 epochs; 1 with ``--fast``); a work dir that
   already holds a checkpoint is reused;
b) sweeps the *inference-time* factors on the same TDE checkpoint, without
   retraining: alpha (Eq. 8; alpha = 0 is the plain causal-norm classifier
   of Eq. 7, i.e. the de-confounded training without the counterfactual
   subtraction) x the output form: exact Eq. 9 (``exact``), the reference
   code's eps-smoothed Eq. 9 (``eps``, eps = 1e-10) and no background
   exemption (``plain``: mmdet's softmax over the C + 1 TDE logits);
   the baseline is tested at its config's score threshold (1e-4) and at
   TDE's (1e-5, 300 boxes per image);
c) optionally (``--train-factors``) trains the training-time variants
   ``tau8`` (tau = 8), ``gamma0`` (gamma = 0), ``e24`` (24 epochs, TDE and
   baseline; 2 with ``--fast``) and sweeps alpha with exact Eq. 9 on them;
d) optionally (``--gt-boxes``) measures, on the ground-truth boxes of the
   val images, how well each class's score ranks that class's boxes
   above the other boxes (per-class ROC AUC, averaged per r / c / f
   group; LVIS AP counts the same order over all detections): the
   baseline's softmax, exact Eq. 9 at every alpha, and a control in which
   the counterfactual term of Eq. 8 (``TDE - plain`` logits) is taken
   from a randomly chosen other box (rows shuffled, 20 times). If the
   control loses as much as the real term, the term carries no
   information about the box's class, only box-to-box variation; the
   AUC of ``cos(x, d)`` (mean over the K heads) per class says whether
   the head direction tells one class's boxes from the others;
e) prints box AP / APr / APc / APf per setting as mean +- std over the
   seeds, and the score statistics that show how TDE's scores interact
   with mmdet's score threshold (foreground scores above 1e-5 / 0.05 per
   image, detections per image, median top score), the head direction
   norm and the mean cos(x_k, d_k) of the test RoIs, and the scale of the
   plain logits (mean of max-foreground minus background logit).

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python tools/analysis/det_tde_experiment.py \
        --seeds 0 1 2 --work-dir work_dirs/det_tde_experiment [--gt-boxes]

Seeds change the training seed; the data set is the quickstart's (data
seed ``--data-seed``, default 0). Per-seed results are cached in
``<work-dir>/seed<k>/results.json``; a rerun only fills what is missing.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
CONFIGS = osp.join(REPO, 'configs', 'quickstart')
BASELINE_CFG = 'digits_det_mask_rcnn_stage1.py'
TDE_CFG = 'digits_det_tde.py'

ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
FAST_ALPHAS = (0.0, 1.5)
FORMS = ('exact', 'eps', 'plain')
REFERENCE_EPS = 1e-10
TDE_SCORE_THR = 1e-5
COLUMNS = (('AP', 'lvis/bbox_AP'), ('APr', 'lvis/bbox_APr'),
           ('APc', 'lvis/bbox_APc'), ('APf', 'lvis/bbox_APf'))
STAT_COLUMNS = ('fg>1e-5', 'fg>0.05', 'dets', 'top')
# training-time variants: (name, base config, cfg edits)
TRAIN_FACTORS = ('tau8', 'gamma0', 'e24')
SHUFFLES = 20


def _log(msg: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


# --------------------------------------------------------------------------
# configs and runners
# --------------------------------------------------------------------------
def _set_epochs(cfg, epochs: int) -> None:
    """Schedule of ``epochs`` epochs, the quickstart's shape (LR steps at
    3/4 and 11/12 of the run, as [9, 11] of 12)."""
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    for sched in cfg.param_scheduler:
        if sched.get('type') == 'MultiStepLR':
            sched['milestones'] = [
                max(1, round(epochs * 9 / 12)),
                max(1, round(epochs * 11 / 12))
            ]
    cfg.default_hooks.checkpoint.interval = epochs


def build_cfg(config: str,
              work_dir: str,
              seed: int,
              epochs: Optional[int] = None,
              cls_edits: Optional[dict] = None):
    """The quickstart config with in-memory edits (no file is changed).

    Validation during training is switched off (the tool tests itself) and
    only the box metric is computed.
    """
    from lt_mm.engine.runner_utils import load_config
    cfg = load_config(osp.join(CONFIGS, config), None, work_dir)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.log_level = 'WARNING'
    if epochs is not None:
        _set_epochs(cfg, epochs)
    cfg.val_cfg = None
    cfg.val_dataloader = None
    cfg.val_evaluator = None
    cfg.test_evaluator.metric = ['bbox']
    if cls_edits:
        cfg.model.roi_head.bbox_head.cls_predictor_cfg.update(cls_edits)
    return cfg


def get_runner(cfg, log: Callable[[str], None] = _log):
    """Train (unless a checkpoint exists in the work dir) and return a
    Runner ready for ``runner.test()`` plus the training seconds."""
    from lt_mm.engine.runner_utils import build_runner
    from lt_mm.quickstart.runs import find_checkpoint
    os.makedirs(cfg.work_dir, exist_ok=True)
    ckpt = find_checkpoint(cfg.work_dir)
    start = time.time()
    if ckpt is None:
        log(f'training {osp.relpath(cfg.work_dir)} ...')
        runner = build_runner(cfg, 'none')
        runner.train()
        secs = time.time() - start
        log(f'trained in {secs:.0f} s')
    else:
        log(f'reusing {ckpt}')
        cfg = copy.deepcopy(cfg)
        cfg.load_from = ckpt
        cfg.train_cfg = None
        cfg.train_dataloader = None
        cfg.optim_wrapper = None
        cfg.param_scheduler = None
        runner = build_runner(cfg, 'none')
        secs = 0.0
    return runner, secs


# --------------------------------------------------------------------------
# statistics captured during a test
# --------------------------------------------------------------------------
class _Capture:
    """Forward hooks on the detector and on ``fc_cls`` during one test."""

    def __init__(self, model) -> None:
        self.model = model
        self.fc_cls = model.roi_head.bbox_head.fc_cls
        self.cls_in: List = []
        self.cls_out: List = []
        self.scores: List = []
        self._hooks = []

    def __enter__(self) -> '_Capture':

        def on_cls(module, inputs, output):
            self.cls_in.append(inputs[0].detach().float().cpu())
            self.cls_out.append(output.detach().float().cpu())

        def on_model(module, inputs, output):
            if isinstance(output, (list, tuple)):
                for sample in output:
                    inst = getattr(sample, 'pred_instances', None)
                    if inst is not None:
                        self.scores.append(inst.scores.detach().cpu())

        self._hooks = [
            self.fc_cls.register_forward_hook(on_cls),
            self.model.register_forward_hook(on_model)
        ]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()

    def stats(self, score_thr: float) -> Dict[str, float]:
        """Score statistics of the test.

        ``fg>1e-5`` / ``fg>0.05``: per image, the (RoI, foreground class)
        scores above the threshold (what mmdet's ``multiclass_nms`` keeps
        before NMS); ``dets``: detections per image after NMS and top-k;
        ``top``: median over images of the best detection score.
        """
        import torch
        out = torch.cat(self.cls_out)
        probs = torch.softmax(out, dim=1)[:, :-1]
        n_img = max(len(self.scores), 1)
        top = [float(s.max()) for s in self.scores if s.numel()]
        return {
            'fg>1e-5': float((probs > 1e-5).sum()) / n_img,
            'fg>0.05': float((probs > 0.05).sum()) / n_img,
            'fg>thr': float((probs > score_thr).sum()) / n_img,
            'dets': sum(int(s.numel()) for s in self.scores) / n_img,
            'top': float(torch.tensor(top).median()) if top else 0.0,
        }


def head_stats(fc_cls, feats) -> Dict[str, float]:
    """Head direction norm, the test RoIs' mean ``cos(x_k, d_k)`` (the
    quantity alpha multiplies in Eq. 8), the alpha suggested by the
    reference rule ``1 / mean cos`` and the plain logits' scale (mean over
    RoIs of the best foreground logit minus the background logit, and the
    mean row std)."""
    import torch

    from lt_mm.core.causal_norm import _head_cosines, suggest_alpha
    out: Dict[str, float] = {}
    with torch.no_grad():
        if hasattr(fc_cls, 'head_direction'):
            d = fc_cls.head_direction
            out['|d|'] = float(d.norm())
            cos = _head_cosines(feats, d, fc_cls.num_heads)
            out['cos(x,d)'] = float(cos.mean())
            try:
                out['suggested alpha'] = suggest_alpha(feats, d,
                                                       fc_cls.num_heads)
            except ValueError:
                out['suggested alpha'] = float('nan')
            logits = _plain_logits(fc_cls, feats)
        else:
            logits = fc_cls(feats)
        fg_max = logits[:, :-1].max(dim=1).values
        out['fg-bg logit'] = float((fg_max - logits[:, -1]).mean())
        out['logit std'] = float(logits.std(dim=1).mean())
    return out


def _plain_logits(fc_cls, feats):
    """Causal-norm logits (Eq. 7) of a CausalNormLinear in eval mode."""
    plain, _ = fc_cls.plain_and_tde_logits(feats, 0.0)
    return plain


# --------------------------------------------------------------------------
# inference settings
# --------------------------------------------------------------------------
class _Form:
    """Switch the output form of a CausalNormLinear (restored on exit)."""

    def __init__(self, fc_cls, form: str, alpha: float) -> None:
        self.fc_cls, self.form, self.alpha = fc_cls, form, alpha

    def __enter__(self) -> None:
        from lt_mm.core.causal_norm import background_exempt_log_probs
        fc = self.fc_cls
        self._saved = (fc.alpha, fc.background_exempt, fc.use_tde_at_test)
        fc.alpha = float(self.alpha)
        fc.use_tde_at_test = True
        fc.background_exempt = self.form != 'plain'
        fc._weight_cache.clear()
        if self.form == 'eps':

            def predict(feats, alpha=None):
                a = fc.alpha if alpha is None else alpha
                plain, tde = fc.plain_and_tde_logits(feats, a)
                return background_exempt_log_probs(
                    plain, tde, eps=REFERENCE_EPS)

            fc.predict = predict

    def __exit__(self, *exc) -> None:
        fc = self.fc_cls
        fc.alpha, fc.background_exempt, fc.use_tde_at_test = self._saved
        fc.__dict__.pop('predict', None)
        fc._weight_cache.clear()


def run_test(runner,
             score_thr: Optional[float] = None,
             max_per_img: Optional[int] = None) -> Dict[str, float]:
    """``runner.test()`` with the given rcnn test settings, box metrics and
    score statistics (the settings are restored afterwards)."""
    rcnn_cfg = runner.model.roi_head.test_cfg
    saved = (rcnn_cfg['score_thr'], rcnn_cfg['max_per_img'])
    if score_thr is not None:
        rcnn_cfg['score_thr'] = score_thr
    if max_per_img is not None:
        rcnn_cfg['max_per_img'] = max_per_img
    try:
        with _Capture(runner.model) as cap:
            metrics = runner.test()
        res = {k: float(v) for k, v in metrics.items() if 'bbox' in k}
        res.update(cap.stats(rcnn_cfg['score_thr']))
        import torch
        res.update(
            head_stats(runner.model.roi_head.bbox_head.fc_cls,
                       torch.cat(cap.cls_in)))
    finally:
        rcnn_cfg['score_thr'], rcnn_cfg['max_per_img'] = saved
    return res


def sweep_tde(runner, alphas: Sequence[float], forms: Sequence[str],
              prefix: str, done: dict, save: Callable[[], None]) -> None:
    """Test one TDE checkpoint at every (alpha, form) not yet in ``done``."""
    fc = runner.model.roi_head.bbox_head.fc_cls
    for form in forms:
        for alpha in alphas:
            if alpha == 0 and form == 'eps':
                continue  # alpha = 0: eps form = exact form up to 1e-10
            key = f'{prefix} a={alpha:g} {form}'
            if key in done:
                continue
            t0 = time.time()
            with _Form(fc, form, alpha):
                done[key] = run_test(runner)
            _log(f'{key}: AP {done[key].get("lvis/bbox_AP", 0):.2f} APr '
                 f'{done[key].get("lvis/bbox_APr", 0):.2f} '
                 f'({time.time() - t0:.0f} s)')
            save()


# --------------------------------------------------------------------------
# ranking of the ground-truth boxes
# --------------------------------------------------------------------------
def _class_metrics(scores, labels) -> Dict[str, List[float]]:
    from lt_mm.det.gt_box_stats import class_aucs, class_top1
    return {
        'AUC': class_aucs(scores, labels),
        'top1': class_top1(scores, labels)
    }


def ranking_rows(fc_cls,
                 feats,
                 labels,
                 groups: Sequence[str],
                 alphas: Sequence[float],
                 shuffles: int = SHUFFLES,
                 seed: int = 0) -> Dict[str, Dict[str, float]]:
    """How a box classifier ranks and labels ground-truth boxes.

    ``feats`` (M, D) are the classifier's inputs on M ground-truth boxes of
    class ``labels`` (M,); ``groups[c]`` is class c's frequency letter.
    Each row holds, averaged over the classes of each group, the per-class
    ``AUC`` (:func:`lt_mm.det.gt_box_stats.class_aucs` of the foreground
    log-probs: the order of one class's scores over boxes, which LVIS AP
    counts) and ``top1`` (the argmax decision, which a re-balancing is
    meant to change).

    A softmax classifier gives the row ``softmax``. A CausalNormLinear
    gives ``a=<alpha>`` (exact Eq. 9) per alpha; for alpha > 0 also
    ``a=<alpha> shuffled``, the control: Eq. 9 with the counterfactual
    term of Eq. 8, ``TDE_fg - plain_fg``, of box ``perm[i]`` added to box
    ``i``'s plain logits (mean over ``shuffles`` random permutations); and
    ``cos(x,d)``: the AUC of the box's mean ``cos(x_k, d_k)`` for each
    class (50 = the head direction does not tell the class's boxes from
    the others).
    """
    import torch

    from lt_mm.core.causal_norm import (_head_cosines,
                                        background_exempt_log_probs)
    from lt_mm.det.gt_box_stats import class_aucs, group_means
    num_fg = len(groups)
    rows: Dict[str, Dict[str, float]] = {}
    was_training = fc_cls.training
    fc_cls.eval()
    try:
        with torch.no_grad():
            if not hasattr(fc_cls, 'head_direction'):
                logp = torch.log_softmax(fc_cls(feats), dim=1)
                rows['softmax'] = group_means(
                    _class_metrics(logp[:, :num_fg], labels), groups)
                return rows
            gen = torch.Generator().manual_seed(seed)
            for alpha in alphas:
                plain, tde = fc_cls.plain_and_tde_logits(feats, alpha)
                if plain is None:
                    raise ValueError('ranking_rows needs a background-'
                                     'exempt CausalNormLinear (Eq. 9).')
                logp = background_exempt_log_probs(plain, tde)
                rows[f'a={alpha:g}'] = group_means(
                    _class_metrics(logp[:, :num_fg], labels), groups)
                if alpha == 0:
                    continue
                added = tde[:, :num_fg] - plain[:, :num_fg]
                runs = []
                for _ in range(shuffles):
                    perm = torch.randperm(len(labels), generator=gen)
                    moved = plain.clone()
                    moved[:, :num_fg] += added[perm]
                    logp = background_exempt_log_probs(plain, moved)
                    runs.append(_class_metrics(logp[:, :num_fg], labels))
                mean = {
                    m: [sum(v) / len(v) for v in zip(*(r[m] for r in runs))]
                    for m in runs[0]
                }
                rows[f'a={alpha:g} shuffled'] = group_means(mean, groups)
            cos = _head_cosines(feats, fc_cls.head_direction,
                                fc_cls.num_heads).mean(dim=1)
            rows['cos(x,d)'] = group_means(
                {'AUC': class_aucs(cos[:, None].expand(-1, num_fg), labels)},
                groups)
    finally:
        fc_cls.train(was_training)
    return rows


def gt_box_ranking(runner,
                   alphas: Sequence[float],
                   seed: int = 0) -> Dict[str, Dict[str, float]]:
    """:func:`ranking_rows` of a runner's box classifier on the
    ground-truth boxes of its test (val) images (the features through
    :func:`lt_mm.det.hooks.extract_gt_box_features`, the frequency groups
    from the LVIS annotation file)."""
    from lt_mm.det.gt_box_stats import frequency_groups
    from lt_mm.det.hooks import extract_gt_box_features, gt_box_dataloader_cfg
    runner.load_or_resume()  # no-op once loaded (by a test or training)
    cfg = copy.deepcopy(runner.cfg)
    cfg.train_dataloader = cfg.test_dataloader
    dataloader = runner.build_dataloader(gt_box_dataloader_cfg(cfg))
    groups = frequency_groups(dataloader.dataset.ann_file,
                              dataloader.dataset.cat_ids)
    fc_cls = runner.model.roi_head.bbox_head.fc_cls
    feats, labels = extract_gt_box_features(runner.model, dataloader,
                                            {'fc_cls': fc_cls})
    return ranking_rows(
        fc_cls, feats['fc_cls'], labels, groups, alphas, seed=seed)


# --------------------------------------------------------------------------
# one seed
# --------------------------------------------------------------------------
def run_seed(seed: int,
             work_dir: str,
             fast: bool,
             alphas: Sequence[float],
             train_factors: Sequence[str],
             log: Callable[[str], None] = _log,
             gt_boxes: bool = False) -> dict:
    """All settings of one seed; cached in ``<work_dir>/seed<k>``.
    ``gt_boxes`` adds :func:`gt_box_ranking` of the baseline and of the
    TDE detector (keys ``gt base``, ``gt tde``)."""
    import torch
    sdir = osp.join(work_dir, f'seed{seed}')
    os.makedirs(sdir, exist_ok=True)
    path = osp.join(sdir, 'results.json')
    done: dict = {}
    if osp.isfile(path):
        with open(path) as f:
            done = json.load(f)

    def save() -> None:
        with open(path, 'w') as f:
            json.dump(done, f, indent=1)

    # the configs' own schedule (36 epochs); 1 epoch with --fast
    epochs = 1 if fast else None
    # baseline (softmax, same schedule)
    runs = [('base', BASELINE_CFG, epochs, None)]
    runs.append(('tde', TDE_CFG, epochs, None))
    for name in train_factors:
        if name == 'tau8':
            runs.append(('tde-tau8', TDE_CFG, epochs, dict(tau=8.0)))
        elif name == 'gamma0':
            runs.append(('tde-gamma0', TDE_CFG, epochs, dict(gamma=0.0)))
        elif name == 'e24':
            n_ep = 2 if fast else 24
            runs.append(('base-e24', BASELINE_CFG, n_ep, None))
            runs.append(('tde-e24', TDE_CFG, n_ep, None))
        else:
            raise ValueError(f'unknown training factor {name!r}; use '
                             f'{TRAIN_FACTORS}.')
    for name, config, n_ep, edits in runs:
        keys_needed = _keys_for(name, alphas)
        gt_key = f'gt {name}' if gt_boxes and name in ('base', 'tde') \
            else None
        if gt_key:
            keys_needed.append(gt_key)
        if all(k in done for k in keys_needed):
            continue
        cfg = build_cfg(config, osp.join(sdir, name), seed, n_ep, edits)
        runner, secs = get_runner(cfg, log)
        if secs:
            done[f'{name} train seconds'] = secs
        with torch.no_grad():
            if name.startswith('base'):
                for key, thr in ((f'{name} thr=1e-4', 1e-4),
                                 (f'{name} thr=1e-5', TDE_SCORE_THR)):
                    if key not in done:
                        done[key] = run_test(runner, thr, 300)
                        log(f'{key}: AP {done[key]["lvis/bbox_AP"]:.2f} '
                            f'APr {done[key]["lvis/bbox_APr"]:.2f}')
                        save()
            else:
                forms = FORMS if name == 'tde' else ('exact', )
                sweep_tde(runner, alphas, forms, name, done, save)
        if gt_key and gt_key not in done:
            done[gt_key] = gt_box_ranking(runner, alphas, seed)
            log(f'{gt_key}: ranking of the val ground-truth boxes done')
            save()
        del runner
    save()
    return done


def _keys_for(name: str, alphas: Sequence[float]) -> List[str]:
    if name.startswith('base'):
        return [f'{name} thr=1e-4', f'{name} thr=1e-5']
    forms = FORMS if name == 'tde' else ('exact', )
    return [
        f'{name} a={a:g} {f}' for f in forms for a in alphas
        if not (a == 0 and f == 'eps')
    ]


# --------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------
def _mean_std(values: List[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return 'n/a'
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f'{mean:.1f}'
    std = math.sqrt(sum((v - mean)**2 for v in vals) / (len(vals) - 1))
    return f'{mean:.1f}±{std:.1f}'


def _fmt(values: List[float], digits: int = 1) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return 'n/a'
    return f'{sum(vals) / len(vals):.{digits}f}'


def results_table(per_seed: Dict[int, dict]) -> str:
    """Markdown table: one row per setting, mean ± std (sample std) over
    the seeds that have it; AP columns x100 as LVIS reports them."""
    keys: List[str] = []
    for res in per_seed.values():
        for k, v in res.items():
            if isinstance(v, dict) and k not in keys and \
                    not k.startswith('gt '):
                keys.append(k)
    head = ['setting', 'n'] + [c for c, _ in COLUMNS] + list(STAT_COLUMNS) + [
        '|d|', 'cos(x,d)', 'fg-bg logit'
    ]
    lines = [
        '| ' + ' | '.join(head) + ' |',
        '|' + '---|' * len(head),
    ]
    for key in keys:
        rows = [res[key] for res in per_seed.values() if key in res]
        cells = [key, str(len(rows))]
        for _, metric in COLUMNS:
            cells.append(
                _mean_std([100 * r.get(metric, math.nan) for r in rows]))
        for col in STAT_COLUMNS:
            cells.append(
                _fmt([r.get(col, math.nan) for r in rows],
                     3 if col == 'top' else 1))
        for col in ('|d|', 'cos(x,d)', 'fg-bg logit'):
            cells.append(_fmt([r.get(col, math.nan) for r in rows], 2))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def gt_box_table(per_seed: Dict[int, dict]) -> str:
    """Markdown table of :func:`gt_box_ranking`: one row per model and
    setting, per-class AUC and top-1 x100 averaged per group, mean ± std
    over the seeds that have it."""
    rows: List[tuple] = []
    for model in ('base', 'tde'):
        for res in per_seed.values():
            for setting in res.get(f'gt {model}', {}):
                if (model, setting) not in rows:
                    rows.append((model, setting))
    cols = [f'{m} {g}' for m in ('AUC', 'top1') for g in 'rcf']
    lines = [
        '| model | setting | n | ' + ' | '.join(cols) + ' |',
        '|' + '---|' * (3 + len(cols))
    ]
    for model, setting in rows:
        per = [
            res[f'gt {model}'][setting] for res in per_seed.values()
            if setting in res.get(f'gt {model}', {})
        ]
        cells = [model, setting, str(len(per))]
        cells += [
            _mean_std([100 * p.get(c, math.nan) for p in per]) for c in cols
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument(
        '--fast',
        action='store_true',
        help='tiny data, 1 (2 for e24) epoch, alpha in {0, 1.5}')
    p.add_argument('--work-dir', default='work_dirs/det_tde_experiment')
    p.add_argument('--data-seed', type=int, default=0)
    p.add_argument('--alphas', type=float, nargs='+', default=None)
    p.add_argument(
        '--train-factors', nargs='*', default=[], choices=TRAIN_FACTORS)
    p.add_argument(
        '--gt-boxes',
        action='store_true',
        help='also rank the val ground-truth boxes per class '
        '(per-class AUC, shuffled counterfactual control)')
    p.add_argument(
        '--table-only',
        action='store_true',
        help='print the table of the cached results, run nothing')
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[int, dict]:
    """Run (or reuse) every seed and print the table."""
    args = parse_args(argv)
    t0 = time.time()
    work_dir = osp.abspath(args.work_dir)
    alphas = args.alphas or (FAST_ALPHAS if args.fast else ALPHAS)
    per_seed: Dict[int, dict] = {}
    if not args.table_only:
        data_root = osp.join(work_dir, 'data')
        os.environ['LT_MM_DATA_ROOT'] = data_root
        from mmengine.registry import DefaultScope

        import lt_mm.det  # noqa: F401
        from lt_mm.quickstart.data import build_task_data
        build_task_data(
            'det',
            osp.join(data_root, 'det'),
            size='fast' if args.fast else 'full',
            seed=args.data_seed)
        with DefaultScope.overwrite_default_scope('mmdet'):
            for seed in args.seeds:
                _log(f'seed {seed}')
                per_seed[seed] = run_seed(
                    seed,
                    work_dir,
                    args.fast,
                    alphas,
                    args.train_factors,
                    gt_boxes=args.gt_boxes)
    else:
        missing = []
        for seed in args.seeds:
            path = osp.join(work_dir, f'seed{seed}', 'results.json')
            if osp.isfile(path):
                with open(path) as f:
                    per_seed[seed] = json.load(f)
            else:
                missing.append(path)
        if not per_seed:
            raise SystemExit(
                f'--table-only: no cached results ({", ".join(missing)}); '
                'run without --table-only first, or give the --work-dir '
                'and --seeds of that run.')
        for path in missing:
            print(f'--table-only: {path} is missing; that seed is left out')
    table = results_table(per_seed)
    print(f'\nseeds {sorted(per_seed)} (data seed {args.data_seed}); box AP '
          'x100 mean±std over seeds; fg>thr = foreground (RoI, class) '
          'scores above thr per image before NMS; dets = detections per '
          'image; top = median best score per image\n')
    print(table)
    if any(k.startswith('gt ') for res in per_seed.values() for k in res):
        gt_table = gt_box_table(per_seed)
        print('\nval ground-truth boxes, x100, mean over the classes of '
              "each group, mean±std over seeds: AUC = ROC AUC of the class's "
              'score (its boxes vs the other boxes); top1 = its boxes whose '
              'argmax is the class\n')
        print(gt_table)
        table += '\n\n' + gt_table
    with open(osp.join(work_dir, 'table.md'), 'w') as f:
        f.write(table + '\n')
    _log(f'wall time {time.time() - t0:.0f} s')
    return per_seed


if __name__ == '__main__':
    main()
