# Copyright (c) lt_mm contributors. Per-class training statistics of any
# mmpretrain / mmseg / mmdet config, written as one lt_mm.class_stats/v1 JSON.
"""Count the training samples of every class of a config's dataset.

Usage::

    python tools/class_stats.py CONFIG [--split train] [--out stats.json]
        [--unit images|instances|pixels] [--rule auto|...] [--thr k=v ...]
        [--cfg-options k=v ...]

Every dataset of the chosen split (wrappers unwrapped, ``ConcatDataset``
parts summed, as the counts pipeline :mod:`lt_mm.engine.counts` does) is
counted by its toolbox's reader -- the same readers that give losses,
heads and metrics their counts -- built without its pipeline, reading only
the annotations, in one pass:

* mmseg (:func:`lt_mm.seg.counts.read_seg_counts`): the label PNGs,
  exactly as ``LoadAnnotations`` reads them (``reduce_zero_label``, the
  dataset's ``label_map``, ``ignore_index`` not counted) -> pixels (and
  images) per class;
* mmpretrain (:func:`lt_mm.cls.counts.read_cls_counts`,
  ``source='dataset'``): ``dataset.get_gt_labels()`` of any single-label
  dataset type -> images per class;
* mmdet (:func:`lt_mm.det.counts.read_det_counts`, ``source='dataset'``):
  the instances of ``dataset.data_list`` (the metainfo classes,
  ``ignore_flag`` ones skipped) -> instances and images per class.

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
* ``lvis``: rare/common/frequent: an LVIS json's own ``frequency``
  letters (what ``LTLVISMetric`` reports), else by image counts (<= 10,
  <= 100 images; ``rare_max``, ``common_max``, which also override the
  letters);
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
# mmdet: images, the unit of LVIS's r / c / f bins, DisAlign's GRW and the
# post-hoc N_c rules (CDT counts instances: --unit instances)
DEFAULT_UNIT = {'mmseg': 'pixels', 'mmpretrain': 'images', 'mmdet': 'images'}
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
        'mmpretrain and mmdet); the other units go to "extra"')
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


# ----------------------------------------------------------------- counting
def _plain(cfg):
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg


def dataset_leaves(cfg, split: str) -> List[Tuple[str, dict]]:
    """``(config key, dataset dict)`` of every dataset of
    ``cfg.<split>_dataloader.dataset`` (wrappers unwrapped, the parts of a
    ``ConcatDataset`` listed), as the counts pipeline walks them."""
    from lt_mm.engine.preflight import leaf_datasets
    key = f'{split}_dataloader'
    if cfg.get(key) is None or cfg[key].get('dataset') is None:
        raise SystemExit(f'--split {split}: the config has no {key}.dataset;'
                         ' choose a split it defines.')
    return [(k, _plain(ds)) for k, ds in leaf_datasets(
        _plain(cfg[key]['dataset']), f'{key}.dataset')]


def read_leaf(toolbox: str, ds: dict, progress: bool) -> dict:
    """Counts of one dataset config through the toolbox's reader (no
    cache: the output of this tool is the statistics file).

    * mmseg: :func:`lt_mm.seg.counts.read_seg_counts` (label maps) ->
      pixels, images, ignored, total;
    * mmpretrain: :func:`lt_mm.cls.counts.read_cls_counts` with
      ``source='dataset'`` (``get_gt_labels()`` of any dataset type) ->
      images;
    * mmdet: :func:`lt_mm.det.counts.read_det_counts` with
      ``source='dataset'`` (``data_list``: metainfo classes,
      ``ignore_flag`` skipped) -> instances, images.
    """
    if toolbox == 'mmseg':
        from lt_mm.seg.counts import read_seg_counts
        st = read_seg_counts(ds, 'pixels', cache_file=False, progress=progress)
        ex = st.extra
        res = dict(
            pixels=ex['pixel_counts'],
            images=ex['image_counts'],
            ignored=ex['ignored_pixels'],
            total=ex['total'])
    elif toolbox == 'mmpretrain':
        from lt_mm.cls.counts import read_cls_counts
        st = read_cls_counts(ds, 'images', cache_file=False, source='dataset')
        res = dict(images=st.counts)
    else:
        from lt_mm.det.counts import read_det_counts
        st = read_det_counts(
            ds,
            'instances',
            cache_file=False,
            source='dataset',
            progress=progress)
        res = dict(
            instances=st.extra['instance_counts'],
            images=st.extra['image_counts'])
    res = {
        k: np.asarray(v, np.int64) if isinstance(v, list) else int(v)
        for k, v in res.items()
    }
    res['num_images'] = int(st.extra['num_images'])
    res['names'] = st.names
    if toolbox == 'mmdet':
        res['frequency'] = _json_frequency(ds)
    res['dataset_type'] = st.extra.get('dataset_type') or _type_name(ds)
    return res


def _json_frequency(ds: dict) -> Optional[List[str]]:
    """The LVIS json's per-category ``frequency`` letters in label order
    (read by :func:`lt_mm.det.counts.lvis_class_stats`, the one json
    reader), or None when the dataset has no such json."""
    from lt_mm.det.counts import _ann_path, lvis_class_stats
    path = _ann_path(ds)
    if not path.endswith('.json') or not osp.isfile(path):
        return None
    freq = lvis_class_stats(
        path, 'images', cache_file=False).extra.get('frequency')
    return freq if freq and all(f in ('r', 'c', 'f') for f in freq) else None


def _type_name(ds: dict) -> str:
    t = ds.get('type')
    return t.__name__ if isinstance(t, type) else str(t).split('.')[-1]


def count(toolbox: str, leaves: List[Tuple[str, dict]],
          progress: bool) -> Tuple[List[str], dict]:
    """Sum the counts of the dataset parts (:func:`read_leaf`)."""
    total: Optional[dict] = None
    for _, ds in leaves:
        res = read_leaf(toolbox, ds, progress)
        if total is None:
            total = res
            continue
        if res['names'] != total['names']:
            raise ValueError('the concatenated datasets have different '
                             'classes; count them separately.')
        for k, v in res.items():
            if k == 'frequency':  # kept only when every part agrees
                total[k] = v if v == total.get(k) else None
            elif k not in ('names', 'dataset_type'):
                total[k] = total[k] + v
    classes = total['names']
    if not classes:
        raise ValueError(
            f'{total["dataset_type"]} has no classes in its metainfo; set '
            'metainfo=dict(classes=(...)) in the dataset config.')
    return list(classes), total


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
            if rule == 'ade20k' and thr:
                raise SystemExit(
                    f'--thr {" ".join(thr)}: the dataset has ADE20K\'s '
                    'classes, so --rule auto takes the fixed DisAlign '
                    'Table 16 groups and no thresholds; give --rule pixel '
                    'or --rule ratio to use them.')
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
    if rule == 'lvis' and not thr and res.get('frequency'):
        # the json's own r / c / f letters: the bins LTLVISMetric reports
        # (on LVIS they are the image-count rule; a toy set scales them)
        from lt_mm.core.stats import lvis_splits
        return rule, lvis_splits(frequency=res['frequency'])
    return rule, compute_splits(res['images'], rule, **thr)


#: the thresholds (``--thr``) each counting rule takes
RULE_THRESHOLDS = {
    'pixel': ('head_share', 'tail_share'),
    'ratio': ('head_thr', 'tail_thr', 'total'),
    'shot': ('many_thr', 'few_thr'),
    'lvis': ('rare_max', 'common_max'),
    'ade20k': (),
    'none': (),
}
#: the toolboxes whose counts a rule can group (pixel rules need pixels)
RULE_TOOLBOXES = {
    'pixel': ('mmseg', ),
    'ratio': ('mmseg', ),
    'ade20k': ('mmseg', ),
}


def check_rule(toolbox: str, rule: str, thr: dict) -> None:
    """Refuse, before any annotation is read, a rule the toolbox's counts
    cannot give and ``--thr`` keys or values the rule does not take (an
    unknown key used to raise a TypeError after the whole count, and the
    thresholds of ``none`` / ``ade20k`` -- also ``auto`` on ADE20K -- were
    silently ignored)."""
    if rule != 'auto' and toolbox not in RULE_TOOLBOXES.get(rule, TOOLBOXES):
        raise SystemExit(f'--rule {rule} groups pixel counts: it needs an '
                         f'mmseg config, not {toolbox}; use --rule '
                         f'{_auto_rule(toolbox)} or none.')
    if not thr:
        return
    rules = [rule] if rule != 'auto' else (
        ['pixel'] if toolbox == 'mmseg' else [_auto_rule(toolbox)])
    allowed = RULE_THRESHOLDS[rules[0]]
    if not allowed:
        raise SystemExit(f'--thr {" ".join(thr)}: --rule {rule} takes no '
                         'thresholds; drop --thr or choose --rule pixel / '
                         'ratio / shot / lvis.')
    bad = [k for k in thr if k not in allowed]
    if bad:
        raise SystemExit(f'--thr {" ".join(bad)}: --rule {rules[0]} takes '
                         f'{", ".join(allowed)}.')
    for k, v in thr.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SystemExit(f'--thr {k}={v!r}: give a number.')


def _auto_rule(toolbox: str) -> str:
    return dict(mmseg='pixel', mmpretrain='shot', mmdet='lvis')[toolbox]


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
    check_rule(toolbox, args.rule, dict(args.thr or {}))
    leaves = dataset_leaves(cfg, args.split)
    classes, res = count(toolbox, leaves, not args.no_progress)
    rule, splits = make_splits(toolbox, args.rule, classes, res,
                               dict(args.thr or {}))

    extra = dict(
        config=osp.abspath(args.config),
        split=args.split,
        num_images=int(res['num_images']),
        split_rule=rule,
        dataset_type=res['dataset_type'])
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
