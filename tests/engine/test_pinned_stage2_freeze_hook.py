"""Pins what :class:`lt_mm.engine.hooks.Stage2FreezeHook` does with the
checkpoint a real mmengine Runner loads (found by mutation testing of the
hook): a fresh stage 2 keeps every stage-1 weight and fills only the new
stage-2 entries; a checkpoint that lacks a frozen tensor (BatchNorm
statistics included) or holds one of another shape is refused before the
first iteration (``strict_stage1=False``: a warning); ``--resume``
continues the stage-2 run exactly and refuses a checkpoint without this
config's stage-2 parameters whatever ``strict_stage1`` says; testing a
stage-2 config refuses a checkpoint no stage-2 run wrote; the BatchNorm
layers with trainable parameters keep updating their statistics; DDP
without ``find_unused_parameters`` is refused.

The tiny model, data and Runner of ``test_pinned_stage2_hook``; the
checkpoints are real torch files as mmengine writes them (a dict with
``meta`` and ``state_dict``); one or two epochs of 2 iterations.
"""
from __future__ import annotations

import os.path as osp

import pytest
import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from lt_mm.engine.hooks import STAGE2_META_KEY, Stage2GuardError
from tests.conftest import free_port
from tests.engine.test_pinned_stage2_hook import _Data, _Net, _runner, _state
from tests.reliability.test_resume import _log

HEAD = ('head.weight', 'head.bias')
STAGE2_META = {STAGE2_META_KEY: dict(trainable=list(HEAD))}


def _stage1_state(drop=()) -> dict:
    """The state dict of a trained-looking ``_Net``: every float entry is
    a fresh model's value + 1, so that it differs from the model a Runner
    builds."""
    net = _Net()
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.add_(1.)
    return {k: v for k, v in net.state_dict().items() if k not in drop}


def _save(path, state, meta=None, wrap=True) -> str:
    """A torch checkpoint file (``wrap=False``: the bare state dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        dict(meta=meta or {}, state_dict=state) if wrap else state, str(path))
    return str(path)


def _stage1(tmp_path, **kw) -> str:
    """A stage-1 checkpoint outside the stage-2 work dir."""
    return _save(tmp_path / 's1' / 'epoch_1.pth', **kw)


def _no_checkpoint_written(tmp_path) -> bool:
    return not list((tmp_path / 'w').glob('*.pth'))


def test_fresh_stage2_keeps_stage1_and_fills_the_new_entries(tmp_path, capsys):
    # an old checkpoint: no num_batches_tracked (filled silently); the
    # stage-2 head is new (filled with the model's values, one info line)
    state = _stage1_state(drop=HEAD + ('backbone.1.num_batches_tracked', ))
    runner = _runner(
        tmp_path,
        dict(trainable=['head']),
        load_from=_stage1(tmp_path, state=state))
    runner.train()
    after = _state(runner.model)
    for name, value in state.items():  # frozen: the stage-1 values
        assert torch.equal(after[name], value), name
    log = _log(runner)
    assert 'stage 2: initialised 2 new parameters: head.weight, ' \
        'head.bias\n' in log
    # all were filled: no "missing keys" warning (mmengine prints it)
    assert 'missing keys' not in capsys.readouterr().out


@pytest.mark.parametrize('form', ['module.', 'bare'])
def test_ddp_prefixed_and_bare_checkpoints_load(tmp_path, form):
    """Keys saved with DDP's ``module.`` prefix (mmengine strips it) and a
    bare state dict (mmengine loads it as the state dict) fit."""
    state = _stage1_state()
    if form == 'module.':
        ckpt = _stage1(
            tmp_path, state={
                f'module.{k}': v
                for k, v in state.items()
            })
    else:
        ckpt = _stage1(tmp_path, state=state, wrap=False)
    runner = _runner(tmp_path, dict(trainable=['head']), load_from=ckpt)
    runner.train()
    after = _state(runner.model)
    for name, value in state.items():
        if not name.startswith('head.'):
            assert torch.equal(after[name], value), name


@pytest.mark.parametrize('change, problem', [
    (dict(drop=('backbone.0.weight', )),
     r'1 tensor\(s\) that stage 2 keeps frozen are missing '
     r'\(backbone.0.weight\)'),
    (dict(drop=('backbone.1.running_mean', )),
     r'missing \(backbone.1.running_mean\)'),
    (dict(drop=('backbone.1.running_var', )),
     r'missing \(backbone.1.running_var\)'),
    (dict(shape=('backbone.0.bias', 3)),
     r'1 tensor\(s\) have another shape \(backbone.0.bias: checkpoint '
     r'\(3,\) vs model \(4,\)\)'),
])
def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path, change, problem):
    state = _stage1_state(drop=change.get('drop', ()))
    if 'shape' in change:
        name, n = change['shape']
        state[name] = torch.zeros(n)
    ckpt = _stage1(tmp_path, state=state)
    runner = _runner(tmp_path, dict(trainable=['head']), load_from=ckpt)
    before = _state(runner.model)
    with pytest.raises(Stage2GuardError, match=problem) as err:
        runner.train()
    assert f'the checkpoint {ckpt!r} does not fit' in str(err.value)
    assert 'strict_stage1=False' in str(err.value)
    after = _state(runner.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert runner.iter == 0 and _no_checkpoint_written(tmp_path)


def test_strict_stage1_false_only_warns(tmp_path):
    state = _stage1_state(drop=('backbone.0.weight', ))
    runner = _runner(
        tmp_path,
        dict(trainable=['head'], strict_stage1=False),
        load_from=_stage1(tmp_path, state=state))
    runner.train()
    assert runner.iter == 2
    log = _log(runner)
    assert 'WARNING' in log and 'missing (backbone.0.weight)' in log
    assert '(strict_stage1=False: continuing)' in log


def test_a_checkpoint_without_a_state_dict_is_refused(tmp_path):
    ckpt = _save(tmp_path / 's1' / 'list.pth', [torch.zeros(2)], wrap=False)
    runner = _runner(tmp_path, dict(trainable=['head']), load_from=ckpt)
    with pytest.raises(
            Stage2GuardError, match=f'{ckpt!r} holds no state_dict'):
        runner.train()


def test_an_unexpected_model_buffer_is_filled_not_refused(tmp_path):
    """A buffer that is neither a parameter nor a BatchNorm statistic (the
    class statistics lt_mm heads build from the config) is not expected
    in the stage-1 checkpoint."""
    runner = _runner(
        tmp_path,
        dict(trainable=['head']),
        load_from=_stage1(tmp_path, state=_stage1_state()))
    runner.model.head.register_buffer('counts', torch.tensor([3., 1.]))
    runner.train()
    assert torch.equal(runner.model.head.counts, torch.tensor([3., 1.]))
    assert 'initialised 1 new parameters: head.counts' in _log(runner)


def test_resume_continues_the_stage2_run_exactly(tmp_path):
    """Stage 1 of cRT holds the classifier that stage 2 retrains; 1 epoch +
    --resume (auto: the work dir's last checkpoint) = 2 straight epochs."""
    ckpt = _stage1(tmp_path, state=_stage1_state())
    hook = dict(trainable=['head'])
    straight = _runner(tmp_path / 'a', hook, epochs=2, load_from=ckpt)
    straight.train()
    _runner(tmp_path / 'b', hook, load_from=ckpt).train()
    resumed = _runner(tmp_path / 'b', hook, epochs=2, resume=True)
    resumed.train()
    assert resumed.epoch == 2
    a, b = _state(straight.model), _state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the resume logs no "initialised ... new parameters" line
    assert 'new parameters' not in _log(resumed)


def test_resume_from_the_explicit_stage2_checkpoint_in_the_work_dir(tmp_path):
    """``--resume <work_dir>/epoch_1.pth``: the checkpoint lies in the work
    dir, which is right for a resume (a fresh run would be refused)."""
    ckpt = _stage1(tmp_path, state=_stage1_state())
    hook = dict(trainable=['head'])
    _runner(tmp_path, hook, load_from=ckpt).train()
    mine = str(tmp_path / 'w' / 'epoch_1.pth')
    runner = _runner(tmp_path, hook, epochs=2, resume=True, load_from=mine)
    runner.train()
    assert runner.epoch == 2
    fresh = _runner(tmp_path, hook, epochs=2, load_from=mine)
    with pytest.raises(Stage2GuardError, match='is the folder of the'):
        fresh.train()


def test_resume_from_a_stage1_checkpoint_is_refused(tmp_path):
    ckpt = _stage1(tmp_path, state=_stage1_state())
    runner = _runner(
        tmp_path, dict(trainable=['head']), resume=True, load_from=ckpt)
    with pytest.raises(
            Stage2GuardError,
            match=f'refusing to resume stage 2 from {ckpt!r}'):
        runner.train()
    assert _no_checkpoint_written(tmp_path)


@pytest.mark.parametrize('require', [True, False])
def test_resume_without_a_checkpoint(tmp_path, require):
    """Nothing to resume and no load_from: refused, unless the hook does
    not require a stage-1 checkpoint (then it trains from the model)."""
    runner = _runner(
        tmp_path,
        dict(trainable=['head'], require_load_from=require),
        resume=True)
    if require:
        with pytest.raises(
                Stage2GuardError, match='has no checkpoint to resume'):
            runner.train()
        assert _no_checkpoint_written(tmp_path)
    else:
        runner.train()
        assert runner.epoch == 1


@pytest.mark.parametrize('strict', [True, False])
def test_resume_refuses_a_checkpoint_without_the_stage2_parameters(
        tmp_path, strict):
    """The work dir's last checkpoint was written by a stage-2 run of
    another method (its record says so) and lacks this config's stage-2
    parameters: refused, also with ``strict_stage1=False``, naming the
    checkpoint the resume found."""
    other = _save(
        tmp_path / 'w' / 'epoch_1.pth',
        _stage1_state(drop=HEAD),
        meta={STAGE2_META_KEY: dict(trainable=['neck.scale'])})
    (tmp_path / 'w' / 'last_checkpoint').write_text(other)
    runner = _runner(
        tmp_path,
        dict(trainable=['head'], strict_stage1=strict),
        epochs=2,
        resume=True)
    with pytest.raises(Stage2GuardError) as err:
        runner.train()
    msg = str(err.value)
    assert f'the checkpoint {other!r} does not fit' in msg
    assert 'it is not a stage-2 checkpoint of this config: it lacks 2 ' \
        'stage-2 parameter(s) (head.weight, head.bias)' in msg
    assert runner.iter == 0


def _test_runner(tmp_path, ckpt, **hook):
    return _runner(
        tmp_path,
        dict(trainable=['head'], **hook),
        load_from=ckpt,
        test_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            collate_fn=dict(type='default_collate')),
        test_cfg=dict(),
        test_evaluator=dict(
            type='DumpResults', out_file_path=str(tmp_path / 'out.pkl')))


def test_testing_refuses_a_checkpoint_no_stage2_run_wrote(tmp_path):
    ckpt = _stage1(tmp_path, state=_stage1_state(drop=HEAD))
    with pytest.raises(Stage2GuardError) as err:
        _test_runner(tmp_path, ckpt).test()
    msg = str(err.value)
    assert f'{ckpt!r} lacks 2 entries of this stage-2 model (head.weight, ' \
        'head.bias) and was not written by a stage-2 run' in msg
    assert not osp.exists(tmp_path / 'out.pkl')
    runner = _test_runner(tmp_path, ckpt, strict_stage1=False)
    runner.test()
    assert '(strict_stage1=False: testing it anyway)' in _log(runner)
    assert osp.exists(tmp_path / 'out.pkl')


@pytest.mark.parametrize('case', ['stage-2 record', 'complete'])
def test_testing_a_stage2_checkpoint_in_its_work_dir(tmp_path, case):
    """The checkpoint of the stage-2 run (in its work dir: the training
    rules for the work dir do not apply to testing), or a complete one
    without the record (converted official weights), is tested."""
    if case == 'complete':
        ckpt = _save(tmp_path / 'w' / 'epoch_1.pth', _stage1_state())
    else:
        ckpt = _save(
            tmp_path / 'w' / 'epoch_1.pth',
            _stage1_state(drop=HEAD),
            meta=STAGE2_META)
    runner = _test_runner(tmp_path, ckpt)
    runner.test()
    assert osp.exists(tmp_path / 'out.pkl')


def test_loading_before_training_uses_the_declared_stage2_names(tmp_path):
    """``runner.load_checkpoint`` called directly (no ``before_run`` yet):
    the stage-2 names come from the modules' ``stage2_parameter_names``
    (here declared by the head), so a stage-1 checkpoint is refused as
    lacking the stage-2 entries, not as missing frozen tensors."""
    ckpt = _stage1(tmp_path, state=_stage1_state(drop=HEAD))
    runner = _runner(tmp_path, dict())
    runner.model.head.stage2_parameter_names = lambda: ['weight', 'bias']
    with pytest.raises(
            Stage2GuardError, match='lacks 2 entries of this stage-2 model'):
        runner.load_checkpoint(ckpt)


def test_declared_stage2_names_are_the_default_trainable(tmp_path):
    runner = _runner(tmp_path, dict(require_load_from=False))
    runner.model.head.stage2_parameter_names = lambda: ['weight']
    runner.train()
    assert [n for n, p in runner.model.named_parameters()
            if p.requires_grad] == ['head.weight']


@pytest.mark.parametrize('hook, bn_updates', [
    (dict(trainable=['head'], freeze_bn_stats=False), True),
    (dict(trainable=['backbone.1'], allow_backbone=True), True),
    (dict(trainable=['head', 'backbone.0'], allow_backbone=True), False),
])
def test_which_batchnorm_statistics_update(tmp_path, hook, bn_updates):
    """Frozen BatchNorm layers keep their statistics unless
    ``freeze_bn_stats=False``; a BatchNorm layer that trains updates
    them."""
    runner = _runner(tmp_path, dict(require_load_from=False, **hook))
    before = runner.model.backbone[1].running_mean.clone()
    runner.train()
    after = runner.model.backbone[1].running_mean
    assert torch.equal(before, after) != bn_updates


@pytest.fixture
def one_process_group():
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{free_port()}',
        rank=0,
        world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('find_unused', [False, True])
def test_ddp_needs_find_unused_parameters(tmp_path, one_process_group,
                                          find_unused):
    """Under DDP the frozen parameters get no gradient: without
    ``find_unused_parameters=True`` the run is refused before the first
    iteration; with it, it trains (the hook sees through the wrapper)."""
    runner = _runner(tmp_path,
                     dict(trainable=['head'], require_load_from=False))
    runner.model = MMDistributedDataParallel(
        runner.model, find_unused_parameters=find_unused)
    if not find_unused:
        with pytest.raises(ValueError, match='find_unused_parameters=True'):
            runner.train()
        assert runner.iter == 0
    else:
        runner.train()
        assert runner.iter == 2
        assert not runner.model.module.backbone[0].weight.requires_grad


def test_a_parameter_the_model_froze_trains_when_selected(tmp_path):
    """A model may build parameters frozen (``frozen_stages``, a stage-1
    classifier kept fixed); the selected ones train in stage 2."""
    runner = _runner(tmp_path,
                     dict(trainable=['head'], require_load_from=False))
    runner.model.head.weight.requires_grad_(False)
    before = runner.model.head.weight.detach().clone()
    runner.train()
    assert runner.model.head.weight.requires_grad
    assert not torch.equal(before, runner.model.head.weight)
