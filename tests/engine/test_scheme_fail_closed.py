"""Checkpoint schemes registered by third parties fail closed.

A loader registered with mmengine's ``CheckpointLoader.register_scheme``
unpickles by itself (``pickle``, a ``torch.load`` bound at import time,
``weights_only=False``), which lt_mm cannot force to ``weights_only=True``:
it is never called, and loading names the scheme and the fix,
:func:`lt_mm.engine.checkpoint.register_checkpoint_scheme`, whose ``fetch``
only returns a local path or bytes that lt_mm unpickles safely. The schemes
lt_mm knows keep working.
"""
from __future__ import annotations

import io
import os.path as osp
import pickle
from typing import Iterator

import pytest
import torch
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
from torch import load as bound_torch_load
from torch import nn

import lt_mm.engine  # noqa: F401  (installs the safe loaders)
from lt_mm.engine.checkpoint import (UnsafeCheckpointError,
                                     UnverifiedSchemeError,
                                     check_checkpoint_scheme,
                                     install_safe_checkpoint_loading,
                                     register_checkpoint_scheme)
from tests.reliability.conftest import write_evil_checkpoint

PREFIX = 'lttesthub://'


@pytest.fixture
def scheme_cleanup() -> Iterator[None]:
    yield
    CheckpointLoader._schemes.pop(PREFIX, None)


@pytest.fixture
def evil(tmp_path):
    path, marker = str(tmp_path / 'evil.pth'), str(tmp_path / 'MARKER')
    write_evil_checkpoint(path, marker)
    return path, marker


def _bound_torch_load(filename, map_location=None):
    return bound_torch_load(
        filename[len(PREFIX):], map_location=map_location, weights_only=False)


def _plain_pickle(filename, map_location=None):
    with open(filename[len(PREFIX):], 'rb') as f:
        return pickle.load(f)


@pytest.mark.parametrize('loader', [_bound_torch_load, _plain_pickle])
@pytest.mark.parametrize('registered', ['before', 'after'])
def test_third_party_loader_is_refused(loader, registered, evil,
                                       scheme_cleanup):
    path, marker = evil
    if registered == 'before':  # then lt_mm's installation runs
        CheckpointLoader.register_scheme(PREFIX, loader, force=True)
        install_safe_checkpoint_loading()
    else:  # registered after lt_mm installed its loaders
        install_safe_checkpoint_loading()
        CheckpointLoader.register_scheme(PREFIX, loader, force=True)
    for call in (
            lambda: CheckpointLoader.load_checkpoint(PREFIX + path),
            lambda: _load_checkpoint(PREFIX + path, map_location='cpu'),
            lambda: load_checkpoint(nn.Linear(2, 2), PREFIX + path),
            lambda: check_checkpoint_scheme(PREFIX + path),
    ):
        with pytest.raises(UnverifiedSchemeError) as err:
            call()
        msg = str(err.value)
        assert PREFIX in msg and loader.__name__ in msg
        assert 'register_checkpoint_scheme' in msg
        assert not osp.exists(marker)
    # still an UnsafeCheckpointError (what callers catch)
    assert issubclass(UnverifiedSchemeError, UnsafeCheckpointError)


@pytest.mark.parametrize('kind', ['path', 'bytes', 'file'])
def test_register_checkpoint_scheme_loads_safely(kind, evil, tmp_path,
                                                 scheme_cleanup):
    good = str(tmp_path / 'good.pth')
    torch.save({'meta': {'iter': 3}, 'state_dict': {'w': torch.ones(2)}}, good)

    @register_checkpoint_scheme(PREFIX, force=True)
    def fetch(filename: str):
        local = filename[len(PREFIX):]
        if kind == 'path':
            return local
        data = open(local, 'rb').read()
        return data if kind == 'bytes' else io.BytesIO(data)

    assert fetch.__name__ == 'fetch'  # the decorator returns fetch
    ckpt = _load_checkpoint(PREFIX + good, map_location='cpu')
    assert ckpt['meta']['iter'] == 3
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))
    check_checkpoint_scheme(PREFIX + good)  # not refused
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(PREFIX + path, map_location='cpu')
    assert not isinstance(err.value, UnverifiedSchemeError)
    assert PREFIX + path in str(err.value) and 'system' in str(err.value)
    assert not osp.exists(marker)


def test_register_checkpoint_scheme_bad_fetch(tmp_path, scheme_cleanup):
    register_checkpoint_scheme(PREFIX, lambda f: 42, force=True)
    with pytest.raises(TypeError, match=f'{PREFIX}.*returned int'):
        _load_checkpoint(PREFIX + 'x.pth', map_location='cpu')
    register_checkpoint_scheme(
        PREFIX, lambda f: str(tmp_path / 'none.pth'), force=True)
    with pytest.raises(FileNotFoundError, match='none.pth'):
        _load_checkpoint(PREFIX + 'x.pth', map_location='cpu')
    with pytest.raises(TypeError, match='prefixes'):
        register_checkpoint_scheme(3)  # type: ignore[arg-type]


def test_known_scheme_reregistered_stays_safe(evil):
    """A third-party loader for a scheme lt_mm knows (local files) is
    replaced by lt_mm's safe path, not refused."""
    path, marker = evil
    original = CheckpointLoader._schemes['']
    CheckpointLoader.register_scheme(
        '',
        lambda f, map_location=None: bound_torch_load(f, weights_only=False),
        force=True)
    try:
        with pytest.raises(UnsafeCheckpointError) as err:
            _load_checkpoint(path, map_location='cpu')
        assert not isinstance(err.value, UnverifiedSchemeError)
        assert not osp.exists(marker)
    finally:
        CheckpointLoader._schemes[''] = original
