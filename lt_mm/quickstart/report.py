"""Quickstart report: results tables (markdown + JSON) and PNG plots."""
from __future__ import annotations

import json
import math
from typing import Dict, List, Optional, Sequence

from .runs import BASELINE, TASKS, RunResult, percent_scale


def _fmt(v: Optional[float]) -> str:
    return '  n/a' if v is None or math.isnan(v) else f'{v:5.1f}'


def results_table(task: str, results: Dict[str, RunResult]) -> List[dict]:
    """One row per run: name, kind, the task's columns (percent), seconds."""
    spec = TASKS[task]
    kinds = {m.name: m.kind for m in spec.methods}
    rows = []
    for name, res in results.items():
        row = dict(method=name, kind=kinds.get(name, 'stage1'))
        for title, key in spec.columns:
            v = res.metrics.get(key)
            if v is not None and task == 'det' and v < 0:
                # the LVIS evaluator's -1: no category of that group in
                # the evaluated set (not a score)
                v = None
            row[title] = None if v is None else v * percent_scale(task)
        row['seconds'] = round(res.seconds, 1)
        rows.append(row)
    return rows


def markdown_table(task: str, rows: List[dict]) -> str:
    spec = TASKS[task]
    titles = [t for t, _ in spec.columns]
    head = '| method | kind | ' + ' | '.join(titles) + ' | time (s) |'
    sep = '|' + '---|' * (len(titles) + 3)
    lines = [f'### {spec.name}', '', head, sep]
    for r in rows:
        vals = ' | '.join(_fmt(r[t]).strip() for t in titles)
        lines.append(f'| {r["method"]} | {r["kind"]} | {vals} | '
                     f'{r["seconds"]:.0f} |')
    return '\n'.join(lines) + '\n'


def print_table(task: str, rows: List[dict]) -> None:
    spec = TASKS[task]
    titles = [t for t, _ in spec.columns]
    print(f'\n{spec.name}')
    print(f'{"method":<18}{"kind":<11}' + ''.join(f'{t:>9}' for t in titles))
    for r in rows:
        print(f'{r["method"]:<18}{r["kind"]:<11}' + ''.join(f'{_fmt(r[t]):>9}'
                                                            for t in titles))


def write_tables(path_md: str, path_json: str, tables: Dict[str, List[dict]],
                 extra: dict) -> None:
    with open(path_md, 'w') as f:
        f.write('# lt_mm quickstart results\n\n')
        for k, v in extra.items():
            f.write(f'- {k}: {v}\n')
        f.write('\n')
        for task, rows in tables.items():
            f.write(markdown_table(task, rows) + '\n')
    with open(path_json, 'w') as f:
        json.dump(dict(tables=tables, **extra), f, indent=1)


# ------------------------------------------------------------------ plots
def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_per_class_accuracy(path: str, counts: Sequence[float],
                            results: Dict[str, RunResult]) -> Optional[str]:
    """Per-class accuracy against the class's training frequency."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    xs = [counts[c] for c in order]
    drawn = 0
    for name, res in results.items():
        if not res.per_class:
            continue
        ys = [res.per_class[c] for c in order]
        style = dict(
            lw=2.5, color='black') if name.startswith('baseline') else dict(
                lw=1.3)
        ax.plot(xs, ys, marker='o', ms=3, label=name, **style)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale('log')
    ax.invert_xaxis()
    ax.set_xlabel('training images of the class (log scale, head -> tail)')
    ax.set_ylabel('test accuracy of the class (%)')
    ax.set_title('Per-class accuracy vs training frequency')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def classifier_norms(stage1_ckpt: str,
                     lws_ckpt: Optional[str],
                     tau: float = 0.7) -> Dict[str, List[float]]:
    """Per-class classifier norms: stage 1, tau-normalised, LWS-scaled."""
    from lt_mm.engine.checkpoint import safe_torch_load
    sd = safe_torch_load(stage1_ckpt)['state_dict']
    w = sd['head.fc.weight'].float()
    norms = w.norm(dim=1)
    out = {
        'stage 1 (joint)': norms.tolist(),
        # Decoupling Eq. 3: ||w_c / ||w_c||^tau|| = ||w_c||^(1 - tau)
        f'tau-norm (tau={tau:g})': norms.pow(1 - tau).tolist(),
    }
    if lws_ckpt:
        sd2 = safe_torch_load(lws_ckpt)['state_dict']
        scales = [v for k, v in sd2.items() if k.endswith('scales')]
        if scales:
            out['LWS (s_c * ||w_c||)'] = (scales[0].float().flatten() *
                                          norms).tolist()
    return out


def plot_weight_norms(path: str, counts: Sequence[float],
                      norms: Dict[str, List[float]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    for name, vals in norms.items():
        v = [vals[c] for c in order]
        mean = sum(v) / len(v)
        ax.plot(range(len(v)), [x / mean for x in v], marker='o', label=name)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f'{c}\n({int(counts[c])})' for c in order], fontsize=7)
    ax.set_xlabel('class (training images), head -> tail')
    ax.set_ylabel('classifier norm / mean norm')
    ax.set_title('Classifier weight norms before and after tau-norm / LWS')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweeps(path: str, sweeps: Dict[str, dict]) -> Optional[str]:
    """alpha / tau sweep curves from ``tools/analysis/sweep_posthoc.py``.

    ``sweeps``: {label: curves-json of that tool}; every curve of the
    report split is drawn, overall and few-shot accuracy.
    """
    panels = []
    for label, payload in sweeps.items():
        curves = payload.get('curves', {})
        # the split the values are reported on (test), not the selection one
        split = 'test' if 'test' in curves else next(iter(curves), None)
        for name, c in curves.get(split, {}).items():
            panels.append((f'{label}: {name} [{split}]', c))
    if not panels:
        return None
    plt = _plt()
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels):]:
        ax.axis('off')
    for ax, (title, c) in zip(flat, panels):
        xs = c['values']
        for key, style in (('top1', '-'), ('many', ':'), ('medium', '-.'),
                           ('few', '--')):
            ys = [m.get(key, float('nan')) for m in c['metrics']]
            ax.plot(xs, ys, style, marker='.', label=key)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel('alpha' if 'alpha' in title else 'tau')
        ax.set_ylabel('accuracy (%)')
        ax.grid(alpha=0.3)
    flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def stage1_counts(data_summary: dict) -> List[float]:
    return [float(c) for c in data_summary['counts']]


def tool_path(*parts: str) -> str:
    from .runs import checkout_path
    return checkout_path('tools', *parts)


# ------------------------------------------------------- several seeds
def _mean_std(values: List[float]) -> tuple:
    """Mean and sample standard deviation (n - 1; None for one value,
    which has no spread to estimate)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean)**2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


# columns of the paired table made of two of the task's columns (their
# mean): segmentation's "body & tail", the mean of body and tail mIoU
PAIRED_MEANS: Dict[str, List[tuple]] = {
    'seg': [('body & tail', ('body', 'tail'))]
}


def _paired_titles(task: str) -> List[str]:
    return [t for t, _ in TASKS[task].columns
            ] + [t for t, _ in PAIRED_MEANS.get(task, [])]


def _column_value(row: dict, title: str, task: str) -> Optional[float]:
    """A column of a per-seed row, or one of :data:`PAIRED_MEANS` (None
    for a missing or nan value)."""
    parts = dict(PAIRED_MEANS.get(task, [])).get(title)
    if parts is not None:
        vals = [_column_value(row, t, task) for t in parts]
        return None if None in vals else sum(vals) / len(vals)
    v = row.get(title)
    return None if v is None or math.isnan(v) else v


def _tasks_and_methods(
        per_seed: Dict[int, Dict[str,
                                 List[dict]]]) -> Dict[str, Dict[str, str]]:
    """``{task: {method: kind}}`` over all seeds, in first-seen order."""
    out: Dict[str, Dict[str, str]] = {}
    for tables in per_seed.values():
        for task, rows in tables.items():
            methods = out.setdefault(task, {})
            for r in rows:
                methods.setdefault(r['method'], r['kind'])
    return out


def aggregate_tables(
        per_seed: Dict[int, Dict[str, List[dict]]]) -> Dict[str, List[dict]]:
    """Mean and std over seeds of every column of every task's table.

    Args:
        per_seed: ``{seed: {task: rows}}`` with rows from
            :func:`results_table`.

    Returns:
        dict: ``{task: rows}``; each row has ``method``, ``kind``, ``n``
        (seeds with a value) and per column ``{'mean', 'std', 'values'}``
        (None where no seed has a value), ``seconds`` the mean time.
    """
    out: Dict[str, List[dict]] = {}
    seeds = list(per_seed)
    for task, kinds in _tasks_and_methods(per_seed).items():
        titles = [t for t, _ in TASKS[task].columns]
        rows = []
        for name in kinds:
            found = [
                r for s in seeds for r in per_seed[s].get(task, [])
                if r['method'] == name
            ]
            row = dict(method=name, kind=kinds[name], n=len(found))
            for t in titles:
                vals = [
                    v for v in (_column_value(r, t, task) for r in found)
                    if v is not None
                ]
                if vals:
                    mean, std = _mean_std(vals)
                    row[t] = dict(mean=mean, std=std, values=vals)
                else:
                    row[t] = None
            row['seconds'] = round(
                sum(r['seconds'] for r in found) / max(len(found), 1), 1)
            rows.append(row)
        out[task] = rows
    return out


def paired_differences(
        per_seed: Dict[int, Dict[str, List[dict]]]) -> Dict[str, List[dict]]:
    """Each method against the baseline of the same seed.

    Seeds share nothing (each builds its own data and trains its own
    models), so most of a column's spread over seeds is the seed's, common
    to every method of it; the per-seed difference ``method - baseline``
    removes it. Per method and column (and the means of
    :data:`PAIRED_MEANS`): the differences over the seeds where both have a
    value, their mean, sample std and smallest.

    Args:
        per_seed: ``{seed: {task: rows}}`` with rows from
            :func:`results_table` (the baseline row named ``BASELINE``).

    Returns:
        dict: ``{task: rows}``, one row per method but the baseline, with
        ``method``, ``kind``, ``n`` (seeds with both rows) and per column
        ``{'mean', 'std', 'min', 'values'}`` (None without a pair).
    """
    out: Dict[str, List[dict]] = {}
    seeds = list(per_seed)
    for task, kinds in _tasks_and_methods(per_seed).items():
        titles = _paired_titles(task)
        rows = []
        by_seed = [{
            r['method']: r
            for r in per_seed[s].get(task, [])
        } for s in seeds]
        for name in kinds:
            if name == BASELINE:
                continue
            pairs = [(m[name], m[BASELINE]) for m in by_seed
                     if name in m and BASELINE in m]
            row = dict(method=name, kind=kinds[name], n=len(pairs))
            for t in titles:
                diffs = []
                for m, b in pairs:
                    mv, bv = _column_value(m, t,
                                           task), _column_value(b, t, task)
                    if mv is not None and bv is not None:
                        diffs.append(mv - bv)
                if diffs:
                    mean, std = _mean_std(diffs)
                    row[t] = dict(
                        mean=mean, std=std, min=min(diffs), values=diffs)
                else:
                    row[t] = None
            rows.append(row)
        out[task] = rows
    return out


def paired_markdown(task: str, rows: List[dict]) -> str:
    """Markdown table of :func:`paired_differences` rows."""
    titles = _paired_titles(task)
    head = '| method | kind | ' + ' | '.join(titles) + ' |'
    sep = '|' + '---|' * (len(titles) + 2)
    lines = [
        f'### {TASKS[task].name}: minus the same seed\'s baseline '
        '(mean ± std of the per-seed differences, smallest)', '', head, sep
    ]
    for r in rows:
        vals = ' | '.join(_fmt_ms(r[t], r['n'], paired=True) for t in titles)
        lines.append(f'| {r["method"]} | {r["kind"]} | {vals} |')
    return '\n'.join(lines) + '\n'


def print_paired_table(task: str, rows: List[dict]) -> None:
    """Print :func:`paired_differences` rows as a fixed-width table."""
    titles = _paired_titles(task)
    print(f'\n{TASKS[task].name} -- minus the same seed\'s baseline '
          '(mean ± std of the differences, smallest)')
    print(f'{"method":<18}{"kind":<11}' + ''.join(f'{t:>24}' for t in titles))
    for r in rows:
        print(f'{r["method"]:<18}{r["kind"]:<11}' +
              ''.join(f'{_fmt_ms(r[t], r["n"], paired=True):>24}'
                      for t in titles))


def _fmt_ms(cell: Optional[dict],
            n: Optional[int] = None,
            paired: bool = False) -> str:
    """``mean ± std``; ``mean`` alone for one value; ``(k of n)`` when
    only k of the row's n seeds have a value (the others n/a). ``paired``
    (a cell of :func:`paired_differences`): signed, with the smallest
    difference, ``+mean ± std (min +x)``."""
    if cell is None:
        return 'n/a'
    text = f'{cell["mean"]:+.1f}' if paired else f'{cell["mean"]:.1f}'
    if cell['std'] is not None:
        text += f' ± {cell["std"]:.1f}'
        if paired:
            text += f' (min {cell["min"]:+.1f})'
    k = len(cell['values'])
    if n is not None and k < n:
        text += f' ({k} of {n})'
    return text


def aggregate_markdown(task: str, rows: List[dict], num_seeds: int) -> str:
    """Markdown table of :func:`aggregate_tables` rows (mean ± std)."""
    spec = TASKS[task]
    titles = [t for t, _ in spec.columns]
    head = '| method | kind | ' + ' | '.join(titles) + ' | time (s) |'
    sep = '|' + '---|' * (len(titles) + 3)
    lines = [
        f'### {spec.name} (mean ± std over {num_seeds} seeds)', '', head, sep
    ]
    for r in rows:
        vals = ' | '.join(_fmt_ms(r[t], r['n']) for t in titles)
        lines.append(f'| {r["method"]} | {r["kind"]} | {vals} | '
                     f'{r["seconds"]:.0f} |')
    return '\n'.join(lines) + '\n'


def print_aggregate_table(task: str, rows: List[dict], num_seeds: int) -> None:
    """Print :func:`aggregate_tables` rows as a fixed-width table."""
    spec = TASKS[task]
    titles = [t for t, _ in spec.columns]
    print(f'\n{spec.name} -- mean ± std over {num_seeds} seeds')
    print(f'{"method":<18}{"kind":<11}' + ''.join(f'{t:>14}' for t in titles))
    for r in rows:
        print(f'{r["method"]:<18}{r["kind"]:<11}' +
              ''.join(f'{_fmt_ms(r[t], r["n"]):>14}' for t in titles))


def write_aggregate(path_md: str, path_json: str, agg: Dict[str, List[dict]],
                    per_seed: Dict[int, Dict[str, List[dict]]],
                    extra: dict) -> None:
    """results.md (mean ± std, the differences to the same seed's baseline,
    then every seed) and results.json."""
    paired = paired_differences(per_seed)
    n = len(per_seed)
    with open(path_md, 'w') as f:
        f.write(f'# lt_mm quickstart results ({n} seeds)\n\n')
        for k, v in extra.items():
            f.write(f'- {k}: {v}\n')
        f.write('\n')
        for task, rows in agg.items():
            f.write(aggregate_markdown(task, rows, n) + '\n')
        for task, rows in paired.items():
            f.write(paired_markdown(task, rows) + '\n')
        for seed, tables in per_seed.items():
            f.write(f'## seed {seed}\n\n')
            for task, rows in tables.items():
                f.write(markdown_table(task, rows) + '\n')
    with open(path_json, 'w') as f:
        json.dump(
            dict(
                aggregate=agg,
                paired=paired,
                per_seed={
                    str(k): v
                    for k, v in per_seed.items()
                },
                **extra),
            f,
            indent=1)
