"""Checkpoint loading under torch's ``weights_only=True`` default.

mmengine 0.10.7 cannot read back its own checkpoints on torch >= 2.6 (its
message hub pickles ``HistoryBuffer``); lt_mm allowlists exactly what
mmengine writes and refuses anything else with a clear error.
"""
import os
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import lt_mm.engine  # noqa: F401  (installs the safe loaders)
from lt_mm.engine.checkpoint import (UnsafeCheckpointError,
                                     history_buffer_getattr, safe_torch_load)


def _mmengine_like_checkpoint(path):
    """What mmengine's Runner.save_checkpoint writes (message hub included)."""
    hub = MessageHub.get_instance('lt_mm_test_ckpt')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 3)
    ckpt = dict(
        meta=dict(
            epoch=1,
            iter=3,
            seed=0,
            dataset_meta=dict(classes=('a', )),
            cfg='model = dict()'),
        state_dict={'w': torch.arange(4.)},
        message_hub=hub.state_dict(),
        optimizer={
            'state': {},
            'param_groups': []
        })
    torch.save(ckpt, path)


def test_runner_checkpoint_loads_with_weights_only(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    _mmengine_like_checkpoint(path)
    # plain torch.load with weights_only=True fails: this is the breakage
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    ckpt = _load_checkpoint(path, map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(4.))
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.current() == 0.5 and buf.mean() == 1.0
    assert safe_torch_load(path)['meta']['iter'] == 3


def test_foreign_global_is_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': os.system}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(path, map_location='cpu')
    msg = str(err.value)
    assert 'evil.pth' in msg and 'system' in msg and 'allowlist' in msg


def test_getattr_is_restricted_to_history_buffer():
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(UnsafeCheckpointError):
        history_buffer_getattr(HistoryBuffer, '__init__')
    with pytest.raises(UnsafeCheckpointError):
        history_buffer_getattr(torch.Tensor, 'mean')


def test_force_env_does_not_disable_safety(tmp_path, monkeypatch):
    """The local loader passes weights_only=True explicitly."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    path = str(tmp_path / 'evil.pth')
    torch.save({'payload': os.system}, path)
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(path, map_location='cpu')
