"""``tools/test.py CONFIG CKPT`` refuses a checkpoint that does not fit.

mmengine's ``Runner.load_checkpoint`` loads with ``strict=False`` and only
warns about missing keys and size mismatches: the checkpoint of another
model evaluated random weights and exited 0. lt_mm's checked loading
(:func:`lt_mm.engine.checkpoint.require_complete_checkpoint`) refuses it,
naming the file, the counts and the first keys; ``--allow-missing-keys``
downgrades the error to a warning. Entries a module fills itself while
loading (post-hoc counts, NCM means, cRT's re-initialised classifier) are
not reported: the check uses the missing keys torch reports after the
modules' ``_load_from_state_dict``.
"""
from __future__ import annotations

import os.path as osp
import uuid

import pytest
import torch
from torch import nn

import lt_mm.cls  # noqa: F401
from lt_mm.core._utils import OptionalBuffersMixin
from lt_mm.engine.checkpoint import (CheckpointMismatchError,
                                     load_state_dict_checked,
                                     require_complete_checkpoint)
from lt_mm.engine.runner_utils import build_runner, load_config
from tests.conftest import QUICKSTART, STAGE1_CONFIGS


def _wrong_checkpoint(path: str) -> str:
    """A checkpoint of another model: one key, of another shape."""
    torch.save(
        {
            'meta': {},
            'state_dict': {
                'backbone.conv1.weight': torch.zeros(3)
            }
        }, path)
    return path


def _runner(config: str, work_dir: str, load_from: str):
    cfg = load_config(config, None, work_dir)
    cfg.load_from, cfg.resume = load_from, False
    cfg.experiment_name = f'lt_mm_ckpt_check_{uuid.uuid4().hex[:8]}'
    return build_runner(cfg)


@pytest.fixture
def cls_env(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    return data_root


@pytest.fixture(scope='module')
def stage1_like(tmp_path_factory, data_root):
    """A checkpoint with exactly the stage-1 model's entries (untrained:
    only the keys and shapes matter here)."""
    folder = tmp_path_factory.mktemp('stage1_like')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('LT_MM_DATA_ROOT', data_root)
        cfg = load_config(STAGE1_CONFIGS['cls'], None, str(folder / 'w'))
        cfg.experiment_name = f'lt_mm_ckpt_s1_{uuid.uuid4().hex[:8]}'
        runner = build_runner(cfg)
    path = str(folder / 'stage1.pth')
    torch.save({'meta': {}, 'state_dict': runner.model.state_dict()}, path)
    return path


class _Head(OptionalBuffersMixin, nn.Module):
    _optional_buffers = ('counts', )

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer('counts', torch.ones(3))


def test_only_unfilled_entries_are_reported():
    model = nn.Sequential(_Head())
    state = {'0.fc.weight': torch.zeros(3, 4), '0.fc.bias': torch.zeros(3)}
    # the optional buffer is filled by the module itself: not missing
    missing, unexpected, errors = load_state_dict_checked(model, dict(state))
    assert (missing, unexpected, errors) == ([], [], [])
    missing, _, errors = load_state_dict_checked(
        model, {'0.fc.weight': torch.zeros(5, 4)})
    assert missing == ['0.fc.bias']
    assert len(errors) == 1 and '0.fc.weight' in errors[0]


def test_wrong_checkpoint_is_refused_by_the_runner(cls_env, tmp_path):
    ckpt = _wrong_checkpoint(str(tmp_path / 'wrong.pth'))
    runner = _runner(STAGE1_CONFIGS['cls'], str(tmp_path / 'w'), ckpt)
    require_complete_checkpoint(runner)
    with pytest.raises(CheckpointMismatchError) as err:
        runner.test()
    msg = str(err.value)
    assert ckpt in msg and '(1 entry)' in msg
    assert 'missing from it' in msg and 'backbone.bn1.weight' in msg
    assert 'backbone.conv1.weight: checkpoint [3] vs model [16, 3, 3, 3]' \
        in msg
    assert '--allow-missing-keys' in msg


def test_allow_missing_keys_only_warns(cls_env, tmp_path):
    ckpt = _wrong_checkpoint(str(tmp_path / 'wrong.pth'))
    runner = _runner(STAGE1_CONFIGS['cls'], str(tmp_path / 'w'), ckpt)
    require_complete_checkpoint(runner, allow_missing_keys=True)
    metrics = runner.test()
    assert 'accuracy/top1' in metrics


@pytest.mark.parametrize('config', [
    'digits_cls_taunorm.py', 'digits_cls_posthoc_logit_adjust.py',
    'digits_cls_posthoc_nc_tau.py', 'digits_cls_ncm.py'
])
def test_stage1_checkpoint_fits_the_inference_configs(config, cls_env,
                                                      stage1_like, tmp_path):
    """The lt_mm entries a stage-1 checkpoint lacks are filled while it
    loads (post-hoc counts, NCM means). A stage-2 config (cRT, DisAlign,
    LWS) is not an inference config of the stage-1 checkpoint: testing it
    so is refused (tests/reliability/test_stage2_guard.py)."""
    runner = _runner(
        osp.join(QUICKSTART, config), str(tmp_path / 'w'), stage1_like)
    require_complete_checkpoint(runner)
    metrics = runner.test()
    assert 'accuracy/top1' in metrics


def test_tools_test_refuses_and_opt_out(run_tool, tmp_path):
    ckpt = _wrong_checkpoint(str(tmp_path / 'wrong.pth'))
    config = STAGE1_CONFIGS['cls']
    proc = run_tool(
        'test.py',
        config,
        ckpt,
        '--work-dir',
        str(tmp_path / 'a'),
        check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert 'CheckpointMismatchError' in proc.stdout and ckpt in proc.stdout
    assert 'Epoch(test)' not in proc.stdout  # nothing was evaluated
    proc = run_tool('test.py', config, ckpt, '--work-dir', str(tmp_path / 'b'),
                    '--allow-missing-keys')
    assert 'does not fit the model' in proc.stdout
    assert 'accuracy/top1' in proc.stdout
