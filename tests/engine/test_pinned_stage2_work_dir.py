"""Pins the rules of :func:`lt_mm.engine.hooks.check_stage2_work_dir`
(stage 2 never resumes from, overwrites or deletes stage-1 outputs) that
no other test fixed (found by mutation testing).

The folders hold real torch checkpoints as mmengine writes them (a dict
with ``meta`` and ``state_dict``); a stage-2 one carries the
``lt_mm_stage2`` record :class:`Stage2FreezeHook` writes. No Runner is
needed: ``tools/train.py`` runs this check before building one.
"""
from __future__ import annotations

import os
import os.path as osp

import pytest
import torch

from lt_mm.engine.hooks import (STAGE2_META_KEY, Stage2GuardError,
                                check_stage2_work_dir,
                                is_stage2_checkpoint_meta)


def _ckpt(path, stage2: bool = False, cfg: str = '') -> str:
    meta = dict(epoch=1, iter=4)
    if stage2:
        meta[STAGE2_META_KEY] = dict(trainable=['head.fc.weight'])
    if cfg:
        meta['cfg'] = cfg
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict={'w': torch.zeros(2)}), str(path))
    return str(path)


def _refused(**kw) -> str:
    with pytest.raises(Stage2GuardError) as err:
        check_stage2_work_dir(**kw)
    return str(err.value)


def test_fresh_stage2_in_the_stage1_folder_is_refused(tmp_path):
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    msg = _refused(
        work_dir=str(tmp_path / 's1'), load_from=stage1, resume=False)
    assert repr(str(tmp_path / 's1')) in msg and repr(stage1) in msg
    assert 'new --work-dir' in msg


def test_stage1_folder_reached_through_a_symlink_is_refused(tmp_path):
    """The same folder under another name (a symlink, '..' segments) is
    still the stage-1 folder."""
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    os.symlink(str(tmp_path / 's1'), str(tmp_path / 'link'))
    for work_dir in (str(tmp_path / 'link'),
                     str(tmp_path / 'other' / '..' / 's1')):
        with pytest.raises(Stage2GuardError, match='folder of'):
            check_stage2_work_dir(work_dir, stage1, resume=False)
    # load_from named through the link, work dir by its real name
    linked = osp.join(str(tmp_path / 'link'), 'epoch_2.pth')
    with pytest.raises(Stage2GuardError, match='folder of'):
        check_stage2_work_dir(str(tmp_path / 's1'), linked, resume=False)


def test_checkpoint_folder_of_out_dir_is_the_stage1_folder(tmp_path):
    """out_dir=<root>, work dir '.../s1': mmengine saves to <root>/s1."""
    stage1 = _ckpt(tmp_path / 'root' / 's1' / 'epoch_2.pth')
    msg = _refused(
        work_dir=str(tmp_path / 'runs' / 's1'),
        load_from=stage1,
        resume=False,
        out_dir=str(tmp_path / 'root'))
    assert 'the checkpoint folder' in msg
    assert repr(str(tmp_path / 'root' / 's1')) in msg
    assert 'default_hooks.checkpoint.out_dir' in msg
    # another last folder name is fine
    check_stage2_work_dir(
        str(tmp_path / 'runs' / 's2'),
        stage1,
        resume=False,
        out_dir=str(tmp_path / 'root'))


def test_work_dir_holding_a_stage1_checkpoint_is_refused(tmp_path):
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    other = _ckpt(tmp_path / 'w' / 'epoch_1.pth')
    msg = _refused(
        work_dir=str(tmp_path / 'w'), load_from=stage1, resume=False)
    assert repr(other) in msg and 'not a stage-2 checkpoint' in msg
    assert 'resume from it' not in msg
    # resuming: the message says it would resume from it
    msg = _refused(work_dir=str(tmp_path / 'w'), load_from=None, resume=True)
    assert 'resume from it' in msg


def test_stage2_checkpoints_in_the_work_dir_are_fine(tmp_path):
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    s2 = _ckpt(tmp_path / 'w' / 'epoch_1.pth', stage2=True)
    s2b = _ckpt(
        tmp_path / 'w' / 'epoch_2.pth',
        cfg="custom_hooks = [dict(type='Stage2FreezeHook')]")
    with open(tmp_path / 'w' / 'last_checkpoint', 'w') as f:
        f.write(s2b)
    check_stage2_work_dir(str(tmp_path / 'w'), stage1, resume=False)
    check_stage2_work_dir(str(tmp_path / 'w'), s2, resume=True, resume_from=s2)
    # a truncated (unreadable) file is left to the resume logic
    with open(tmp_path / 'w' / 'epoch_3.pth', 'wb') as f:
        f.write(b'PK\x03\x04 truncated')
    check_stage2_work_dir(str(tmp_path / 'w'), stage1, resume=False)


def test_checkpoint_folder_holding_a_stage1_checkpoint_is_refused(tmp_path):
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    old = _ckpt(tmp_path / 'root' / 'w' / 'epoch_1.pth')
    msg = _refused(
        work_dir=str(tmp_path / 'runs' / 'w'),
        load_from=stage1,
        resume=False,
        out_dir=str(tmp_path / 'root'))
    assert 'the checkpoint folder' in msg and repr(old) in msg


def test_resume_from_a_stage1_checkpoint_is_refused(tmp_path):
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    msg = _refused(
        work_dir=str(tmp_path / 'w'),
        load_from=stage1,
        resume=True,
        resume_from=stage1)
    assert repr(stage1) in msg and 'refusing to resume' in msg
    assert f'load_from={stage1}' in msg


def test_last_checkpoint_naming_a_stage1_checkpoint_is_refused(tmp_path):
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    os.makedirs(tmp_path / 'w')
    marker = str(tmp_path / 'w' / 'last_checkpoint')
    with open(marker, 'w') as f:
        f.write(stage1 + '\n')
    msg = _refused(
        work_dir=str(tmp_path / 'w'), load_from=stage1, resume=False)
    assert repr(marker) in msg and repr(stage1) in msg
    assert "last_checkpoint" in msg
    # the same pointer to a stage-2 checkpoint is fine
    s2 = _ckpt(tmp_path / 's2' / 'epoch_1.pth', stage2=True)
    with open(marker, 'w') as f:
        f.write(s2)
    check_stage2_work_dir(str(tmp_path / 'w'), stage1, resume=False)


def test_stage2_meta_detection():
    assert is_stage2_checkpoint_meta({STAGE2_META_KEY: dict(trainable=[])})
    assert is_stage2_checkpoint_meta(
        dict(cfg="custom_hooks=[dict(type='Stage2FreezeHook')]"))
    assert not is_stage2_checkpoint_meta(dict(cfg='model = dict()'))
    assert not is_stage2_checkpoint_meta({})


def test_an_older_stage1_checkpoint_under_newer_stage2_ones_is_found(tmp_path):
    stage1 = _ckpt(tmp_path / 's1' / 'epoch_2.pth')
    old = _ckpt(tmp_path / 'w' / 'epoch_1.pth')
    os.utime(old, (1_700_000_000, 1_700_000_000))
    _ckpt(tmp_path / 'w' / 'epoch_5.pth', stage2=True)
    msg = _refused(
        work_dir=str(tmp_path / 'w'), load_from=stage1, resume=False)
    assert repr(old) in msg
