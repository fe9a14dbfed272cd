"""Config-level checks run before the Runner is built (``tools/train.py``,
``tools/test.py``): missing data and inconsistent class counts fail in one
clear line instead of a traceback from mmengine's file listing or an
``IndexError`` inside the first iteration.

:func:`check_config` looks only at the config and at the files it names
(list files are read; images and label maps are checked by the datasets
themselves when they are built, see ``ImageNetLTDataset`` /
``ADE20KLTDataset``). It implements no paper equation; it guards the
per-class statistics ``n_j`` every method relies on (DisAlign Eq. 6,
Decoupling Eq. 1-2) against data of another vocabulary.
"""
from __future__ import annotations

import os
import os.path as osp
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ['ConfigCheckError', 'DataNotFoundError', 'check_config', 'LAYOUTS']


class ConfigCheckError(ValueError):
    """A config that cannot run: the message says what and how to fix it."""


class DataNotFoundError(ConfigCheckError, FileNotFoundError):
    """A ``data_root`` / ``ann_file`` / image folder of the config is missing
    (both a ``ValueError`` and a ``FileNotFoundError``)."""


#: expected on-disk layouts, by dataset family (for the error messages)
LAYOUTS: Dict[str, str] = {
    'ade20k':
    'ADE20K (ADEChallengeData2016): <data_root>/images/{training,validation}'
    '/*.jpg and <data_root>/annotations/{training,validation}/*.png',
    'imagenet_lt':
    'ImageNet-LT: <data_root>/ImageNet_LT_{train,val,test}.txt (lines '
    '"train/n01440764/n01440764_10026.JPEG 0") with the ImageNet images '
    'below <data_root> (train/..., val/...)',
    'lvis':
    'LVIS: <data_root>/annotations/lvis_v1_{train,val}.json (v0.5: '
    'lvis_v0.5_*.json) with the COCO 2017 images in <data_root>/train2017 '
    'and <data_root>/val2017',
}

_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_EVALUATORS = {
    'val_dataloader': 'val_evaluator',
    'test_dataloader': 'test_evaluator'
}
_ENV_RE = re.compile(r'\{\{[\'"]?\s*\$(\w+)\s*:')


def _get(d: Any, key: str, default: Any = None) -> Any:
    if isinstance(d, dict):
        return d.get(key, default)
    return getattr(d, key, default) if d is not None else default


def _family(ds_type: Any) -> Optional[str]:
    name = str(ds_type or '').lower()
    if 'ade20k' in name:
        return 'ade20k'
    if 'imagenetlt' in name or 'imagenet_lt' in name:
        return 'imagenet_lt'
    if 'lvis' in name:
        return 'lvis'
    return None


def leaf_datasets(ds: Any, key: str) -> Iterator[Tuple[str, Any]]:
    """``(config key, dataset dict)`` of every real dataset in ``ds``
    (unwrapping ``ClassBalancedDataset`` / ``RepeatDataset`` /
    ``ConcatDataset``)."""
    if not isinstance(ds, dict):
        return
    inner = ds.get('dataset')
    subs = ds.get('datasets')
    if isinstance(inner, dict):
        yield from leaf_datasets(inner, key + '.dataset')
    elif isinstance(subs, (list, tuple)):
        for i, sub in enumerate(subs):
            yield from leaf_datasets(sub, f'{key}.datasets.{i}')
    else:
        yield key, ds


def _is_local(path: str, ds: Any) -> bool:
    backend = (_get(ds, 'backend_args') or {}).get('backend', 'local')
    return '://' not in path and backend in ('local', 'disk')


def _join(root: str, path: str) -> str:
    if not path:
        return root
    if osp.isabs(path) or not root:
        return path
    return osp.join(root, path)


def _env_hint(cfg: Any) -> str:
    text = getattr(cfg, 'text', '') or ''
    names = sorted(set(_ENV_RE.findall(text)))
    if not names:
        return ''
    return (f' or set the environment variable {names[0]} (this config '
            f'reads {{{{${names[0]}:...}}}})')


def _paths_under(node: Any, root: str, key: str) -> Iterator[str]:
    """Config keys (outside the dataloaders) whose string value is a path
    below ``root`` (``train_ann_file``, ``stats_file``, metric
    ``ann_file``...)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths_under(v, root, f'{key}.{k}' if key else k)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _paths_under(v, root, f'{key}.{i}')
    elif isinstance(node,
                    str) and root and node.startswith(root.rstrip('/') + '/'):
        yield key


def _missing(cfg: Any, what: str, path: str, key: str, fam: Optional[str],
             loaders: List[str]) -> DataNotFoundError:
    layout = LAYOUTS.get(fam) if fam else None
    layout_txt = f' Expected {layout}.' if layout else ''
    if 'quickstart' in path:
        layout_txt += (' The quickstart data are written by python '
                       'tools/quickstart.py (or lt_mm.quickstart.data).')
    opts = ' '.join(f'{k}.data_root=PATH' for k in loaders)
    if what == 'data_root':
        others = [
            k for name in ('model', 'val_evaluator', 'test_evaluator')
            for k in _paths_under(_get(cfg, name), path, name)
        ]
        if others:
            opts += f' (and the paths below it in {", ".join(others)})'
    return DataNotFoundError(
        f'{key}: {what} {path!r} does not exist (working directory '
        f'{os.getcwd()}).{layout_txt} Point data_root at your copy with '
        f'--cfg-options {opts}{_env_hint(cfg)}, or link your copy to '
        f'{path!r}.')


def _check_paths(cfg: Any, key: str, ds: Any, all_keys: List[str]) -> None:
    fam = _family(_get(ds, 'type'))
    root = _get(ds, 'data_root') or ''
    if root and _is_local(root, ds) and not osp.isdir(root):
        raise _missing(cfg, 'data_root', root, key, fam, all_keys)
    ann = _get(ds, 'ann_file') or ''
    if ann and _is_local(ann, ds):
        path = _join(root, ann)
        if not osp.exists(path):
            raise _missing(cfg, 'ann_file', path, key, fam, all_keys)
    prefix = _get(ds, 'data_prefix')
    items = (
        prefix.items() if isinstance(prefix, dict) else
        [('img_path', prefix)] if isinstance(prefix, str) else [])
    for name, sub in items:
        if not isinstance(sub, str):
            continue
        path = _join(root, sub)
        if path and _is_local(path, ds) and not osp.isdir(path):
            raise _missing(cfg, f'data_prefix.{name}', path, key, fam,
                           all_keys)


# ------------------------------------------------------ class counts
def _list_labels(path: str) -> Tuple[int, int]:
    """``(largest label, its first line)`` of an ImageNet-LT list."""
    from lt_mm.cls.counts import read_list_file
    samples = read_list_file(path)  # validates the format (file:line)
    largest = max(y for _, y in samples)
    line = 0
    with open(path, encoding='utf-8') as f:
        for lineno, text in enumerate(f, 1):
            parts = text.strip().rsplit(' ', 1)
            if len(parts) == 2 and parts[1] == str(largest):
                line = lineno
                break
    return largest, line


def _dataset_classes(ds: Any) -> Optional[int]:
    n = _get(ds, 'num_classes')
    if n is not None:
        return int(n)
    classes = _get(ds, 'classes')
    if classes is None:
        classes = _get(_get(ds, 'metainfo') or {}, 'classes')
    if isinstance(classes, str):
        path = _join(_get(ds, 'data_root') or '', classes)
        if not osp.isfile(path):
            return None
        with open(path, encoding='utf-8') as f:
            return sum(1 for line in f if line.strip())
    if isinstance(classes, (list, tuple)):
        return len(classes)
    return None


#: heads whose ``num_classes`` is the dataset's number of classes: cls,
#: seg and det (one-stage ``bbox_head``; two-stage ``roi_head.bbox_head``,
#: a list for Cascade R-CNN, and ``roi_head.mask_head``)
_CLASS_HEADS = ('head', 'decode_head', 'auxiliary_head', 'bbox_head',
                'roi_head.bbox_head', 'roi_head.mask_head')
#: the detection ones among them (compared with the dataset's classes)
_DET_HEADS = ('model.bbox_head', 'model.roi_head.')


def _int(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool)


def _model_classes(cfg: Any) -> List[Tuple[str, int]]:
    """``(config key, num_classes)`` of the model's class outputs."""
    model = _get(cfg, 'model') or {}
    out = []
    for key in _CLASS_HEADS:
        heads = model
        for part in key.split('.'):
            heads = _get(heads, part)
        for i, h in enumerate(
                heads if isinstance(heads, (list, tuple)) else [heads]):
            n = _get(h, 'num_classes')
            if key.endswith('mask_head') and _get(h, 'class_agnostic'):
                continue  # one mask channel whatever the classes
            if _int(n):
                sfx = f'.{i}' if isinstance(heads, (list, tuple)) else ''
                out.append((f'model.{key}{sfx}.num_classes', n))
    for key, pre in (('model.data_preprocessor',
                      _get(model, 'data_preprocessor')),
                     ('data_preprocessor', _get(cfg, 'data_preprocessor'))):
        n = _get(pre, 'num_classes')
        if isinstance(n, int) and not isinstance(n, bool):
            out.append((f'{key}.num_classes', n))
    return out


def _check_agree(entries: List[Tuple[str, int]], why: str) -> None:
    """``(config key, num_classes)`` entries must all be equal."""
    for (key0, c0), (key1, c1) in zip(entries, entries[1:]):
        if c0 != c1:
            raise ConfigCheckError(
                f'{key0}={c0} but {key1}={c1}: {why}; set every '
                'num_classes to the number of classes of the data.')


def _onehot(cfg: Any, key: str) -> bool:
    """Whether the data preprocessor at ``key`` ('data_preprocessor' or
    'model.data_preprocessor') makes one-hot labels of its num_classes."""
    parts = key.split('.')
    if parts[-1] == 'num_classes':
        parts = parts[:-1]
    node = cfg
    for part in parts:
        node = _get(node, part)
    return bool(_get(node, 'batch_augments') or _get(node, 'to_onehot'))


def _evaluators(cfg: Any, name: str) -> Iterator[Tuple[str, Any]]:
    ev = _get(cfg, name)
    if isinstance(ev, (list, tuple)):
        for i, e in enumerate(ev):
            yield f'{name}.{i}', e
    elif isinstance(ev, dict):
        yield name, ev


def _find_paths(node: Any, key: str,
                names: Sequence[str]) -> Iterator[Tuple[str, str]]:
    """``(config key, value)`` of every string under one of ``names`` in a
    config subtree (e.g. the ``train_ann_file`` of losses and metrics)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in names and isinstance(v, str):
                yield f'{key}.{k}', v
            else:
                yield from _find_paths(v, f'{key}.{k}', names)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _find_paths(v, f'{key}.{i}', names)


def _count_nodes(cfg: Any, evaluators: List[str]) -> List[Tuple[str, Any]]:
    """The model and the evaluators: where class counts are configured."""
    nodes: List[Tuple[str, Any]] = [('model', _get(cfg, 'model') or {})]
    for name in evaluators:
        nodes.extend(_evaluators(cfg, name))
    return nodes


def _check_classes(cfg: Any, leaves: List[Tuple[str, Any]],
                   evaluators: List[str]) -> None:
    model_c = _model_classes(cfg)
    # 1. ImageNet-LT lists of the dataloaders
    for key, ds in leaves:
        if _family(_get(ds, 'type')) != 'imagenet_lt':
            continue
        ann = _get(ds, 'ann_file') or ''
        path = _join(_get(ds, 'data_root') or '', ann)
        if not ann or not osp.isfile(path):
            continue
        largest, line = _list_labels(path)
        ds_c = _dataset_classes(ds)
        if ds_c is not None and largest >= ds_c:
            raise ConfigCheckError(
                f'{path}:{line}: label {largest} is out of range [0, {ds_c})'
                f' of {key} (num_classes / classes = {ds_c}); use the list '
                'of the dataset the model is built for.')
        for mkey, c in model_c:
            if largest >= c:
                raise ConfigCheckError(
                    f'{path}:{line}: label {largest} of {key} is out of '
                    f'range for {mkey}={c} (labels must lie in [0, {c})); '
                    f'set {mkey} to the number of classes of the data.')
            if ds_c is not None and ds_c != c:
                raise ConfigCheckError(
                    f'{key} has {ds_c} classes (num_classes / classes) but '
                    f'{mkey}={c}; they must agree.')
    # 2. seg / det / other datasets that name their classes
    for key, ds in leaves:
        fam = _family(_get(ds, 'type'))
        if fam == 'imagenet_lt':
            continue
        ds_c = _dataset_classes(ds)
        if ds_c is None and fam == 'ade20k':
            ds_c = 150  # ADE20K's own vocabulary
        if ds_c is None:
            continue
        for mkey, c in model_c:
            seg_head = mkey.startswith(
                ('model.decode_head', 'model.auxiliary_head'))
            if seg_head and c != ds_c:
                raise ConfigCheckError(
                    f'{key} has {ds_c} classes (metainfo classes) but '
                    f'{mkey}={c}; they must agree.')
            if mkey.startswith(_DET_HEADS) and c != ds_c:
                raise ConfigCheckError(
                    f'{key} has {ds_c} classes (metainfo classes) but '
                    f'{mkey}={c}: the box / mask head predicts the '
                    'foreground classes of the data (mmdet adds the '
                    f'background itself); set {mkey}={ds_c} (and every '
                    'other bbox_head / mask_head num_classes), or give the '
                    'dataset the classes the model is built for.')
    # detection heads of a dataset without explicit classes: they agree
    _check_agree([(k, c) for k, c in model_c if k.startswith(_DET_HEADS)],
                 'the box and mask heads predict the same foreground '
                 'classes (the dataset\'s)')
    # every class output of the model counts the same classes; a
    # data_preprocessor's num_classes only matters for its batch augments
    # (one-hot labels): mmpretrain's own in21k config has head 21843 and
    # preprocessor 21842
    _check_agree([(k, c) for k, c in model_c
                  if 'data_preprocessor' not in k or _onehot(cfg, k)],
                 'the model\'s class outputs must count the same classes')
    # 3. metrics and losses: num_classes and their training lists
    for key, node in _count_nodes(cfg, evaluators):
        n = _get(node, 'num_classes') if key != 'model' else None
        if isinstance(n, int) and not isinstance(n, bool):
            for mkey, c in model_c:
                if c != n:
                    raise ConfigCheckError(
                        f'{key}.num_classes={n} but {mkey}={c}; the metric '
                        'must count the classes the model predicts.')
        for tkey, tpath in _find_paths(node, key, ('train_ann_file', )):
            if tpath.endswith('.json') or _get(
                    cfg, 'default_scope') not in (None, 'mmpretrain'):
                continue  # detection: an LVIS json (checked by lt_mm.det)
            if not osp.isfile(tpath):
                raise DataNotFoundError(
                    f'{tkey}={tpath!r} does not exist (working directory '
                    f'{os.getcwd()}): it is the training list the class '
                    f'counts are computed from. Expected '
                    f'{LAYOUTS["imagenet_lt"]}.')
            largest, line = _list_labels(tpath)
            for mkey, c in model_c:
                if largest >= c:
                    raise ConfigCheckError(
                        f'{tpath}:{line}: label {largest} ({tkey}) is out '
                        f'of range for {mkey}={c} (labels must lie in '
                        f'[0, {c})).')
                if key != 'model' and n is None and largest + 1 != c:
                    # the metric counts classes 0 .. largest of the list
                    raise ConfigCheckError(
                        f'{key} counts {largest + 1} classes (labels 0..'
                        f'{largest} of {tkey}={tpath!r}) but {mkey}={c}: '
                        'the metric must count the classes the model '
                        'predicts. Set the model to the classes of the '
                        f'data, or give {key}.num_classes={c} if the '
                        'last classes have no training image.')


# ------------------------------------------------------------ entry
_MODES = ('all', 'train', 'test')


def check_config(cfg: Any, mode: str = 'all') -> None:
    """Check a loaded config before the Runner is built.

    Checks, for the dataloaders the run will use (``mode='train'``:
    ``train_dataloader`` and, when validation is configured,
    ``val_dataloader``; ``'test'``: ``test_dataloader``; ``'all'``: every
    dataloader present), each dataset (wrappers such as
    ``ClassBalancedDataset`` unwrapped):

    1. its local ``data_root``, ``ann_file`` and ``data_prefix`` folders
       exist; else one line naming the path, the expected layout of
       ADE20K / ImageNet-LT / LVIS and how to point ``data_root`` at the
       data (``--cfg-options <loader>.dataset.data_root=PATH`` or the
       environment variable the config reads);
    2. ImageNet-LT lists: the largest label (named with its file and line)
       is below the dataset's ``num_classes`` / ``classes`` and below the
       model's ``head.num_classes`` (and ``data_preprocessor``'s), and an
       explicit dataset class count equals the head's;
    3. segmentation: the dataset's class count (``metainfo.classes``, or
       ADE20K's 150) equals ``decode_head`` / ``auxiliary_head``
       ``num_classes``; detection: the dataset's ``metainfo.classes``
       count equals every ``num_classes`` of ``roi_head.bbox_head`` (a
       dict, or a list for Cascade R-CNN), ``roi_head.mask_head`` (unless
       ``class_agnostic``) and a one-stage ``bbox_head``, which also
       agree with each other;
    4. the evaluators' ``num_classes`` equal the model's, and every
       ``train_ann_file`` (losses, heads, metrics) exists and has labels
       below the model's ``num_classes``;
    5. the evaluators' local ``ann_file`` exists.

    Args:
        cfg: an ``mmengine.Config`` (or a plain dict).
        mode: ``'train'``, ``'test'`` or ``'all'``.

    Raises:
        DataNotFoundError: a path is missing (a ``ValueError`` and a
            ``FileNotFoundError``).
        ConfigCheckError: class counts disagree (a ``ValueError``).
        ValueError: a malformed list file (named with file and line).
    """
    if mode not in _MODES:
        raise ValueError(f'mode={mode!r}; choose one of {list(_MODES)}.')
    if mode == 'train':
        loaders = ['train_dataloader']
        if _get(cfg, 'val_cfg') is not None and _get(cfg, 'val_evaluator'):
            loaders.append('val_dataloader')
    elif mode == 'test':
        loaders = ['test_dataloader']
    else:
        loaders = list(_LOADERS)
    loaders = [k for k in loaders if isinstance(_get(cfg, k), dict)]
    leaves: List[Tuple[str, Any]] = []
    for name in loaders:
        leaves.extend(
            leaf_datasets(_get(_get(cfg, name), 'dataset'), f'{name}.dataset'))
    # every dataset reading the same data_root must be pointed at the data
    every = [
        leaf for k in _LOADERS for leaf in leaf_datasets(
            _get(_get(cfg, k), 'dataset'), f'{k}.dataset')
    ]
    for key, ds in leaves:
        root = _get(ds, 'data_root')
        keys = [k for k, d in every if _get(d, 'data_root') == root] or [key]
        _check_paths(cfg, key, ds, keys)
    evaluators = [_EVALUATORS[k] for k in loaders if k in _EVALUATORS]
    for name in evaluators:
        for key, ev in _evaluators(cfg, name):
            ann = _get(ev, 'ann_file')
            if isinstance(ann, str) and ann and '://' not in ann and (
                    not osp.isfile(ann)):
                raise DataNotFoundError(
                    f'{key}.ann_file {ann!r} does not exist (working '
                    f'directory {os.getcwd()}). Point it at your copy with '
                    f'--cfg-options {key}.ann_file=PATH{_env_hint(cfg)}.')
    _check_classes(cfg, leaves, evaluators)
    warn_counts_elsewhere(cfg, evaluators)


def warn_counts_elsewhere(cfg: Any, evaluators: List[str]) -> List[str]:
    """Warn when an explicit count source (``train_ann_file`` /
    ``stats_file`` of a loss, head or metric) lies outside the training
    dataset's ``data_root``: a config that builds these paths from its
    data root keeps the old ones when only ``train_dataloader.dataset.
    data_root`` is overridden, and the groups / weights then come from
    other data. Not an error: a stats file may live elsewhere on purpose.

    Returns:
        list[str]: the config keys warned about.
    """
    train = _get(_get(cfg, 'train_dataloader'), 'dataset')
    roots = {
        osp.abspath(r)
        for _, ds in leaf_datasets(train, 'train_dataloader.dataset')
        for r in [_get(ds, 'data_root')] if isinstance(r, str) and r
    }
    if not roots:
        return []
    warned = []
    for key, node in _count_nodes(cfg, evaluators):
        for skey, path in _find_paths(node, key,
                                      ('train_ann_file', 'stats_file')):
            if '://' in path or ':' in path[:9]:
                continue  # a URI or 'builtin:ade20k'
            full = osp.abspath(path)
            if any(full == r or full.startswith(r + os.sep) for r in roots):
                continue
            warned.append(skey)
            from mmengine.logging import print_log
            print_log(
                f'lt_mm: {skey}={path!r} is not under the training data '
                f'({", ".join(sorted(roots))}): the class counts and '
                'groups come from that file, not from the training data. '
                'If the data moved, move this path too (or remove it: '
                'counts without a source follow train_dataloader.dataset).',
                logger='current',
                level=30)
    return warned
