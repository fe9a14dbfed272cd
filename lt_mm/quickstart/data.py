"""Quickstart data: long-tailed sets from scikit-learn's bundled digits.

Writes the three tasks' data in the real on-disk formats under one root
(the configs under ``configs/quickstart`` read it through the environment
variable ``LT_MM_DATA_ROOT``) together with the class-statistics JSON files
that the methods need. Re-running with the same settings reuses the data;
other settings replace it (never mixed with it).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
from typing import Dict

from lt_mm.core.stats import ClassStats, lvis_splits, pixel_splits
from lt_mm.toydata import make_ade20k, make_imagenet_lt, make_lvis

# full quickstart sizes (about a minute of data writing on 2 cores) and the
# tiny sizes of the --fast mode used by the test suite
SIZES: Dict[str, Dict[str, dict]] = {
    'full': {
        # ImageNet-LT list format, 10 classes, imbalance ratio 50 (counts
        # 100 ... 2), balanced val (5) and test (20) per class
        'cls':
        dict(
            num_classes=10,
            imbalance_ratio=50,
            max_per_class=100,
            val_per_class=5,
            test_per_class=20,
            image_size=32),
        # 40 val mosaics (not 20): the tail classes get ~5 instances there,
        # so their IoU is not decided by one or two digits
        'seg':
        dict(num_classes=10, num_train=80, num_val=40, image_size=64),
        # every category in >= 4 val images: with 2 rare classes, APr on
        # one instance each was decided by 1-2 detections (std ~5 points)
        'det':
        dict(
            num_classes=8,
            num_train=64,
            num_val=32,
            image_size=64,
            min_val_images=4),
    },
    'fast': {
        'cls':
        dict(
            num_classes=10,
            imbalance_ratio=20,
            max_per_class=40,
            val_per_class=3,
            test_per_class=5,
            image_size=32),
        'seg':
        dict(num_classes=10, num_train=8, num_val=4, image_size=64),
        'det':
        dict(num_classes=8, num_train=16, num_val=6, image_size=64),
    },
}


def _done_marker(root: str) -> str:
    return osp.join(root, '.lt_mm_quickstart.json')


def data_params(task: str, size: str = 'full', seed: int = 0) -> dict:
    """The generator arguments that define one task's data set."""
    if size not in SIZES:
        raise ValueError(f'size={size!r}: use one of {sorted(SIZES)}.')
    if task not in SIZES[size]:
        raise ValueError(f'unknown task {task!r}; use cls, seg or det.')
    return dict(SIZES[size][task], seed=seed)


def _clear_previous(root: str) -> None:
    """Remove a data set this module wrote under ``root`` with other
    settings (or left half-written), so that no file of it is read with
    the new one (mmseg lists every file of the folders; a stale per-image
    class cache would describe the old masks). A non-empty ``root`` without
    the marker is not ours and is refused."""
    if not osp.isdir(root) or not os.listdir(root):
        return
    if not osp.isfile(_done_marker(root)):
        raise FileExistsError(
            f'{root} is not empty and holds no quickstart data marker '
            f'({osp.basename(_done_marker(root))}); the quickstart writes '
            'its data there and will not mix it with other files. Choose '
            'another --work-dir or empty that folder.')
    shutil.rmtree(root)


def build_task_data(task: str,
                    root: str,
                    size: str = 'full',
                    seed: int = 0) -> Dict:
    """Write the data of one task under ``root`` (skipped if present).

    Data written with other settings (size or seed), or whose writing was
    interrupted, is removed first: the marker is written before the first
    file (``complete: false``) and completed after the last one.

    Returns the generator's summary (class counts etc.).
    """
    params = data_params(task, size, seed)
    marker = _done_marker(root)
    if osp.isfile(marker):
        with open(marker) as f:
            done = json.load(f)
        # markers of older versions were written only when complete
        if done.get('params') == params and done.get('complete', True):
            return done['summary']
    _clear_previous(root)
    os.makedirs(root, exist_ok=True)
    with open(marker, 'w') as f:
        json.dump(dict(params=params, complete=False), f)
    if task == 'cls':
        summary = make_imagenet_lt(root, **params)
    elif task == 'seg':
        summary = make_ade20k(root, **params)
        # pixel statistics (head / body / tail by pixel ratio) that the
        # head/body/tail metric and the per-pixel methods read
        # head / body / tail by share of the labelled pixels, the rule
        # tools/class_stats.py applies to non-ADE20K data (pixel_splits)
        counts = [float(c) for c in summary['pixel_counts']]
        ClassStats(
            counts=counts,
            unit='pixels',
            names=[f'digit_{i}' for i in range(len(counts))],
            splits=pixel_splits(counts),
            dataset='quickstart digits (ADE20K layout)').save(
                osp.join(root, 'class_stats.json'))
    elif task == 'det':
        summary = make_lvis(root, **params)
        counts = [float(c) for c in summary['image_counts']]
        ClassStats(
            counts=counts,
            unit='images',
            names=list(summary['classes']),
            splits=lvis_splits(frequency=summary['frequencies']),
            dataset='quickstart digits (LVIS v1 format)',
            extra=dict(
                instance_counts=summary['instance_counts'],
                frequency=summary['frequencies'])).save(
                    osp.join(root, 'class_stats.json'))
    else:
        raise ValueError(f'unknown task {task!r}; use cls, seg or det.')
    summary = json.loads(json.dumps(summary, default=str))
    with open(marker, 'w') as f:
        json.dump(dict(params=params, summary=summary, complete=True), f)
    return summary
