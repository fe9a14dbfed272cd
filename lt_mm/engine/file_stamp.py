"""Size and modification time of a local file, for cache keys.

lt_mm's caches that are keyed by file *names* (the per-sample class lists
of :mod:`lt_mm.engine.sample_classes`, the feature caches' dataset
fingerprint in :mod:`lt_mm.engine.feature_cache`) add this stamp, so that a
file rewritten under the same name (a regenerated or re-exported data set)
invalidates them instead of being described by stale entries. Caches keyed
by file *content* (the class counts) do not need it.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Any

__all__ = ['file_stamp']


def file_stamp(path: Any) -> str:
    """``'<size>:<mtime_ns>'`` of a local file, ``''`` for anything else
    (a remote URI, a missing file, not a path)."""
    if not isinstance(path, (str, os.PathLike)) or not osp.isfile(path):
        return ''
    st = os.stat(path)
    return f'{st.st_size}:{st.st_mtime_ns}'
