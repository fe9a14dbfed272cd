"""Class counts follow the training dataset (one counts pipeline).

Every count-based component (GRW / CDT losses, DisAlign Eq. 11 and CDT
Eq. 3; heads' post-hoc priors, CDT Eq. 5 / logit adjustment; the
many/medium/few groups of ``LongTailAccuracy``) resolves its ``n_j`` with
:func:`lt_mm.core.stats.resolve_counts` from exactly one of
``counts=[...]``, ``stats_file=PATH`` or a training ``dataset`` read by the
toolbox's reader (cls: ImageNet-LT list, det: LVIS/COCO json, seg: label
maps), all cached by :func:`lt_mm.core.stats.cached_class_stats`.

:func:`fill_class_counts` gives the default: before the Runner is built
(``build_runner``, ``tools/train.py``, ``tools/test.py``) it walks
``cfg.model`` and the evaluators, finds the dicts of components that
declare ``class_count_sources`` (a class attribute: the losses of
:class:`lt_mm.core.reduction.LongTailCrossEntropy`, ``LongTailAccuracy``)
and the heads' ``posthoc=dict(...)`` options, and fills ``counts=[...]``
of those that give no source from ``train_dataloader.dataset`` (wrappers
unwrapped, ``ConcatDataset`` parts summed). So ``--cfg-options
train_dataloader.dataset.data_root=NEW`` moves the counts; an explicit
``counts`` / ``stats_file`` / ``train_ann_file`` still wins.

Test runs fill the same way (from the training annotations, as the old
literal ``train_ann_file`` did): the loss is built at test time too, and a
post-hoc prior of a stage-1 checkpoint is the training one; inference
statistics stored in a checkpoint (``posthoc.counts``) still replace the
built ones when the checkpoint is loaded.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from lt_mm.core.stats import ClassStats, resolve_counts

__all__ = [
    'COUNT_READERS', 'DEFAULT_UNITS', 'register_count_reader',
    'training_class_stats', 'fill_class_counts', 'build_without_pipeline',
    'without_pipelines'
]

#: default scope -> ``reader(dataset_cfg, unit, num_classes) -> ClassStats``
COUNT_READERS: Dict[str, Callable[..., ClassStats]] = {}
#: unit of a count consumer that names none (heads' ``posthoc``)
DEFAULT_UNITS = {'mmpretrain': 'images', 'mmdet': 'images', 'mmseg': 'pixels'}
_READER_MODULES = {
    'mmpretrain': 'lt_mm.cls.counts',
    'mmdet': 'lt_mm.det.counts',
    'mmseg': 'lt_mm.seg.counts'
}
_READER_NAMES = {
    'mmpretrain': 'read_cls_counts',
    'mmdet': 'read_det_counts',
    'mmseg': 'read_seg_counts'
}
_SOURCES = ('counts', 'stats_file', 'train_ann_file')
_EVALUATORS = ('val_evaluator', 'test_evaluator')


def register_count_reader(scope: str, reader: Callable[...,
                                                       ClassStats]) -> None:
    """Use ``reader`` for the datasets of the toolbox ``scope``."""
    COUNT_READERS[scope] = reader


def _reader(scope: str) -> Callable[..., ClassStats]:
    if scope not in COUNT_READERS:
        if scope not in _READER_MODULES:
            raise ValueError(
                f'default_scope={scope!r}: lt_mm has no class-counts reader '
                f'for it (known: {sorted(_READER_MODULES)}); give '
                'counts=[...] or stats_file=PATH.')
        import importlib
        mod = importlib.import_module(_READER_MODULES[scope])
        register_count_reader(scope, getattr(mod, _READER_NAMES[scope]))
    return COUNT_READERS[scope]


def without_pipelines(cfg: Any) -> Any:
    """A copy of a dataset config with every ``pipeline`` emptied."""
    if hasattr(cfg, 'to_dict'):
        cfg = cfg.to_dict()
    if isinstance(cfg, dict):
        return {
            k: ([] if k == 'pipeline' else without_pipelines(v))
            for k, v in cfg.items()
        }
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_pipelines(v) for v in cfg)
    return cfg


def build_without_pipeline(dataset: Any, scope: str) -> Any:
    """Build a dataset config of the toolbox ``scope`` without its
    pipeline (only the annotations are read); a built dataset is returned
    unchanged. The one builder of the count readers and class_stats.py.

    Args:
        dataset: a dataset config (dict / ``ConfigDict``) or a dataset.
        scope: ``'mmpretrain'``, ``'mmseg'`` or ``'mmdet'``.
    """
    if not isinstance(dataset, dict):
        return dataset
    import importlib

    from mmengine.registry import DefaultScope
    datasets = importlib.import_module(f'{scope}.registry').DATASETS
    with DefaultScope.overwrite_default_scope(scope):
        return datasets.build(without_pipelines(dataset))


def _plain(obj: Any) -> Any:
    if hasattr(obj, 'to_dict'):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _leaves(cfg: Any) -> List[Tuple[str, dict]]:
    from .preflight import leaf_datasets
    loader = cfg.get('train_dataloader', None)
    ds = loader.get('dataset', None) if isinstance(loader, dict) else None
    return list(leaf_datasets(ds, 'train_dataloader.dataset'))


def _ann_path(ds: dict) -> str:
    root = ds.get('data_root') or ''
    ann = ds.get('ann_file') or ''
    if ann and root and not os.path.isabs(ann):
        return os.path.join(root, ann)
    return ann or root


def _sentence(text: str) -> str:
    """``text`` with its first letter upper-cased (``str.capitalize``
    would lower-case the rest: PATH, CONFIG, GRWLoss)."""
    return text[:1].upper() + text[1:]


def training_class_stats(cfg: Any,
                         unit: Optional[str] = None,
                         num_classes: Optional[int] = None,
                         key: str = 'this component') -> ClassStats:
    """Counts of the config's training dataset through the toolbox reader.

    ``train_dataloader.dataset`` is unwrapped (``ClassBalancedDataset`` /
    ``RepeatDataset``: the counts of the data, not of the resampled
    stream); the parts of a ``ConcatDataset`` are summed.

    Args:
        cfg: a loaded config (``default_scope`` selects the reader).
        unit: the unit of the counts (default: the toolbox's).
        num_classes: C, checked by the reader.
        key: the config key of the consumer, named in errors.

    Raises:
        lt_mm.engine.preflight.DataNotFoundError: the training annotations
            are missing (names the path, the config key and the fix).
    """
    from .preflight import DataNotFoundError
    scope = cfg.get('default_scope', None)
    reader = _reader(scope)
    unit = unit or DEFAULT_UNITS.get(scope)
    leaves = _leaves(cfg)
    fix = (f'Point the training data at your copy with --cfg-options '
           f'train_dataloader.dataset.data_root=PATH, or give the counts '
           f'explicitly: {key}.stats_file=PATH (python tools/class_stats.py '
           f'CONFIG --out PATH) or {key}.counts=[...].')
    if not leaves:
        raise ValueError(
            f'{key} needs per-class training counts and gives no source, '
            'and the config has no train_dataloader.dataset to count. ' +
            _sentence(fix.split(', or ')[1]))
    total: Optional[List[float]] = None
    first: Optional[ClassStats] = None
    for lkey, ds in leaves:
        ds = _plain(ds)
        path = _ann_path(ds)
        if path and '://' not in path and not os.path.exists(path):
            raise DataNotFoundError(
                f'{key}: the class counts come from the training dataset '
                f'{lkey} (no counts / stats_file given), but its '
                f'annotations {path!r} do not exist (working directory '
                f'{os.getcwd()}). {fix}')
        try:
            stats = reader(ds, unit, num_classes)
        except FileNotFoundError as e:
            raise DataNotFoundError(f'{key}: counting {lkey}: {e} {fix}')
        except ValueError as e:
            raise ValueError(f'{key}: counting {lkey}: {e}') from None
        first = first or stats
        if total is None:
            total = list(stats.counts)
        elif len(total) != len(stats.counts):
            raise ValueError(
                f'{key}: the parts of train_dataloader.dataset have '
                f'{len(total)} and {len(stats.counts)} classes; give '
                'stats_file=PATH for this training set.')
        else:
            total = [a + b for a, b in zip(total, stats.counts)]
    return ClassStats(
        counts=total,
        unit=first.unit,
        names=first.names,
        dataset=first.dataset if len(leaves) == 1 else None)


def _component(scope: str, type_: Any) -> Optional[type]:
    if isinstance(type_, type):
        return type_
    if not isinstance(type_, str):
        return None
    from mmengine.registry import METRICS, MODELS
    for registry in (MODELS, METRICS):
        try:
            with registry.switch_scope_and_registry(scope) as reg:
                found = reg.get(type_)
        except Exception:  # noqa: BLE001 -- unknown scope / name
            found = None
        if found is not None:
            return found
    return None


def _default_unit(cls: type, node: dict, scope: str) -> Optional[str]:
    unit = node.get('unit', node.get('count_unit'))
    if unit is not None:
        return unit
    try:
        param = inspect.signature(cls).parameters.get('unit')
    except (TypeError, ValueError):
        param = None
    if param is not None and isinstance(param.default, str):
        return param.default
    return DEFAULT_UNITS.get(scope)


def _walk(
    node: Any, key: str, num_classes: Optional[int], scope: str,
    found: List[Tuple[str, dict, Optional[str], Optional[int], Tuple[str,
                                                                     ...]]]
) -> None:
    if isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _walk(v, f'{key}.{i}', num_classes, scope, found)
        return
    if not isinstance(node, dict):
        return
    n = node.get('num_classes')
    if isinstance(n, int) and not isinstance(n, bool):
        num_classes = n
    cls = _component(scope, node.get('type')) if 'type' in node else None
    sources = getattr(cls, 'class_count_sources', None) if cls else None
    if sources:
        found.append(
            (key, node, _default_unit(cls, node,
                                      scope), num_classes, tuple(sources)))
    for k, v in node.items():
        if k == 'posthoc' and isinstance(v, dict) and 'type' in v:
            # heads' post-hoc prior (lt_mm.core.cdt.parse_posthoc)
            found.append((f'{key}.{k}', v, DEFAULT_UNITS.get(scope),
                          num_classes, _SOURCES))
        elif isinstance(v, (dict, list, tuple)):
            _walk(v, f'{key}.{k}', num_classes, scope, found)


def fill_class_counts(cfg: Any) -> List[str]:
    """Fill the missing class counts of ``cfg`` from its training dataset.

    See the module docstring. Idempotent (filled dicts then hold
    ``counts``). Each (unit, C) is counted once (and cached on disk by the
    reader).

    Args:
        cfg: a loaded ``mmengine.Config``; changed in place.

    Returns:
        list[str]: the config keys that were filled.
    """
    scope = cfg.get('default_scope', None)
    if scope not in _READER_MODULES:
        return []
    found: list = []
    _walk(cfg.get('model', None), 'model', None, scope, found)
    from .preflight import _model_classes
    heads = _model_classes(cfg)
    model_classes = heads[0][1] if heads else None
    for name in _EVALUATORS:
        _walk(cfg.get(name, None), name, model_classes, scope, found)
    filled: List[str] = []
    memo: Dict[Tuple[Optional[str], Optional[int]], List[float]] = {}
    for key, node, unit, n, sources in found:
        if any(node.get(s) is not None for s in sources):
            continue
        if (unit, n) not in memo:
            stats = training_class_stats(cfg, unit, n, key)
            memo[(unit, n)] = resolve_counts(
                stats, None, n, unit, allow_zero=True)
        node['counts'] = list(memo[(unit, n)])
        filled.append(key)
    if filled:
        from mmengine.logging import print_log
        print_log(
            'lt_mm: class counts of ' + ', '.join(filled) +
            ' from the training dataset (train_dataloader.dataset).',
            logger='current')
    return filled
