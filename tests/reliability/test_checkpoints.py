"""Checkpoint loading never runs code and names what it cannot read.

Defect 1 (issue #10): a checkpoint given as an ``http(s)://`` URL was
unpickled with ``weights_only=False`` (mmengine's http loader calls
``torch.hub.load_state_dict_from_url``). Every scheme now downloads the
bytes first and unpickles them with ``weights_only=True`` + the allowlist.
A local ``http.server`` on 127.0.0.1 serves a crafted checkpoint whose
unpickling would create a marker file.

Defect 8: a truncated checkpoint named neither itself nor an alternative.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
from torch import nn

import lt_mm.engine  # noqa: F401  (installs the safe loaders)
from lt_mm.engine.checkpoint import (CheckpointReadError,
                                     UnsafeCheckpointError,
                                     install_safe_checkpoint_loading)
from tests.conftest import STAGE1_CONFIGS
from tests.reliability.conftest import folder_hash, write_evil_checkpoint


def _serve_evil(http_root, tmp_path, name):
    base, folder, hits = http_root
    marker = str(tmp_path / f'{name}.MARKER')
    write_evil_checkpoint(osp.join(folder, f'{name}.pth'), marker)
    return f'{base}/{name}.pth', marker


def test_http_malicious_checkpoint_never_runs_code_api(http_root, tmp_path,
                                                       torch_home):
    url, marker = _serve_evil(http_root, tmp_path, 'evil_api')
    calls = [
        lambda: CheckpointLoader.load_checkpoint(url, map_location='cpu'),
        lambda: _load_checkpoint(url, map_location='cpu'),
        lambda: load_checkpoint(nn.Linear(2, 2), url, map_location='cpu'),
    ]
    for call in calls:
        with pytest.raises(UnsafeCheckpointError) as err:
            call()
        msg = str(err.value)
        assert url in msg and 'system' in msg, msg
        assert not osp.exists(marker)
    # the bytes went to the torch hub cache, as mmengine / torch.hub do
    assert osp.isfile(
        osp.join(torch_home, 'hub', 'checkpoints', 'evil_api.pth'))


def test_model_zoo_schemes_go_through_the_safe_path(http_root, tmp_path,
                                                    torch_home, monkeypatch):
    # open-mmlab:// names resolve through MMENGINE_HOME/open_mmlab.json
    url, marker = _serve_evil(http_root, tmp_path, 'evil_zoo')
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(json.dumps({'lt_evil': url}))
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    for name in ('open-mmlab://lt_evil', 'openmmlab://lt_evil'):
        with pytest.raises(UnsafeCheckpointError, match='lt_evil'):
            _load_checkpoint(name, map_location='cpu')
    # mmengine's module-level http loader, called directly
    from mmengine.runner import checkpoint as mck
    with pytest.raises(UnsafeCheckpointError, match='evil_zoo'):
        mck.load_from_http(url)
    assert not osp.exists(marker)
    # every registered scheme is lt_mm's, including one registered later
    # by a third party (its loader asks for weights_only=False)
    evil_file = str(tmp_path / 'evil_local.pth')
    write_evil_checkpoint(evil_file, marker)

    def third_party(filename, map_location=None):
        return torch.load(filename[len('lttest://'):], weights_only=False)

    CheckpointLoader.register_scheme('lttest://', third_party, force=True)
    try:
        install_safe_checkpoint_loading()
        assert all(
            getattr(f, '_lt_mm_safe', False)
            for f in CheckpointLoader._schemes.values())
        with pytest.raises(UnsafeCheckpointError):
            _load_checkpoint('lttest://' + evil_file, map_location='cpu')
        assert not osp.exists(marker)
    finally:
        CheckpointLoader._schemes.pop('lttest://', None)


def test_http_benign_checkpoint_loads_and_is_cached(http_root, torch_home):
    base, folder, hits = http_root
    hub = MessageHub.get_instance('lt_mm_reliability_http')
    hub.update_scalar('train/loss', 1.0)
    torch.save(
        dict(
            meta=dict(epoch=1, iter=2),
            state_dict={
                'weight': torch.arange(4.).view(2, 2),
                'bias': torch.ones(2)
            },
            message_hub=hub.state_dict()), osp.join(folder, 'good.pth'))
    url = f'{base}/good.pth'
    model = nn.Linear(2, 2)
    ckpt = load_checkpoint(model, url, map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    assert torch.equal(model.weight.detach(), torch.arange(4.).view(2, 2))
    n = hits.count('/good.pth')
    assert n == 1
    _load_checkpoint(url, map_location='cpu')  # from the hub cache
    assert hits.count('/good.pth') == n


def test_http_malicious_checkpoint_through_the_tools(http_root, tmp_path,
                                                     torch_home, run_tool,
                                                     cls_stage1, data_root,
                                                     monkeypatch):
    """tools/test.py URL (subprocess) and load_from=URL (the Runner that
    tools/train.py builds, in-process)."""
    url, marker = _serve_evil(http_root, tmp_path, 'evil_tools')
    config = STAGE1_CONFIGS['cls']
    proc = run_tool(
        'test.py',
        config,
        url,
        '--work-dir',
        str(tmp_path / 'test'),
        check=False)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stdout and url in proc.stdout
    assert not osp.exists(marker)

    from mmengine.registry import DefaultScope

    from lt_mm.engine.runner_utils import build_runner, load_config
    work = str(tmp_path / 'train')
    opts = {
        k: int(v)
        for k, v in (o.split('=') for o in cls_stage1['options'])
    }
    opts['load_from'] = url
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cfg = load_config(config, opts, work)
        cfg.experiment_name = 'lt_mm_http_load_from'
        runner = build_runner(cfg)
        with pytest.raises(UnsafeCheckpointError, match='evil_tools'):
            runner.train()
    assert not osp.exists(marker)
    # refused before the first iteration: no checkpoint written
    assert runner.iter == 0
    assert not [
        f for _, _, fs in os.walk(work) for f in fs if f.endswith('.pth')
    ]


def _copy_stage1(cls_stage1, dst) -> str:
    shutil.copytree(cls_stage1['work_dir'], dst)
    return str(dst)


def test_truncated_checkpoint_names_file_and_last_complete(
        cls_stage1, tmp_path):
    before = folder_hash(cls_stage1['work_dir'])
    work = _copy_stage1(cls_stage1, tmp_path / 'w')
    ep1, ep2 = osp.join(work, 'epoch_1.pth'), osp.join(work, 'epoch_2.pth')
    with open(ep2, 'rb') as f:
        data = f.read()
    with open(ep2, 'wb') as f:  # a run killed while writing epoch_2.pth
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointReadError) as err:
        _load_checkpoint(ep2, map_location='cpu')
    msg = str(err.value)
    assert ep2 in msg and ep1 in msg and 'truncated' in msg, msg
    # not a torch file at all: named too
    junk = str(tmp_path / 'junk.pth')
    with open(junk, 'wb') as f:
        f.write(b'not a checkpoint')
    with pytest.raises(CheckpointReadError, match='junk.pth'):
        _load_checkpoint(junk, map_location='cpu')
    assert folder_hash(cls_stage1['work_dir']) == before
