# Copyright (c) lt_mm contributors. Per-class training statistics of any
# mmpretrain / mmseg / mmdet config, written as one lt_mm.class_stats/v1 JSON.
"""Count the training samples of every class of a config's dataset.

Usage::

    python tools/class_stats.py CONFIG [--split train] [--out stats.json]
        [--unit images|instances|pixels] [--rule auto|...] [--thr k=v ...]
        [--cfg-options k=v ...]

The dataset of the chosen split is built from the config without its
pipeline; only the annotations are read, in one pass:

* mmseg: the label PNGs, exactly as ``LoadAnnotations`` reads them
  (``reduce_zero_label``, the dataset's ``label_map``, ``ignore_index``
  not counted) -> pixels (and images) per class;
* mmpretrain: ``dataset.get_gt_labels()`` (the list-file labels) -> images
  per class;
* mmdet: the instances of ``dataset.data_list`` (``ignore_flag`` ones
  skipped) -> instances and images per class.

The counts (DisAlign Eq. 11 ``n_c``, Decoupling Eq. 1-2 ``n_j``, CDT Eq. 3
``N_c``) and class groups go to a ``lt_mm.class_stats/v1`` file
(``lt_mm.core.stats.ClassStats``) that heads, losses, samplers and metrics
read with ``stats_file=``. Group rules (``--rule``):

* ``auto``: mmseg -> ``ade20k`` for ADE20K's 150 classes, else ``pixel``;
  mmpretrain -> ``shot``; mmdet -> ``lvis``;
* ``ade20k``: DisAlign Table 16 head/body/tail labels;
* ``pixel``: head/body/tail by share of the labelled pixels, DisAlign's
  1 % / 0.1 % rescaled to C classes (``lt_mm.core.stats.pixel_splits``;
  thresholds ``head_share``, ``tail_share``);
* ``ratio``: head/body/tail by share of *all* pixels (unlabelled ones
  included, the paper's definition) with absolute thresholds (``head_thr``,
  ``tail_thr``, default 1 % / 0.1 %; ``lt_mm.core.stats.ratio_splits``);
* ``shot``: many/medium/few (> 100, < 20 images; ``many_thr``,
  ``few_thr``);
* ``lvis``: rare/common/frequent (<= 10, <= 100 images; ``rare_max``,
  ``common_max``);
* ``none``: no groups.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

TOOLBOXES = ('mmseg', 'mmpretrain', 'mmdet')
RULES = ('auto', 'ade20k', 'pixel', 'ratio', 'shot', 'lvis', 'none')
DEFAULT_UNIT = {
    'mmseg': 'pixels',
    'mmpretrain': 'images',
    'mmdet': 'instances'
}
UNITS = {
    'mmseg': ('pixels', 'images'),
    'mmpretrain': ('images', ),
    'mmdet': ('instances', 'images')
}


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Per-class training statistics (lt_mm.class_stats/v1)')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split',
        default='train',
        choices=['train', 'val', 'test'],
        help='which <split>_dataloader.dataset to count (default: train)')
    parser.add_argument(
        '--out',
        help='output JSON (default: work_dirs/<config>/class_stats_'
        '<split>.json)')
    parser.add_argument(
        '--unit',
        choices=['images', 'instances', 'pixels'],
        help='unit of "counts" (default: pixels for mmseg, images for '
        'mmpretrain, instances for mmdet); the other units go to "extra"')
    parser.add_argument(
        '--rule', default='auto', choices=RULES, help='class groups')
    parser.add_argument(
        '--thr',
        nargs='+',
        action=DictAction,
        default={},
        help='thresholds of the rule, e.g. head_share=1.5 tail_share=0.15')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs')
    return parser.parse_args(argv)


# ---------------------------------------------------------------- dataset
def _strip_pipelines(cfg):
    """Remove every ``pipeline`` of a (wrapped) dataset config."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            out[k] = [] if k == 'pipeline' else _strip_pipelines(v)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_strip_pipelines(v) for v in cfg)
    return cfg


def _base_datasets(dataset) -> list:
    """Unwrap mmengine wrappers (Concat / Repeat / ClassBalanced)."""
    if hasattr(dataset, 'datasets'):
        out = []
        for d in dataset.datasets:
            out.extend(_base_datasets(d))
        return out
    inner = getattr(dataset, 'dataset', None)
    if inner is not None and inner is not dataset and hasattr(
            inner, '__len__'):
        return _base_datasets(inner)
    return [dataset]


def build_dataset(cfg, split: str):
    """Build ``cfg.<split>_dataloader.dataset`` without pipelines."""
    from mmengine.registry import DATASETS, init_default_scope
    key = f'{split}_dataloader'
    if cfg.get(key) is None or cfg[key].get('dataset') is None:
        raise ValueError(f'the config has no {key}.dataset.')
    init_default_scope(cfg.get('default_scope'))
    ds_cfg = _strip_pipelines(cfg[key]['dataset'].to_dict() if hasattr(
        cfg[key]['dataset'], 'to_dict') else dict(cfg[key]['dataset']))
    return DATASETS.build(ds_cfg)


def _classes(dataset) -> List[str]:
    meta = getattr(dataset, 'metainfo', None) or {}
    classes = meta.get('classes') or getattr(dataset, 'CLASSES', None)
    if not classes:
        raise ValueError(
            f'{type(dataset).__name__} has no classes in its metainfo; set '
            'metainfo=dict(classes=(...)) in the dataset config.')
    return [str(c) for c in classes]


def _bar(n: int, progress: bool):
    from mmengine.utils import ProgressBar
    return ProgressBar(n) if progress and n else None


def _data_infos(dataset) -> list:
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    return [dataset.get_data_info(i) for i in range(len(dataset))]


# ----------------------------------------------------------------- counting
def count_mmseg(datasets: list, progress: bool) -> Tuple[List[str], dict]:
    """Pixels / images per class of mmseg datasets (label PNGs)."""
    from lt_mm.seg.datasets import count_seg_pixels
    classes = _classes(datasets[0])
    c = len(classes)
    acc = dict(
        pixels=np.zeros(c, np.int64),
        images=np.zeros(c, np.int64),
        ignored=0,
        total=0,
        num_images=0)
    for ds in datasets:
        if _classes(ds) != classes:
            raise ValueError('the concatenated datasets have different '
                             'classes; count them separately.')
        res = count_seg_pixels(
            _data_infos(ds),
            c,
            ignore_index=getattr(ds, 'ignore_index', 255),
            backend_args=getattr(ds, 'backend_args', None),
            progress=progress)
        for k in ('pixels', 'images'):
            acc[k] += np.asarray(res[k], np.int64)
        for k in ('ignored', 'total', 'num_images'):
            acc[k] += res[k]
    return classes, acc


def count_mmpretrain(datasets: list, progress: bool) -> Tuple[List[str], dict]:
    """Images per class of mmpretrain datasets (get_gt_labels)."""
    classes = _classes(datasets[0])
    c = len(classes)
    images = np.zeros(c, np.int64)
    n = 0
    for ds in datasets:
        labels = np.asarray(ds.get_gt_labels())
        if labels.dtype == object or labels.ndim != 1:
            raise ValueError(
                f'{type(ds).__name__} is multi-label; class_stats.py counts '
                'single-label classification datasets.')
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= c):
            raise ValueError(
                f'labels lie in [{labels.min()}, {labels.max()}] but the '
                f'dataset has {c} classes.')
        images += np.bincount(labels, minlength=c)
        n += labels.size
    return classes, dict(images=images, num_images=n)


def count_mmdet(datasets: list, progress: bool) -> Tuple[List[str], dict]:
    """Instances / images per class of mmdet datasets (data_list)."""
    classes = _classes(datasets[0])
    c = len(classes)
    instances = np.zeros(c, np.int64)
    images = np.zeros(c, np.int64)
    n = 0
    for ds in datasets:
        infos = _data_infos(ds)
        cat_ids = getattr(ds, 'cat_ids', None)
        if cat_ids is not None and len(cat_ids) != c:
            raise ValueError(
                f'the annotation file has {len(cat_ids)} categories but the '
                f'dataset metainfo lists {c} classes; set metainfo=dict('
                'classes=(...)) to the categories of the annotation file.')
        bar = _bar(len(infos), progress)
        for info in infos:
            labels = [
                int(inst['bbox_label']) for inst in info.get('instances', [])
                if not inst.get('ignore_flag', 0)
            ]
            bad = [v for v in labels if not 0 <= v < c]
            if bad:
                raise ValueError(f'image {info.get("img_path")} has labels '
                                 f'{bad} outside [0, {c}).')
            if labels:
                hist = np.bincount(labels, minlength=c)
                instances += hist
                images += hist > 0
            n += 1
            if bar is not None:
                bar.update()
        if bar is not None:
            print()
    return classes, dict(instances=instances, images=images, num_images=n)


# ------------------------------------------------------------------- groups
def make_splits(toolbox: str, rule: str, classes: List[str], res: dict,
                thr: dict) -> Tuple[str, Dict[str, List[int]]]:
    """Class groups of ``rule`` (see the module docstring).

    ``auto``, ``ade20k`` and ``none`` are resolved here; the counting rules
    (``pixel``, ``ratio``, ``shot``, ``lvis``) are those of
    :func:`lt_mm.core.stats.compute_splits`, on the pixel counts
    (``pixel``, ``ratio``) or the image counts (``shot``, ``lvis``).
    """
    from lt_mm.core.stats import ade20k_class_stats, compute_splits
    if rule == 'auto':
        if toolbox == 'mmseg':
            from lt_mm.seg.metrics import _same_names
            ade = ade20k_class_stats()
            rule = 'ade20k' if _same_names(ade.names, classes) else 'pixel'
        else:
            rule = 'shot' if toolbox == 'mmpretrain' else 'lvis'
    if rule == 'none':
        return rule, {}
    if rule == 'ade20k':
        ade = ade20k_class_stats()
        if len(classes) != ade.num_classes:
            raise ValueError(f"--rule ade20k needs ADE20K's 150 classes; the "
                             f'dataset has {len(classes)}.')
        return rule, ade.splits
    if rule in ('pixel', 'ratio'):
        if 'pixels' not in res:
            raise ValueError(f'--rule {rule} needs pixel counts (mmseg).')
        if rule == 'ratio':
            # the paper's ratios are shares of all pixels, unlabelled ones
            # included
            thr.setdefault('total', res['total'])
        return rule, compute_splits(res['pixels'], rule, **thr)
    return rule, compute_splits(res['images'], rule, **thr)


def _ade_name(classes: List[str]) -> Optional[str]:
    from lt_mm.core.stats import ade20k_class_stats
    from lt_mm.seg.metrics import _same_names
    return 'ade20k' if _same_names(ade20k_class_stats().names,
                                   classes) else None


def main(argv=None) -> str:
    """Run the tool; returns the path of the written JSON."""
    args = parse_args(argv)
    from lt_mm.core.stats import ClassStats
    from lt_mm.engine.runner_utils import load_config
    cfg = load_config(args.config, args.cfg_options)
    toolbox = cfg.get('default_scope')
    if toolbox not in TOOLBOXES:
        raise SystemExit(f'default_scope={toolbox!r}: class_stats.py counts '
                         f'{TOOLBOXES} datasets.')
    unit = args.unit or DEFAULT_UNIT[toolbox]
    if unit not in UNITS[toolbox]:
        raise SystemExit(f'--unit {unit} is not available for {toolbox} '
                         f'datasets; choose one of {UNITS[toolbox]}.')
    dataset = build_dataset(cfg, args.split)
    datasets = _base_datasets(dataset)
    counter = dict(
        mmseg=count_mmseg, mmpretrain=count_mmpretrain,
        mmdet=count_mmdet)[toolbox]
    progress = not args.no_progress
    classes, res = counter(datasets, progress)
    rule, splits = make_splits(toolbox, args.rule, classes, res,
                               dict(args.thr or {}))

    extra = dict(
        config=osp.abspath(args.config),
        split=args.split,
        num_images=int(res['num_images']),
        split_rule=rule,
        dataset_type=type(datasets[0]).__name__)
    if toolbox == 'mmseg':
        extra.update(
            total=int(res['total']),
            ignored_pixels=int(res['ignored']),
            pixel_counts=[int(v) for v in res['pixels']],
            image_counts=[int(v) for v in res['images']])
    elif toolbox == 'mmdet':
        extra.update(
            instance_counts=[int(v) for v in res['instances']],
            image_counts=[int(v) for v in res['images']])
    counts = res[unit]
    if toolbox == 'mmseg' and unit != 'pixels':
        extra.pop('total')  # 'total' is the denominator of pixel ratios
    stats = ClassStats(
        counts=[int(v) for v in counts],
        unit=unit,
        names=classes,
        splits=splits,
        dataset=_ade_name(classes) if toolbox == 'mmseg' else None,
        extra=extra)
    out = args.out or osp.join('work_dirs',
                               osp.splitext(osp.basename(args.config))[0],
                               f'class_stats_{args.split}.json')
    stats.save(out)

    width = max(len(c) for c in classes)
    print(f'{len(classes)} classes, {res["num_images"]} images, counts in '
          f'{unit} ({args.split} split), groups: {rule}')
    group_of = {i: g for g, idx in splits.items() for i in idx}
    for i, (name, n) in enumerate(zip(classes, counts)):
        print(f'  {i:4d} {name:<{width}} {int(n):>12d} '
              f'{group_of.get(i, "")}')
    for g, idx in splits.items():
        print(f'{g}: {len(idx)} classes')
    print(f'class statistics written to {out}')
    return out


if __name__ == '__main__':
    main()
