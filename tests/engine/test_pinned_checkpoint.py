"""Pins guards of :mod:`lt_mm.engine.checkpoint` that no other test fixed
(found by mutation testing): model-zoo names, URLs without a file name,
``register_checkpoint_scheme`` arguments and the replaced ``load_url``.

No network: URLs are ``file://`` (``torch.hub.download_url_to_file`` reads
them through urllib) or never reach a download.
"""
from __future__ import annotations

import os
import os.path as osp
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mck
from mmengine.runner.checkpoint import CheckpointLoader

import lt_mm.engine  # noqa: F401  (installs the safe loaders)
# yapf: disable
from lt_mm.engine.checkpoint import (CheckpointReadError,
                                     UnsafeCheckpointError,
                                     checkpoint_is_complete,
                                     download_checkpoint,
                                     last_complete_checkpoint,
                                     list_checkpoints, load_checkpoint_safely,
                                     register_checkpoint_scheme,
                                     safe_torch_load)
# yapf: enable
from tests.reliability.conftest import write_evil_checkpoint

PREFIX = 'ltpinnedhub://'


@pytest.mark.parametrize('name', [
    'torchvision://lt_mm_no_such_model', 'modelzoo://lt_mm_no_such_model',
    'open-mmlab://lt_mm_no_such_model', 'openmmlab://lt_mm_no_such_model',
    'mmcls://lt_mm_no_such_model'
])
def test_unknown_model_zoo_name_is_a_value_error_naming_it(name):
    with pytest.raises(ValueError) as err:
        load_checkpoint_safely(name)
    assert name in str(err.value)
    # also through mmengine's entry point
    with pytest.raises(ValueError, match='lt_mm_no_such_model'):
        mck._load_checkpoint(name, map_location='cpu')


def test_url_without_file_name_is_refused_before_downloading(tmp_path):
    url = 'http://127.0.0.1:9/some/folder/'
    with pytest.raises(ValueError) as err:
        download_checkpoint(url, model_dir=str(tmp_path))
    assert repr(url) in str(err.value) and 'file name' in str(err.value)
    assert not list(tmp_path.iterdir())


def test_download_reuses_the_cached_file_and_refuses_code(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    cache = str(tmp_path / 'cache')
    marker = str(tmp_path / 'MARKER')
    write_evil_checkpoint(str(src / 'evil.pth'), marker)
    url = (src / 'evil.pth').as_uri()
    local = download_checkpoint(url, model_dir=cache)
    assert local == osp.join(cache, 'evil.pth') and osp.isfile(local)
    # a second call reuses the cached file (no download)
    (src / 'evil.pth').unlink()
    assert download_checkpoint(url, model_dir=cache) == local
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_torch_load(local, name=url)
    assert url in str(err.value)
    assert not osp.exists(marker)


def test_mmengine_load_url_is_replaced_by_the_safe_path(tmp_path):
    """Code calling ``mmengine.runner.checkpoint.load_url`` directly (it is
    ``torch.hub.load_state_dict_from_url``, ``weights_only=False``) gets
    lt_mm's safe path."""
    src = tmp_path / 'evil_url.pth'
    marker = str(tmp_path / 'MARKER')
    write_evil_checkpoint(str(src), marker)
    assert getattr(mck.load_url, '_lt_mm_safe', False)
    with pytest.raises(UnsafeCheckpointError) as err:
        mck.load_url(src.as_uri(), model_dir=str(tmp_path / 'cache'))
    assert 'evil_url.pth' in str(err.value)
    assert not osp.exists(marker)
    # every module-level loader of mmengine is lt_mm's
    for name in ('load_from_local', 'load_from_http', 'load_from_pavi',
                 'load_from_ceph', 'load_from_torchvision',
                 'load_from_openmmlab', 'load_from_mmcls'):
        assert getattr(getattr(mck, name), '_lt_mm_safe', False), name
    with pytest.raises(UnsafeCheckpointError):
        mck.load_from_local(str(src))
    assert not osp.exists(marker)


def test_register_checkpoint_scheme_refuses_a_non_callable_fetch():
    try:
        with pytest.raises(TypeError) as err:
            register_checkpoint_scheme(PREFIX, 'not-a-function')
        assert "'not-a-function'" in str(err.value)
        assert 'callable' in str(err.value)
        # refused at registration: nothing was registered
        assert PREFIX not in CheckpointLoader._schemes
    finally:
        CheckpointLoader._schemes.pop(PREFIX, None)


def test_truncated_bytes_are_a_read_error(tmp_path):
    """A checkpoint cut short (bytes, not a local file) is a
    CheckpointReadError naming it, not torch's bare RuntimeError."""
    path = str(tmp_path / 'whole.pth')
    torch.save({'state_dict': {'w': torch.zeros(64)}}, path)
    with open(path, 'rb') as f:
        data = f.read()
    with pytest.raises(CheckpointReadError) as err:
        safe_torch_load(data[:len(data) // 2], name='cut.pth')
    assert "'cut.pth'" in str(err.value)


class _GetattrOf:
    """Unpickles as ``getattr(obj, name)`` (``builtins.getattr``)."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


@pytest.mark.parametrize('obj, name', [(HistoryBuffer, 'update'),
                                       (HistoryBuffer, '__init__'),
                                       (np.ndarray, 'tofile')])
def test_pickled_getattr_only_resolves_statistics_methods(tmp_path, obj, name):
    """A checkpoint may reach ``builtins.getattr`` only for mmengine's
    ``getattr(HistoryBuffer, 'min')`` pattern, also through the unpickler
    (not only when :func:`history_buffer_getattr` is called directly)."""
    ok = str(tmp_path / 'ok.pth')
    torch.save({'meta': {'m': _GetattrOf(HistoryBuffer, 'mean')}}, ok)
    assert safe_torch_load(ok)['meta']['m'] is HistoryBuffer.mean
    path = str(tmp_path / 'getattr.pth')
    torch.save({'meta': {'m': _GetattrOf(obj, name)}}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_torch_load(path)
    assert 'getattr.pth' in str(err.value) and name in str(err.value)


def test_zip_without_pickle_is_not_a_complete_checkpoint(tmp_path):
    path = str(tmp_path / 'not_ckpt.pth')
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/readme.txt', 'no pickle here')
    assert not checkpoint_is_complete(path)
    good = str(tmp_path / 'good.pth')
    torch.save({'w': torch.zeros(1)}, good)
    assert checkpoint_is_complete(good)
    with open(good, 'rb') as f:
        data = f.read()
    cut = str(tmp_path / 'cut.pth')
    with open(cut, 'wb') as f:
        f.write(data[:len(data) // 2])
    assert not checkpoint_is_complete(cut)


def _save(path, mtime):
    torch.save({'state_dict': {'w': torch.zeros(1)}}, str(path))
    os.utime(str(path), (mtime, mtime))
    return str(path)


def test_last_complete_checkpoint_order_and_exclusions(tmp_path, monkeypatch):
    t = 1_700_000_000
    e1 = _save(tmp_path / 'epoch_1.pth', t)
    e9 = _save(tmp_path / 'run2_epoch_9.pth', t + 10)
    e12 = _save(tmp_path / 'run1_epoch_12.pth', t + 10)  # same mtime
    best = _save(tmp_path / 'best_acc_epoch_12.pth', t + 20)
    cut = tmp_path / 'epoch_13.pth'
    cut.write_bytes(b'PK\x03\x04 cut short')
    os.utime(str(cut), (t + 30, t + 30))
    # oldest first: mtime, then the last number in the name
    assert list_checkpoints(str(tmp_path)) == [e1, e9, e12, best, str(cut)]
    # the newest complete one, best_* only when nothing else is left
    assert last_complete_checkpoint(str(tmp_path)) == e12
    # exclude given relative to the working directory
    monkeypatch.chdir(str(tmp_path))
    assert last_complete_checkpoint(
        str(tmp_path), exclude=('run1_epoch_12.pth', )) == e9
    assert last_complete_checkpoint(
        str(tmp_path), exclude=(e1, e9, e12)) == best
    # a newer file (a restarted run) wins over a larger step number
    os.utime(e1, (t + 25, t + 25))
    assert last_complete_checkpoint(str(tmp_path)) == e1


def test_truncated_cached_download_names_the_cache_file(tmp_path):
    cached = str(tmp_path / 'model.pth')
    torch.save({'w': torch.zeros(64)}, cached)
    with open(cached, 'rb') as f:
        data = f.read()
    with open(cached, 'wb') as f:
        f.write(data[:len(data) // 2])
    url = 'https://example.invalid/model.pth'
    with pytest.raises(CheckpointReadError) as err:
        safe_torch_load(cached, name=url)
    msg = str(err.value)
    assert repr(url) in msg and repr(cached) in msg
    assert 'delete that file' in msg
