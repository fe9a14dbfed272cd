"""Stage 2 never harms stage 1 and never trains on the wrong weights.

Defects 2, 3, 4 of issue #10 and the guards that already worked (missing
load_from, work_dir = stage-1 folder, ``--amp`` on CPU). Every refusal is
checked to happen before the first training iteration (``runner.iter == 0``
/ no ``Epoch(train)`` line, no checkpoint written) and to leave the
stage-1 folder byte-identical.

Most checks build the Runner in-process (what ``tools/train.py`` does, via
``lt_mm.engine.runner_utils``); the ``tools/train.py`` subprocesses are kept
for the user paths themselves.
"""
from __future__ import annotations

import glob
import os.path as osp
import re
import shutil

import pytest
import torch
from mmengine.registry import DefaultScope

import lt_mm.cls  # noqa: F401
from lt_mm.engine.checkpoint import safe_torch_load
from lt_mm.engine.hooks import Stage2GuardError
from lt_mm.engine.runner_utils import apply_resume, build_runner, load_config
from tests.conftest import QUICKSTART
from tests.reliability.conftest import folder_hash

ONE_EPOCH = {
    'train_cfg.max_epochs': 1,
    'train_cfg.val_interval': 1,
    'default_hooks.logger.interval': 1,
    'default_hooks.checkpoint.interval': 1,
}


def _cfg(method):
    return osp.join(QUICKSTART, f'digits_cls_{method}.py')


@pytest.fixture
def cls_env(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _config(method, work_dir, name, **options):
    opts = dict(ONE_EPOCH)
    opts.update(options)
    cfg = load_config(_cfg(method), opts, str(work_dir))
    cfg.experiment_name = f'lt_mm_guard_{name}'
    return cfg


def _pth(folder):
    return sorted(
        glob.glob(osp.join(str(folder), '**', '*.pth'), recursive=True))


def _ckpt_files(folder):
    """Hashes of the checkpoints and last_checkpoint (what a Runner built
    in the folder may not touch; its log folder is new)."""
    return {
        k: v
        for k, v in folder_hash(str(folder)).items()
        if k.endswith('.pth') or k == 'last_checkpoint'
    }


def _log(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


def _train_refused(cfg, match):
    runner = build_runner(cfg)
    with pytest.raises(Stage2GuardError, match=match) as err:
        runner.train()
    assert runner.iter == 0 and runner.epoch == 0
    return runner, str(err.value)


def _copy(folder, dst):
    """A copy of a work dir whose last_checkpoint names the copy."""
    shutil.copytree(folder, dst)
    marker = osp.join(str(dst), 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            path = f.read().strip()
        with open(marker, 'w') as f:
            f.write(osp.join(str(dst), osp.basename(path)))
    return str(dst)


# ----------------------------------------------- already working guards
def test_missing_load_from(cls_env, tmp_path):
    cfg = _config('disalign', tmp_path / 'w', 'noload')
    _train_refused(cfg, 'load_from is not set')
    assert not _pth(tmp_path / 'w')


def test_work_dir_is_stage1_folder(cls_env, cls_stage1, tmp_path):
    before = folder_hash(cls_stage1['work_dir'])
    work = _copy(cls_stage1['work_dir'], tmp_path / 's1')
    copied = folder_hash(work)
    ckpts = _ckpt_files(work)
    ckpt = osp.join(work, osp.basename(cls_stage1['checkpoint']))
    cfg = _config('crt', work, 'samedir', load_from=ckpt)
    # tools/train.py refuses before the Runner writes into the folder
    with pytest.raises(Stage2GuardError, match='overwrite') as err:
        apply_resume(cfg, None)
    assert work in str(err.value)
    assert folder_hash(work) == copied
    # the hook refuses too (Runner built by the API)
    _train_refused(cfg, 'overwrite stage-1')
    assert _ckpt_files(work) == ckpts
    assert folder_hash(cls_stage1['work_dir']) == before


def test_amp_on_cpu(run_tool, cls_stage1, tmp_path):
    work = str(tmp_path / 'amp')
    proc = run_tool(
        'train.py',
        _cfg('resnet_stage1'),
        '--amp',
        '--work-dir',
        work,
        check=False)
    assert proc.returncode != 0 and '--amp needs a CUDA device' in \
        proc.stdout
    assert not osp.exists(work)


# ------------------------------------------------------------ defect 2
def test_resume_without_checkpoint_refused_by_hook(cls_env, cls_stage1,
                                                   tmp_path):
    """resume=True in an empty work dir (the API): no random stage 2."""
    cfg = _config('disalign', tmp_path / 'w', 'resume_empty')
    cfg.resume, cfg.load_from = True, None
    _, msg = _train_refused(cfg, 'no checkpoint to resume')
    assert str(tmp_path / 'w') in msg
    assert not _pth(tmp_path / 'w')
    # tools/train.py --resume without load_from: refused before building
    cfg = _config('disalign', tmp_path / 'w2', 'resume_empty2')
    with pytest.raises(Stage2GuardError, match='load_from is not set'):
        apply_resume(cfg, 'auto')
    assert not osp.exists(tmp_path / 'w2')


def test_resume_in_fresh_work_dir_starts_from_load_from(
        cls_env, cls_stage1, tmp_path):
    """tools/train.py --resume on a new stage-2 work dir trains from the
    stage-1 checkpoint (load_from), not from random weights; the expected
    new stage-2 parameters are one info line, not mmengine's warning."""
    before = folder_hash(cls_stage1['work_dir'])
    work = tmp_path / 'w'
    cfg = _config(
        'disalign', work, 'resume_fresh', load_from=cls_stage1['checkpoint'])
    apply_resume(cfg, 'auto')
    assert cfg.resume is False and cfg.load_from == cls_stage1['checkpoint']
    runner = build_runner(cfg)
    runner.train()
    log = _log(runner)
    assert 'do not match exactly' not in log and 'missing keys' not in log
    assert 'stage 2: initialised' in log and \
        'head.calibration.logit_scale' in log
    s1 = safe_torch_load(cls_stage1['checkpoint'])['state_dict']
    s2 = safe_torch_load(_pth(work)[-1])['state_dict']
    for key in ('backbone.conv1.weight', 'head.fc.weight'):
        assert torch.equal(s1[key], s2[key]), key
    # a stage-2 work dir resumes (its checkpoints carry the stage-2 mark)
    cfg = _config(
        'disalign',
        work,
        'resume_stage2',
        load_from=cls_stage1['checkpoint'],
        **{'train_cfg.max_epochs': 2})
    apply_resume(cfg, 'auto')
    assert cfg.resume is True and cfg.load_from.endswith('epoch_1.pth')
    runner = build_runner(cfg)
    runner.train()
    assert runner.epoch == 2
    # ... but not with another method's config (LWS lacks its scales)
    ckpts = _ckpt_files(work)
    cfg = _config('lws', work, 'resume_other', **{'train_cfg.max_epochs': 3})
    apply_resume(cfg, 'auto')
    _, msg = _train_refused(cfg, 'not a stage-2 checkpoint of this config')
    assert 'head.lws.scales' in msg and 'epoch_2.pth' in msg
    assert _ckpt_files(work) == ckpts
    assert folder_hash(cls_stage1['work_dir']) == before


# ------------------------------------------------------------ defect 3
def test_resume_in_stage1_folder_refused_tool(run_tool, cls_stage1, tmp_path):
    """tools/train.py --resume with the stage-1 folder as work dir (a copy
    of it: today's code deletes its checkpoints)."""
    work = _copy(cls_stage1['work_dir'], tmp_path / 's1')
    before = folder_hash(work)
    proc = run_tool(
        'train.py',
        _cfg('crt'),
        '--work-dir',
        work,
        '--resume',
        '--cfg-options',
        *cls_stage1['options'],
        f'load_from={cls_stage1["checkpoint"]}',
        check=False)
    assert proc.returncode != 0
    assert 'Stage2GuardError' in proc.stdout, proc.stdout[-3000:]
    assert 'not a stage-2 checkpoint' in proc.stdout
    assert osp.join(work, 'epoch_2.pth') in proc.stdout
    assert 'Epoch(train)' not in proc.stdout
    assert folder_hash(work) == before  # not even a log folder
    # quiet: no pkg_resources deprecation warning from lt_mm's config
    # loading (mmengine's `mmpretrain::` lookup)
    assert 'pkg_resources' not in proc.stdout


def test_resume_in_stage1_folder_refused_api(cls_env, cls_stage1, tmp_path):
    work = _copy(cls_stage1['work_dir'], tmp_path / 's1')
    ckpts = _ckpt_files(work)
    cfg = _config('crt', work, 'resume_s1')
    cfg.resume, cfg.load_from = True, None
    _, msg = _train_refused(cfg, 'not a stage-2 checkpoint')
    assert 'epoch_2.pth' in msg
    assert _ckpt_files(work) == ckpts
    # --resume <stage-1 checkpoint> in a new work dir: refused too
    cfg = _config('crt', tmp_path / 'new', 'resume_s1_path')
    with pytest.raises(Stage2GuardError, match='not a stage-2 checkpoint'):
        apply_resume(cfg, cls_stage1['checkpoint'])
    assert not osp.exists(tmp_path / 'new')


# ------------------------------------------------------------ defect 4
def _five_class_checkpoint(src, dst):
    ckpt = safe_torch_load(src)
    sd = ckpt['state_dict']
    sd['head.fc.weight'] = sd['head.fc.weight'][:5].clone()
    sd['head.fc.bias'] = sd['head.fc.bias'][:5].clone()
    torch.save(dict(meta=ckpt['meta'], state_dict=sd), dst)
    return dst


def test_other_model_checkpoint_refused(cls_env, cls_stage1, seg_stage1,
                                        tmp_path):
    five = _five_class_checkpoint(cls_stage1['checkpoint'],
                                  str(tmp_path / 'five_classes.pth'))
    cfg = _config('disalign', tmp_path / 'a', 'five', load_from=five)
    _, msg = _train_refused(cfg, 'another shape')
    assert five in msg and 'head.fc.weight' in msg and '(5, 128)' in msg
    assert not _pth(tmp_path / 'a')
    # a segmentation checkpoint for a classification stage 2
    seg = seg_stage1['checkpoint']
    before = folder_hash(seg_stage1['work_dir'])
    cfg = _config('lws', tmp_path / 'b', 'segckpt', load_from=seg)
    _, msg = _train_refused(cfg, 'keeps frozen are missing')
    assert seg in msg and 'backbone.conv1.weight' in msg
    assert not _pth(tmp_path / 'b')
    assert folder_hash(seg_stage1['work_dir']) == before


def test_strict_stage1_false_warns(cls_env, cls_stage1, tmp_path):
    five = _five_class_checkpoint(cls_stage1['checkpoint'],
                                  str(tmp_path / 'five_classes.pth'))
    cfg = _config('disalign', tmp_path / 'a', 'lenient', load_from=five)
    cfg.custom_hooks = [dict(type='Stage2FreezeHook', strict_stage1=False)]
    runner = build_runner(cfg)
    runner.load_checkpoint(five)  # what load_or_resume does: no error
    log = _log(runner)
    assert 'strict_stage1=False: continuing' in log and 'head.fc.weight' in log


# ------------------------------------- testing a stage-2 config (session 12)
@pytest.mark.parametrize('method', ['crt', 'disalign', 'lws'])
def test_stage2_config_tested_with_stage1_checkpoint_refused(
        cls_env, cls_stage1, tmp_path, method):
    """Testing a stage-2 config with the stage-1 checkpoint evaluated a
    re-initialised cRT classifier (numbers changing with the seed), or a
    DisAlign / LWS at identity, under the method's name, and exited 0."""
    cfg = _config(method, tmp_path / 'w', f'test_s1_{method}')
    cfg.load_from = cls_stage1['checkpoint']
    runner = build_runner(cfg)
    with pytest.raises(
            Stage2GuardError,
            match='not written by a stage-2 run.*stage-1 config'):
        runner.test()
    # strict_stage1=False: a warning, and the test runs
    cfg = _config(method, tmp_path / 'w2', f'test_s1_{method}_lenient')
    cfg.load_from = cls_stage1['checkpoint']
    for hook in cfg.custom_hooks:
        if hook['type'] == 'Stage2FreezeHook':
            hook['strict_stage1'] = False
    assert 'accuracy/top1' in build_runner(cfg).test()


def test_test_tool_on_stage2_config_and_bad_out(run_tool, cls_stage1,
                                                tmp_path):
    proc = run_tool(
        'test.py',
        _cfg('crt'),
        cls_stage1['checkpoint'],
        '--work-dir',
        str(tmp_path),
        check=False)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert 'lt_mm: Stage2GuardError' in proc.stdout
    assert 'Traceback' not in proc.stdout
    proc = run_tool(
        'test.py',
        cls_stage1['config'],
        cls_stage1['checkpoint'],
        '--out',
        str(tmp_path / 'preds.json'),
        check=False)
    assert proc.returncode == 1
    assert '--out' in proc.stdout and '.pkl' in proc.stdout


def test_train_tool_checks_load_from_before_anything_is_written(
        run_tool, cls_stage1, tmp_path):
    """No load_from on a stage-2 config, or one naming no file: one line
    and exit 1 before the Runner exists (it used to write its log folder,
    or build the model and data first and then raise a traceback)."""
    cases = [
        ([], 'load_from is not set'),
        ([f'load_from={tmp_path / "nope.pth"}'], 'nope.pth.*no such file'),
        ([f'load_from={tmp_path}'], 'a folder, not a checkpoint file'),
    ]
    for i, (opts, match) in enumerate(cases):
        work = tmp_path / f'w{i}'
        proc = run_tool(
            'train.py',
            _cfg('disalign'),
            '--work-dir',
            str(work),
            '--cfg-options',
            'train_cfg.max_epochs=1',
            *opts,
            check=False)
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert 'Traceback' not in proc.stdout
        assert re.search('lt_mm: .*' + match, proc.stdout), proc.stdout[-2000:]
        assert not work.exists()
    # a stage-1 config too: a missing load_from file is named at once
    proc = run_tool(
        'train.py',
        cls_stage1['config'],
        '--work-dir',
        str(tmp_path / 'w9'),
        '--cfg-options',
        f'load_from={tmp_path / "gone.pth"}',
        check=False)
    assert proc.returncode == 1 and 'gone.pth' in proc.stdout
    assert not (tmp_path / 'w9').exists()


def test_load_from_check_keeps_what_mmengine_loads(tmp_path, monkeypatch):
    """~ paths and remote schemes pass (mmengine expands / fetches them);
    require_load_from=False passes with the hook given as a class."""
    from mmengine.config import Config

    from lt_mm.engine.hooks import Stage2FreezeHook
    from lt_mm.engine.runner_utils import _check_load_from
    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / 'ckpt.pth').write_bytes(b'x')
    ok = [
        ('~/ckpt.pth', [dict(type='Stage2FreezeHook')]),
        (None, [dict(type=Stage2FreezeHook, require_load_from=False)]),
        ('torchvision://resnet50', [dict(type='Stage2FreezeHook')]),
        ('s3://bucket/ckpt.pth', []),
    ]
    for load_from, hooks in ok:
        cfg = Config(dict(load_from=load_from, custom_hooks=hooks))
        _check_load_from(cfg, bool(hooks))
    with pytest.raises(Stage2GuardError, match='load_from is not set'):
        _check_load_from(
            Config(
                dict(
                    load_from=None,
                    custom_hooks=[dict(type=Stage2FreezeHook)])), True)
    with pytest.raises(FileNotFoundError, match='no such file'):
        _check_load_from(Config(dict(load_from='~/gone.pth')), False)


def test_complete_checkpoint_without_stage2_record_is_tested(
        cls_env, cls_stage1, tmp_path):
    """E.g. official DisAlign weights converted to lt_mm's names: every
    entry is there, so it is tested although no stage-2 run wrote it."""
    cfg = _config('disalign', tmp_path / 'w', 'converted')
    cfg.load_from = cls_stage1['checkpoint']
    model_state = build_runner(cfg).model.state_dict()
    ckpt = safe_torch_load(cls_stage1['checkpoint'])
    state = dict(ckpt['state_dict'])
    for key, value in model_state.items():
        if key.startswith('head.calibration.'):
            state[key] = value.clone() + 0.5  # "trained" values
    converted = str(tmp_path / 'converted.pth')
    torch.save(dict(state_dict=state, meta={}), converted)
    cfg = _config('disalign', tmp_path / 'w2', 'converted_test')
    cfg.load_from = converted
    assert 'accuracy/top1' in build_runner(cfg).test()
