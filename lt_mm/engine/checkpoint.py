"""Safe checkpoint loading for mmengine: one path for every scheme.

torch >= 2.6 loads pickles with ``weights_only=True`` by default. mmengine
0.10.7 writes its ``message_hub`` state into every checkpoint, which holds
:class:`~mmengine.logging.HistoryBuffer` objects (numpy arrays inside, and a
``getattr(HistoryBuffer, 'min')``-style reference for each statistics
method), so the Runner cannot read back its own checkpoints (``load_from``,
``--resume``, ``tools/test.py CKPT``) without help.

Instead of turning safety off (``weights_only=False`` or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), :func:`install_safe_checkpoint_loading`
replaces the loader of every :class:`~mmengine.runner.CheckpointLoader`
scheme by one path:

1. obtain the bytes: a local file; ``http(s)://`` (and ``torchvision://``,
   ``open-mmlab://``, ``openmmlab://``, ``mmcls://``, which name URLs) is
   downloaded into the torch hub cache (``<torch.hub.get_dir()>/checkpoints``,
   where mmengine / ``torch.hub`` put it; an existing cached file is reused);
   ``s3://`` / ``petrel://`` are read through mmengine's file backend;
   ``pavi://`` is downloaded to a temporary folder;
2. unpickle with ``weights_only=True`` plus an allowlist of exactly the
   globals mmengine writes (:data:`MMENGINE_SAFE_GLOBALS`).

mmengine's own http loader (``torch.hub.load_state_dict_from_url``, which
unpickles with ``weights_only=False``) is never called. A scheme registered
by a third party is run with ``torch.load`` forced to ``weights_only=True``.
``builtins.getattr`` is not allowed as such: it is mapped to
:func:`history_buffer_getattr`, which only resolves the statistics methods
registered on ``HistoryBuffer``. Any other global makes loading fail with
:class:`UnsafeCheckpointError`, which names the global and the file or URL.
A truncated or otherwise unreadable file fails with
:class:`CheckpointReadError`, which names it and, when its folder holds
other checkpoints, the newest complete one to use instead.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import io
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled global outside lt_mm's allowlist."""


class CheckpointReadError(RuntimeError):
    """A checkpoint cannot be read (truncated, corrupt, not a checkpoint)."""


# registered by HistoryBuffer.__init__ (mmengine 0.10.7)
_DEFAULT_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling checkpoints.

    mmengine pickles ``HistoryBuffer._statistics_methods`` as
    ``getattr(HistoryBuffer, 'min')`` etc. Only that exact pattern is
    resolved; anything else (which a generic ``getattr`` would allow, e.g.
    reaching a method that writes files) is refused.
    """
    allowed = _DEFAULT_STATISTICS | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise UnsafeCheckpointError(
        f'refusing getattr({obj!r}, {name!r}) while unpickling a checkpoint: '
        'only HistoryBuffer statistics methods may be resolved.')


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """numpy objects that mmengine's message hub pickles.

    numpy 2 writes ``numpy._core.multiarray.*``; checkpoints written under
    numpy 1.x say ``numpy.core.multiarray.*``. Both names are mapped to the
    same two functions.
    """
    from numpy._core import multiarray
    out: List[Union[Callable, Tuple[Callable, str]]] = [np.ndarray, np.dtype]
    for fn in ('_reconstruct', 'scalar'):
        f = getattr(multiarray, fn)
        out.append((f, f'numpy._core.multiarray.{fn}'))
        out.append((f, f'numpy.core.multiarray.{fn}'))
    # numpy >= 1.25 may pickle dtypes by their class (numpy.dtypes.XDType)
    for name in ('Float64DType', 'Float32DType', 'Int64DType', 'Int32DType',
                 'BoolDType', 'UInt8DType'):
        cls = getattr(np.dtypes, name, None)
        if cls is not None:
            out.append(cls)
    return out


MMENGINE_SAFE_GLOBALS: List[Union[Callable, Tuple[Callable, str]]] = [
    HistoryBuffer,
    (history_buffer_getattr, 'builtins.getattr'),
    *_numpy_globals(),
]

# torch's messages for a file that is not a complete checkpoint
_UNREADABLE = ('central directory', 'PytorchStreamReader', 'zip archive',
               'magic number', 'truncated', 'EOF', 'file-like object',
               'invalid load key', 'pickle data was truncated')


def _unpickler_reason(exc: Exception) -> str:
    """The lines of torch's long message that name the refused global."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keys = ('GLOBAL', 'global', 'refusing')
    found = [
        ln for ln in lines
        if any(k in ln for k in keys) and 'weights_only' not in ln
    ]
    return ' '.join(found) if found else (lines[0] if lines else repr(exc))


def _explain(exc: Exception, filename: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'Refused to load checkpoint {filename!r}: it contains a pickled '
        'object outside the allowlist of what mmengine writes '
        '(lt_mm.engine.checkpoint.MMENGINE_SAFE_GLOBALS). Only load '
        'checkpoints you trust; if this file is trusted, re-save its '
        "'state_dict' (and 'meta' of plain types) with torch.save. "
        f'Unpickler said: {_unpickler_reason(exc)}')


# ---------------------------------------------------------------- files
def checkpoint_is_complete(path: str) -> bool:
    """Cheap check that ``path`` is a complete torch zip checkpoint.

    A file cut short while being written (a killed run, a full disk) lacks
    the zip central directory at its end; this opens only that directory
    and checks that the pickle entry ``*/data.pkl`` is listed. Legacy
    (pre-torch-1.6, non-zip) files count as incomplete here.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith('data.pkl') for n in zf.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _step_of(path: str) -> int:
    nums = re.findall(r'\d+', osp.basename(path))
    return int(nums[-1]) if nums else -1


def list_checkpoints(folder: str) -> List[str]:
    """``*.pth`` files of ``folder``, oldest first (mtime, then the step
    number in the name)."""
    files = [f for f in glob.glob(osp.join(folder, '*.pth')) if osp.isfile(f)]
    return sorted(files, key=lambda f: (osp.getmtime(f), _step_of(f)))


def last_complete_checkpoint(folder: str,
                             exclude: Tuple[str, ...] = ()) -> Optional[str]:
    """The newest complete checkpoint (:func:`checkpoint_is_complete`) in
    ``folder`` other than ``exclude``; ``best_*`` files only when nothing
    else is complete. None when there is none."""
    excl = {osp.abspath(e) for e in exclude}
    cands = [f for f in list_checkpoints(folder) if osp.abspath(f) not in excl]
    regular = [f for f in cands if not osp.basename(f).startswith('best_')]
    for group in (regular, cands):
        for f in reversed(group):
            if checkpoint_is_complete(f):
                return f
    return None


def _read_error(exc: BaseException, name: str,
                local_path: Optional[str]) -> CheckpointReadError:
    text = str(exc).strip()
    reason = text.splitlines()[0].split('. ')[0].rstrip('.') if text \
        else type(exc).__name__
    reason = f'{type(exc).__name__}: {reason}'
    msg = (f'Cannot read checkpoint {name!r}: the file is truncated, '
           'corrupt or not a torch checkpoint (a run killed while writing '
           f'it?). torch said: {reason}.')
    if local_path is not None and osp.isfile(local_path):
        if local_path != name:
            msg += (f' It was read from the cached download {local_path!r}; '
                    'delete that file to download it again.')
        else:
            other = last_complete_checkpoint(
                osp.dirname(osp.abspath(local_path)), exclude=(local_path, ))
            if other is not None:
                msg += (f' The last complete checkpoint in its folder is '
                        f'{other!r}: use it instead (--resume {other} or '
                        f'load_from={other}).')
    return CheckpointReadError(msg)


def safe_torch_load(source: Union[str, io.BytesIO, bytes],
                    map_location: Any = 'cpu',
                    name: Optional[str] = None,
                    mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` and mmengine's allowlist.

    Args:
        source: a local path, ``bytes`` or a binary file object.
        map_location: as :func:`torch.load`.
        name: the file or URL named in error messages (default: ``source``
            when it is a path).
        mmap: memory-map the tensors (cheap reading of ``meta``).

    Raises:
        UnsafeCheckpointError: a pickled global outside the allowlist.
        CheckpointReadError: truncated / corrupt file.
    """
    local = source if isinstance(source, str) else None
    if name is None:
        name = local if local is not None else '<bytes>'
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    kwargs = dict(mmap=True) if mmap else {}
    try:
        with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
            return torch.load(
                source, map_location=map_location, weights_only=True, **kwargs)
    except UnsafeCheckpointError as exc:
        if name in str(exc):
            raise
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {name!r}: {exc}') from None
    except pickle.UnpicklingError as exc:
        # a refused global is unsafe; other unpickler errors on a file
        # that is not a complete torch zip mean truncated / not a checkpoint
        text = str(exc)
        if 'global' in text.lower() or 'refusing' in text or (
                local is not None and checkpoint_is_complete(local)):
            raise _explain(exc, name) from None
        raise _read_error(exc, name, local) from None
    except FileNotFoundError:
        raise FileNotFoundError(
            f'checkpoint {name!r} can not be found.') from None
    except Exception as exc:
        if any(k.lower() in str(exc).lower()
               for k in _UNREADABLE) or (local is not None and
                                         not checkpoint_is_complete(local)):
            raise _read_error(exc, name, local) from None
        raise


def read_checkpoint_meta(path: str) -> Dict[str, Any]:
    """``meta`` of a local checkpoint, read safely with memory-mapped
    tensors (cheap even for large files). ``{}`` when there is none."""
    try:
        ckpt = safe_torch_load(path, map_location='cpu', mmap=True)
    except CheckpointReadError:
        raise
    except (RuntimeError, ValueError):  # mmap unsupported: legacy format
        ckpt = safe_torch_load(path, map_location='cpu')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    return meta if isinstance(meta, dict) else {}


# ------------------------------------------------------------ downloads
def _local_rank() -> int:
    try:
        return int(os.environ.get('LOCAL_RANK', '0'))
    except ValueError:
        return 0


def _barrier() -> None:
    if torch.distributed.is_available() and \
            torch.distributed.is_initialized() and \
            torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


def download_checkpoint(url: str,
                        model_dir: Optional[str] = None,
                        progress: bool = False) -> str:
    """Download ``url`` into the torch hub cache and return the local path.

    The cache is ``<torch.hub.get_dir()>/checkpoints/<file name>`` (what
    mmengine's ``load_from_http`` and ``torch.hub.load_state_dict_from_url``
    use), so files downloaded before are reused. The download goes to a
    temporary file that is moved into place when complete
    (:func:`torch.hub.download_url_to_file`). Under distributed training the
    local rank 0 downloads first. Nothing is unpickled here.
    """
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    filename = osp.basename(urlparse(url).path)
    if not filename:
        raise ValueError(f'checkpoint URL {url!r} does not end in a file '
                         'name (e.g. .../model.pth).')
    cached = osp.join(model_dir, filename)

    def fetch() -> None:
        if osp.isfile(cached):
            return
        os.makedirs(model_dir, exist_ok=True)
        print_log(f'Downloading checkpoint {url} to {cached}', 'current')
        try:
            torch.hub.download_url_to_file(
                url, cached, None, progress=progress)
        except Exception as exc:
            raise RuntimeError(
                f'Cannot download checkpoint {url!r}: {exc}') from exc

    if _local_rank() == 0:
        fetch()
    _barrier()
    if _local_rank() != 0:
        fetch()
    return cached


# --------------------------------------------------------- the one path
_HTTP = ('http://', 'https://')
_TORCHVISION = ('modelzoo://', 'torchvision://')
_OPENMMLAB = ('open-mmlab://', 'openmmlab://')
_CEPH = re.compile(r'(\S+\:)?(s3|petrel)://')


def _resolve_url(filename: str) -> Tuple[str, bool]:
    """Map a model-zoo name to its URL or local file (``(target,
    is_mmcls)``); plain paths and URLs are returned unchanged."""
    from mmengine.runner import checkpoint as mck
    if filename.startswith(_TORCHVISION):
        name = filename.split('://', 1)[1]
        urls = mck.get_torchvision_models()
        if name not in urls:
            raise ValueError(f'unknown torchvision model {filename!r}.')
        return urls[name], False
    if filename.startswith(_OPENMMLAB):
        name = filename.split('://', 1)[1]
        deprecated = mck.get_deprecated_model_names()
        name = deprecated.get(name, name)
        urls = mck.get_external_models()
        if name not in urls:
            raise ValueError(f'unknown OpenMMLab model {filename!r}.')
        url = urls[name]
        if not url.startswith(_HTTP):
            url = osp.join(mck._get_mmengine_home(), url)
        return url, False
    if filename.startswith('mmcls://'):
        urls = mck.get_mmcls_models()
        name = filename[len('mmcls://'):]
        if name not in urls:
            raise ValueError(f'unknown mmcls model {filename!r}.')
        return urls[name], True
    return filename, False


def load_checkpoint_safely(filename: str, map_location: Any = None) -> Any:
    """Load a checkpoint of any mmengine scheme with ``weights_only=True``.

    Local paths, ``http(s)://``, ``torchvision://``, ``modelzoo://``,
    ``open-mmlab://``, ``openmmlab://``, ``mmcls://``, ``s3://`` /
    ``petrel://`` (optionally ``name:s3://``) and ``pavi://``. Errors name
    ``filename``.
    """
    target, is_mmcls = _resolve_url(filename)
    if target.startswith(_HTTP):
        local = download_checkpoint(target)
        ckpt = safe_torch_load(local, map_location, name=filename)
    elif _CEPH.match(target):
        from mmengine.fileio import get_file_backend
        backend = get_file_backend(target, backend_args={'backend': 'petrel'})
        ckpt = safe_torch_load(
            backend.get(target), map_location, name=filename)
    elif target.startswith('pavi://'):
        try:
            from pavi import modelcloud
        except ImportError:
            raise ImportError('Please install pavi to load checkpoint '
                              f'{filename!r} from modelcloud.') from None
        model = modelcloud.get(target[len('pavi://'):])
        with tempfile.TemporaryDirectory() as tmp:
            local = osp.join(tmp, model.name)
            model.download(local)
            ckpt = safe_torch_load(local, map_location, name=filename)
    else:
        local = osp.expanduser(target)
        if not osp.isfile(local):
            raise FileNotFoundError(f'checkpoint {filename!r} can not be '
                                    'found.')
        ckpt = safe_torch_load(local, map_location, name=filename)
    if is_mmcls:
        from mmengine.runner.checkpoint import _process_mmcls_checkpoint
        ckpt = _process_mmcls_checkpoint(ckpt)
    return ckpt


@contextlib.contextmanager
def _forced_weights_only():
    """Force ``torch.load(..., weights_only=True)`` (for loaders lt_mm does
    not know: schemes registered by third parties)."""
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        kwargs['weights_only'] = True
        kwargs.pop('pickle_module', None)
        return original(*args, **kwargs)

    torch.load = load
    try:
        with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
            yield
    finally:
        torch.load = original


def _known(prefix: str) -> bool:
    return prefix in ('', 'pavi://', 'mmcls://') or prefix in _HTTP or \
        prefix in _TORCHVISION or prefix in _OPENMMLAB or \
        's3://' in prefix or 'petrel://' in prefix


def _make_loader(prefix: str, original: Callable) -> Callable:
    if _known(prefix):

        def load_safely(filename, map_location=None, *args, **kwargs):
            return load_checkpoint_safely(filename, map_location)

        loader = load_safely
    else:

        @functools.wraps(original)
        def load_forced(filename, map_location=None, *args, **kwargs):
            try:
                with _forced_weights_only():
                    return original(filename, map_location, *args, **kwargs)
            except UnsafeCheckpointError:
                raise
            except pickle.UnpicklingError as exc:
                raise _explain(exc, filename) from None

        loader = load_forced
    # mmengine logs 'Loads checkpoint by <__name__[10:]> backend'
    kind = 'local' if prefix == '' else 'ceph' if _CEPH.match(
        prefix.replace('(\\S+\\:)?', '')) else re.sub(r'[^a-z]', '',
                                                      prefix.split(':')[0])
    loader.__name__ = f'load_from_{kind} (lt_mm, weights_only)'
    loader._lt_mm_safe = True  # type: ignore[attr-defined]
    return loader


def safe_load_url(url: str,
                  model_dir: Optional[str] = None,
                  map_location: Any = None,
                  progress: bool = False,
                  **kwargs) -> Any:
    """Drop-in for ``torch.hub.load_state_dict_from_url`` / mmengine's
    ``load_url`` that never unpickles with ``weights_only=False``."""
    local = download_checkpoint(url, model_dir, progress=progress)
    return safe_torch_load(local, map_location, name=url)


def _safe_http(filename, map_location=None, model_dir=None, *args, **kwargs):
    return safe_torch_load(
        download_checkpoint(filename, model_dir), map_location, name=filename)


# mmengine.runner.checkpoint module functions that unpickle (direct callers
# of them get the safe path too)
_MODULE_LOADERS = ('load_from_local', 'load_from_http', 'load_from_pavi',
                   'load_from_ceph', 'load_from_torchvision',
                   'load_from_openmmlab', 'load_from_mmcls')


def install_safe_checkpoint_loading() -> None:
    """Route every registered mmengine checkpoint scheme through
    :func:`load_checkpoint_safely` (idempotent; call again after a library
    registers new schemes).

    mmengine's module-level loaders (``load_from_http`` ...) and its
    ``load_url`` are replaced as well, for code that calls them directly.
    """
    from mmengine.runner import checkpoint as mck
    schemes = CheckpointLoader._schemes
    for prefix, loader in list(schemes.items()):
        if getattr(loader, '_lt_mm_safe', False):
            continue
        schemes[prefix] = _make_loader(prefix, loader)
    for name in _MODULE_LOADERS:
        if not getattr(getattr(mck, name, None), '_lt_mm_safe', False):
            if name == 'load_from_http':
                fn = _safe_http
            else:

                def fn(filename, map_location=None, *args, **kwargs):
                    return load_checkpoint_safely(filename, map_location)

            fn._lt_mm_safe = True  # type: ignore[attr-defined]
            setattr(mck, name, fn)
    if not getattr(mck.load_url, '_lt_mm_safe', False):
        safe_load_url._lt_mm_safe = True  # type: ignore[attr-defined]
        mck.load_url = safe_load_url
