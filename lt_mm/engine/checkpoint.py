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
unpickles with ``weights_only=False``) is never called. The loader of a
scheme registered with mmengine by a third party is never called either (it
may unpickle by itself, e.g. with ``pickle`` or a ``torch.load`` bound at
import): loading through it fails with :class:`UnverifiedSchemeError`, which
names the scheme and the fix: :func:`register_checkpoint_scheme`, whose
``fetch`` function only returns a local path or bytes that lt_mm unpickles
as above.
``builtins.getattr`` is not allowed as such: it is mapped to
:func:`history_buffer_getattr`, which only resolves the statistics methods
registered on ``HistoryBuffer``. Any other global makes loading fail with
:class:`UnsafeCheckpointError`, which names the global and the file or URL.
A truncated or otherwise unreadable file fails with
:class:`CheckpointReadError`, which names it and, when its folder holds
other checkpoints, the newest complete one to use instead.
"""
from __future__ import annotations

import glob
import io
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

from .dist import wait_for_all_ranks


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


# yapf: disable
def last_complete_checkpoint(
        folder: str, exclude: Tuple[str, ...] = ()) -> Optional[str]:
    # yapf: enable
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
    wait_for_all_ranks()
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


class UnverifiedSchemeError(UnsafeCheckpointError):
    """A checkpoint scheme whose loader lt_mm cannot keep safe."""


def _known(prefix: str) -> bool:
    return prefix in ('', 'pavi://', 'mmcls://') or prefix in _HTTP or \
        prefix in _TORCHVISION or prefix in _OPENMMLAB or \
        's3://' in prefix or 'petrel://' in prefix


def _loader_kind(prefix: str) -> str:
    """What mmengine logs: 'Loads checkpoint by <kind> ... backend'."""
    if prefix == '':
        return 'local'
    if _CEPH.match(prefix.replace('(\\S+\\:)?', '')):
        return 'ceph'
    return re.sub(r'[^a-z]', '', prefix.split(':')[0].lower()) or 'scheme'


def _refusing_loader(prefix: str, original: Callable) -> Callable:
    """The loader of a scheme registered with mmengine by a third party.

    Such a loader may unpickle by any means (``pickle``, a ``torch.load``
    bound at import time, ``weights_only=False``), which lt_mm can neither
    see nor force to ``weights_only=True``; so it is never called (fail
    closed) and loading names the scheme and the safe way to register it:
    :func:`register_checkpoint_scheme`.
    """
    where = f'{getattr(original, "__module__", "?")}.' \
        f'{getattr(original, "__qualname__", repr(original))}'

    def refuse(filename, map_location=None, *args, **kwargs):
        raise UnverifiedSchemeError(
            f'Refused to load checkpoint {filename!r}: its scheme '
            f'{prefix!r} is served by {where}, a loader registered with '
            "mmengine's CheckpointLoader.register_scheme that lt_mm has not "
            'verified (it may unpickle without weights_only=True, which '
            'would let the file run code). Nothing was read. Fix: register '
            'the scheme with lt_mm.engine.checkpoint.'
            f'register_checkpoint_scheme({prefix!r}, fetch, force=True), '
            'where fetch(filename) returns a local path or the '
            "checkpoint's bytes (lt_mm then unpickles them with "
            'weights_only=True and its allowlist); or download the file and '
            'pass its local path.')

    return refuse


def _make_loader(prefix: str, original: Callable) -> Callable:
    if _known(prefix):

        def load_safely(filename, map_location=None, *args, **kwargs):
            return load_checkpoint_safely(filename, map_location)

        loader = load_safely
        # mmengine logs 'Loads checkpoint by <__name__[10:]> backend'
        loader.__name__ = \
            f'load_from_{_loader_kind(prefix)} (lt_mm, weights_only)'
    else:
        loader = _refusing_loader(prefix, original)
        loader.__name__ = (f'load_from_{_loader_kind(prefix)} (lt_mm: '
                           'refused, unverified scheme)')
        loader._lt_mm_refused = True  # type: ignore[attr-defined]
    loader._lt_mm_safe = True  # type: ignore[attr-defined]
    return loader


CheckpointSource = Union[str, os.PathLike, bytes, bytearray, memoryview,
                         io.IOBase]


def register_checkpoint_scheme(prefixes: Union[str, List[str], Tuple[str,
                                                                     ...]],
                               fetch: Optional[Callable[
                                   [str], CheckpointSource]] = None,
                               force: bool = False) -> Callable:
    """Register a checkpoint scheme that lt_mm loads safely.

    The safe counterpart of mmengine's
    ``CheckpointLoader.register_scheme``: ``fetch`` only *obtains* the
    checkpoint -- it returns a local path, the file's bytes or a binary file
    object -- and lt_mm unpickles it with :func:`safe_torch_load`
    (``weights_only=True`` plus :data:`MMENGINE_SAFE_GLOBALS`). A loader
    registered directly with mmengine (which unpickles by itself) is refused
    by lt_mm (:class:`UnverifiedSchemeError`).

    Usable as a function or a decorator::

        @register_checkpoint_scheme('myhub://')
        def fetch_myhub(filename: str) -> str:
            return download(filename[len('myhub://'):])  # a local path

    Args:
        prefixes: the scheme prefix(es), e.g. ``'myhub://'`` (regular
            expressions, as mmengine matches them).
        fetch: ``fetch(filename) -> path | bytes | file object``; None when
            used as a decorator.
        force: replace a scheme registered before (mmengine's or another).

    Returns:
        ``fetch`` (decorator use) or the registering decorator.
    """
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if not isinstance(prefixes, (list, tuple)) or not all(
            isinstance(p, str) for p in prefixes):
        raise TypeError('register_checkpoint_scheme: prefixes must be a str '
                        f'or a list of str, got {prefixes!r}.')

    def _register(fetch: Callable[[str], CheckpointSource]) -> Callable:
        if not callable(fetch):
            raise TypeError(f'register_checkpoint_scheme({prefixes!r}): '
                            f'fetch must be callable, got {fetch!r}.')
        for prefix in prefixes:
            CheckpointLoader.register_scheme(
                prefix, _fetching_loader(prefix, fetch), force=force)
        return fetch

    return _register if fetch is None else _register(fetch)


def _fetching_loader(prefix: str,
                     fetch: Callable[[str], CheckpointSource]) -> Callable:

    def load_fetched(filename, map_location=None, *args, **kwargs):
        source = fetch(filename)
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        if isinstance(source, str):
            local = osp.expanduser(source)
            if not osp.isfile(local):
                raise FileNotFoundError(
                    f'checkpoint {filename!r}: the {prefix!r} scheme fetched '
                    f'{source!r}, which is not a file.')
            return safe_torch_load(local, map_location, name=filename)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return safe_torch_load(bytes(source), map_location, name=filename)
        if hasattr(source, 'read'):
            return safe_torch_load(source, map_location, name=filename)
        raise TypeError(
            f'checkpoint {filename!r}: the fetch function of scheme '
            f'{prefix!r} returned {type(source).__name__}; it must return '
            'a local path, bytes or a binary file object.')

    load_fetched.__name__ = \
        f'load_from_{_loader_kind(prefix)} (lt_mm, weights_only)'
    load_fetched._lt_mm_safe = True  # type: ignore[attr-defined]
    return load_fetched


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


def _get_safe_checkpoint_loader(cls, path: str) -> Optional[Callable]:
    """``CheckpointLoader._get_checkpoint_loader`` that never returns a
    loader lt_mm has not made safe: a scheme registered after
    :func:`install_safe_checkpoint_loading` is converted (known prefix) or
    refused (third-party loader) when it is first used."""
    for prefix in list(cls._schemes):
        if re.match(prefix, path) is not None:
            loader = cls._schemes[prefix]
            if not getattr(loader, '_lt_mm_safe', False):
                loader = _make_loader(prefix, loader)
                cls._schemes[prefix] = loader
            return loader
    return None


_get_safe_checkpoint_loader._lt_mm_safe = True  # type: ignore[attr-defined]


def install_safe_checkpoint_loading() -> None:
    """Route every registered mmengine checkpoint scheme through
    :func:`load_checkpoint_safely` (idempotent).

    Schemes lt_mm knows (local, ``http(s)``, ``torchvision`` /
    ``modelzoo``, ``open-mmlab`` / ``openmmlab``, ``mmcls``, ``pavi``,
    ``s3`` / ``petrel``) go through the safe path whoever registered them;
    the loader of any other scheme registered with mmengine is refused when
    used (:class:`UnverifiedSchemeError`; register it with
    :func:`register_checkpoint_scheme` instead), also when it is registered
    after this call.

    mmengine's module-level loaders (``load_from_http`` ...) and its
    ``load_url`` are replaced as well, for code that calls them directly.
    """
    from mmengine.runner import checkpoint as mck
    schemes = CheckpointLoader._schemes
    for prefix, loader in list(schemes.items()):
        if getattr(loader, '_lt_mm_safe', False):
            continue
        schemes[prefix] = _make_loader(prefix, loader)
    # a scheme registered after this call is checked when it is looked up
    if not getattr(CheckpointLoader._get_checkpoint_loader, '_lt_mm_safe',
                   False):
        CheckpointLoader._get_checkpoint_loader = classmethod(  # type: ignore
            _get_safe_checkpoint_loader)
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


def check_checkpoint_scheme(filename: str) -> None:
    """Refuse, before anything is built, a checkpoint whose scheme lt_mm
    would refuse when loading it (:class:`UnverifiedSchemeError`)."""
    install_safe_checkpoint_loading()
    loader = CheckpointLoader._get_checkpoint_loader(filename)
    if getattr(loader, '_lt_mm_refused', False):
        loader(filename)


# ------------------------------------------- checkpoint fits the model
class CheckpointMismatchError(RuntimeError):
    """A checkpoint lacks parameters / buffers of the model, or holds them
    with another shape."""


_SIZE_MISMATCH = re.compile(
    r'size mismatch for (.+?): copying a param with shape torch\.Size\((.*?)\)'
    r' from checkpoint, the shape in current model is torch\.Size\((.*?)\)')


def _head(names: List[str], n: int = 5) -> str:
    more = f', ... (+{len(names) - n} more)' if len(names) > n else ''
    return ', '.join(names[:n]) + more


def load_state_dict_checked(
        module: torch.nn.Module,
        state_dict: Dict[str, Any]) -> Tuple[List[str], List[str], List[str]]:
    """mmengine's ``load_state_dict(module, state_dict, strict=False)``,
    returning what does not fit instead of only logging it.

    The same walk as mmengine (model wrappers and TTA models unwrapped,
    every module's ``_load_from_state_dict`` and load-state-dict post hooks
    run, ``num_batches_tracked`` not counted as missing), so a key that a
    module fills itself while loading (lt_mm's optional inference buffers,
    cRT's re-initialised classifier) is not reported.

    Returns:
        tuple: ``(missing_keys, unexpected_keys, error_msgs)``; the error
        messages are torch's (e.g. ``size mismatch for <key>: ...``).
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper
    from torch.nn.modules.module import _IncompatibleKeys
    missing: List[str] = []
    unexpected: List[str] = []
    errors: List[str] = []
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = state_dict.copy()
    if metadata is not None:
        state_dict._metadata = metadata  # type: ignore[attr-defined]

    def load(mod: torch.nn.Module,
             local: Dict[str, Any],
             prefix: str = '') -> None:
        if is_model_wrapper(mod) or isinstance(mod, BaseTTAModel):
            mod = mod.module
        local_metadata = {} if metadata is None else metadata.get(
            prefix[:-1], {})
        mod._load_from_state_dict(local, prefix, local_metadata, True, missing,
                                  unexpected, errors)
        for name, child in mod._modules.items():
            if child is not None:
                child_prefix = prefix + name + '.'
                load(child, {
                    k: v
                    for k, v in local.items() if k.startswith(child_prefix)
                }, child_prefix)
        keys = _IncompatibleKeys(missing, unexpected)
        for hook in getattr(mod, '_load_state_dict_post_hooks', {}).values():
            hook(mod, keys)

    load(module, state_dict)
    missing = [k for k in missing if 'num_batches_tracked' not in k]
    return missing, unexpected, errors


def check_state_dict_fit(filename: str,
                         missing: List[str],
                         errors: List[str],
                         num_entries: int,
                         allow_missing_keys: bool = False,
                         opt_out: str = '--allow-missing-keys') -> None:
    """Refuse a checkpoint that leaves model entries unloaded.

    Args:
        filename: the checkpoint, named in the error.
        missing: model parameters / buffers the checkpoint lacks.
        errors: torch's load errors (``size mismatch for ...``).
        num_entries: entries of the checkpoint's state dict.
        allow_missing_keys: only warn (``opt_out``).
        opt_out: the option that sets ``allow_missing_keys``, named in the
            error.

    Raises:
        CheckpointMismatchError: ``missing`` or ``errors`` is not empty and
            ``allow_missing_keys`` is False.
    """
    if not missing and not errors:
        return
    shapes = [
        f'{m.group(1)}: checkpoint {m.group(2)} vs model {m.group(3)}'
        for m in map(_SIZE_MISMATCH.match, errors) if m
    ]
    others = [e.strip() for e in errors if not _SIZE_MISMATCH.match(e)]
    problems = []
    if missing:
        problems.append(f'{len(missing)} model parameter(s)/buffer(s) are '
                        f'missing from it ({_head(missing)})')
    if shapes:
        problems.append(f'{len(shapes)} have another shape in it '
                        f'({_head(shapes, 3)})')
    if others:
        problems.append(f'{len(others)} could not be copied '
                        f'({_head(others, 2)})')
    entries = f'{num_entries} entr' + ('y' if num_entries == 1 else 'ies')
    what = (f'checkpoint {filename!r} ({entries}) does not fit '
            'the model: ' + '; '.join(problems) + '.')
    if allow_missing_keys:
        print_log(
            f'{what} {opt_out}: continuing; those entries keep their '
            'initial (random) values.', 'current', 30)
        return
    raise CheckpointMismatchError(
        f'{what} They would keep their initial (random) values, and the '
        'metrics would not be those of the checkpoint. Fix: give the '
        'checkpoint trained with this config (post-hoc configs: the '
        'stage-1 checkpoint of the same model; stage-2 configs: the '
        'stage-2 checkpoint) or the config it was trained with; pass '
        f'{opt_out} to evaluate anyway.')


def load_checkpoint_checked(runner: Any,
                            filename: str,
                            map_location: Any = 'cpu',
                            strict: bool = False,
                            revise_keys: Sequence[Tuple[str,
                                                        str]] = ((r'^module\.',
                                                                  ''), ),
                            allow_missing_keys: bool = False) -> Any:
    """``Runner.load_checkpoint`` that refuses a checkpoint not fitting
    the model (:func:`check_state_dict_fit`).

    As mmengine: the checkpoint is read (through the safe loaders),
    ``after_load_checkpoint`` hooks run, ``revise_keys`` are applied and
    the state dict is copied into the (unwrapped) model -- once. Then
    missing / other-shaped entries raise :class:`CheckpointMismatchError`
    (a warning with ``allow_missing_keys``); unexpected entries are logged
    as mmengine does. ``strict=True`` raises on unexpected keys as well.
    """
    from collections import OrderedDict

    from mmengine.model import is_model_wrapper
    from mmengine.runner.checkpoint import _load_checkpoint
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(
            f'checkpoint {filename!r} holds no state dict (a '
            f'{type(checkpoint).__name__}); give a checkpoint written by '
            'mmengine (a dict with a "state_dict").')
    metadata = getattr(state_dict, '_metadata', OrderedDict())
    for pattern, repl in revise_keys:
        state_dict = OrderedDict(
            (re.sub(pattern, repl, k), v) for k, v in state_dict.items())
    state_dict._metadata = metadata  # type: ignore[attr-defined]
    missing, unexpected, errors = load_state_dict_checked(model, state_dict)
    if unexpected:
        msg = (f'checkpoint {filename!r}: {len(unexpected)} entries are not '
               f'in the model ({_head(unexpected)}).')
        if strict:
            raise CheckpointMismatchError(msg)
        print_log(msg + ' They are ignored.', 'current', 30)
    check_state_dict_fit(filename, missing, errors, len(state_dict),
                         allow_missing_keys)
    runner._has_loaded = True
    print_log(f'Load checkpoint from {filename}', 'current')
    return checkpoint


def require_complete_checkpoint(runner: Any,
                                allow_missing_keys: bool = False) -> None:
    """Make ``runner`` load ``load_from`` with
    :func:`load_checkpoint_checked` (``tools/test.py``).

    mmengine's ``Runner.load_checkpoint`` loads with ``strict=False`` and
    only warns about missing keys and size mismatches, so the checkpoint of
    another model evaluates random weights. The runner keeps mmengine's
    order (``before_run`` hooks, then the checkpoint, then the loop).
    """

    def load_checkpoint(
        filename: str,
        map_location: Any = 'cpu',
        strict: bool = False,
        revise_keys: Sequence[Tuple[str, str]] = ((r'^module\.', ''), )
    ) -> Any:
        return load_checkpoint_checked(
            runner,
            filename,
            map_location=map_location,
            strict=strict,
            revise_keys=revise_keys,
            allow_missing_keys=allow_missing_keys)

    runner.load_checkpoint = load_checkpoint
