"""Safe checkpoint loading for mmengine under torch's ``weights_only`` load.

torch >= 2.6 loads pickles with ``weights_only=True`` by default. mmengine
0.10.7 writes its ``message_hub`` state into every checkpoint, which holds
:class:`~mmengine.logging.HistoryBuffer` objects (numpy arrays inside, and a
``getattr(HistoryBuffer, 'min')``-style reference for each statistics
method), so the Runner cannot read back its own checkpoints (``load_from``,
``--resume``, ``tools/test.py CKPT``).

Instead of turning safety off (``weights_only=False`` or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), :func:`install_safe_checkpoint_loading`
wraps every mmengine :class:`~mmengine.runner.CheckpointLoader` scheme so the
unpickler runs with ``weights_only=True`` plus an allowlist of exactly the
globals mmengine writes (:data:`MMENGINE_SAFE_GLOBALS`). ``builtins.getattr``
is not allowed as such: it is mapped to :func:`history_buffer_getattr`, which
only resolves the statistics methods registered on ``HistoryBuffer``. Any
other global makes loading fail with :class:`UnsafeCheckpointError`, which
names the global and the file.
"""
from __future__ import annotations

import functools
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled global outside lt_mm's allowlist."""


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


def _unpickler_reason(exc: Exception) -> str:
    """The lines of torch's long message that name the refused global."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keys = ('GLOBAL', 'global', 'refusing')
    found = [ln for ln in lines
             if any(k in ln for k in keys) and 'weights_only' not in ln]
    return ' '.join(found) if found else (lines[0] if lines else repr(exc))


def _explain(exc: Exception, filename: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'Refused to load checkpoint {filename!r}: it contains a pickled '
        'object outside the allowlist of what mmengine writes '
        '(lt_mm.engine.checkpoint.MMENGINE_SAFE_GLOBALS). Only load '
        'checkpoints you trust; if this file is trusted, re-save its '
        "'state_dict' (and 'meta' of plain types) with torch.save. "
        f'Unpickler said: {_unpickler_reason(exc)}')


def _safe_loader(loader: Callable) -> Callable:

    @functools.wraps(loader)
    def wrapped(filename, map_location=None, *args, **kwargs):
        try:
            with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
                return loader(filename, map_location, *args, **kwargs)
        except UnsafeCheckpointError:
            raise
        except pickle.UnpicklingError as exc:
            raise _explain(exc, filename) from None

    wrapped._lt_mm_safe = True  # type: ignore[attr-defined]
    return wrapped


def safe_torch_load(filename: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and mmengine's allowlist."""
    try:
        with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except UnsafeCheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        raise _explain(exc, filename) from None


def _load_from_local(filename: str, map_location: Any = None) -> Any:
    import os.path as osp
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=True)


def install_safe_checkpoint_loading() -> None:
    """Wrap every registered mmengine checkpoint scheme (idempotent).

    The local-file loader is replaced by one that passes
    ``weights_only=True`` explicitly, so the result does not depend on the
    torch default or on ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.
    """
    schemes = CheckpointLoader._schemes
    for prefix, loader in list(schemes.items()):
        if getattr(loader, '_lt_mm_safe', False):
            continue
        if prefix == '':
            loader = _load_from_local
        schemes[prefix] = _safe_loader(loader)
