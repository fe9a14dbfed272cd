"""How a box classifier's scores order and label ground-truth boxes.

LVIS AP (Gupta et al., CVPR 2019, Sec. 5) ranks, for each class c, every
detection by its class-c score; with the per-image cap not binding it
counts only that order. A re-balancing (DisAlign, TDE, tau-norm, ...) is
meant to change a different quantity, the argmax decision of each box.
These helpers measure both on the ground-truth boxes of a split (features
from :func:`lt_mm.det.hooks.extract_gt_box_features`), per LVIS frequency
group, for the analysis tools of ``tools/analysis``.
"""
from __future__ import annotations

import json
import math
from typing import Dict, List, Sequence

import torch
from torch import Tensor

GROUPS = ('r', 'c', 'f')


def class_aucs(scores: Tensor, labels: Tensor) -> List[float]:
    """Per class, the ROC AUC of its score column over the boxes.

    For column ``c`` of ``scores`` (M, C) and ``labels`` (M,): the
    probability that a box of class c scores above a box of another class,
    ties counting one half (Mann-Whitney U / (n_c (M - n_c))). 1 = every box
    of class c ranks above every other box, 0.5 = no information. nan for a
    class without boxes or without other boxes.

    Args:
        scores: (M, C) scores or log-probs, any monotone scale per column.
        labels: (M,) class indices in ``[0, C)``.

    Returns:
        list: C floats.
    """
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f'scores {tuple(scores.shape)} must be (M, C) and '
                         f'labels {tuple(labels.shape)} (M,).')
    scores = scores.detach().double().cpu()
    labels = labels.cpu()
    out = []
    for c in range(scores.shape[1]):
        pos = labels == c
        n_pos = int(pos.sum())
        n_neg = len(labels) - n_pos
        if n_pos == 0 or n_neg == 0:
            out.append(math.nan)
            continue
        # rank-sum form of U (O(M log M), no M x M matrix at LVIS scale):
        # average 1-based ranks over ties, U = sum of the positives' ranks
        # - n_pos (n_pos + 1) / 2
        _, inverse, counts = torch.unique(
            scores[:, c], return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        ranks = (ends - (counts.double() - 1) / 2)[inverse]
        u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2
        out.append(u / (n_pos * n_neg))
    return out


def class_top1(scores: Tensor, labels: Tensor) -> List[float]:
    """Per class, the fraction of its boxes whose argmax over the columns
    of ``scores`` (M, C) is the class (nan without boxes)."""
    pred = scores.argmax(dim=1).cpu()
    labels = labels.cpu()
    out = []
    for c in range(scores.shape[1]):
        mask = labels == c
        out.append(
            float((
                pred[mask] == c).double().mean()) if mask.any() else math.nan)
    return out


def group_means(per_class: Dict[str, Sequence[float]],
                groups: Sequence[str]) -> Dict[str, float]:
    """``{'<metric> <group>': mean over the group's classes}`` of per-class
    values ``per_class[metric][c]`` (``groups[c]`` is class c's frequency
    letter; nan values and empty groups are left out)."""
    out = {}
    for metric, values in per_class.items():
        if len(values) != len(groups):
            raise ValueError(f'{metric}: {len(values)} values for '
                             f'{len(groups)} classes.')
        for g in GROUPS:
            vals = [
                v for v, h in zip(values, groups)
                if h == g and not math.isnan(v)
            ]
            if vals:
                out[f'{metric} {g}'] = sum(vals) / len(vals)
    return out


def frequency_groups(ann_file: str, cat_ids: Sequence[int]) -> List[str]:
    """The LVIS frequency letter ('r', 'c' or 'f') of each category id in
    ``cat_ids``, read from the LVIS annotation file ``ann_file`` (for an
    mmdet LVIS dataset: ``frequency_groups(ds.ann_file, ds.cat_ids)``, the
    letters in label order)."""
    with open(ann_file) as f:
        cats = json.load(f)['categories']
    freq = {c['id']: c.get('frequency') for c in cats}
    missing = [c for c in cat_ids if freq.get(c) not in GROUPS]
    if missing:
        raise ValueError(f'{ann_file}: categories {missing} have no LVIS '
                         "'frequency' ('r', 'c' or 'f').")
    return [freq[c] for c in cat_ids]
