"""Pins what :class:`lt_mm.engine.hooks.Stage2FreezeHook` does to a real
mmengine Runner (found by mutation testing): only the stage-2 parameters
train, frozen BatchNorm statistics stay fixed through every epoch, the
checkpoints carry the stage-2 record, and misuse is refused before the
first iteration. A tiny model and dataset; one or two short epochs."""
from __future__ import annotations

import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from lt_mm.engine.checkpoint import read_checkpoint_meta
from lt_mm.engine.hooks import STAGE2_META_KEY, Stage2GuardError


class _Data(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((4, ), float(i)), label=i % 2)


class _Net(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 2)

    def forward(self, inputs, label=None, mode='loss'):
        out = self.head(self.backbone(inputs))
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(out, label))
        return out


def _runner(tmp_path, hook: dict, epochs: int = 1, **kw) -> Runner:
    return Runner(
        model=_Net(),
        work_dir=str(tmp_path / 'w'),
        experiment_name=f'lt_mm_pinned_{uuid.uuid4().hex[:8]}',
        train_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='Stage2FreezeHook', **hook)],
        default_scope='mmengine',
        **kw)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_only_the_stage2_parameters_train(tmp_path):
    runner = _runner(
        tmp_path, dict(trainable=['head'], require_load_from=False), epochs=2)
    before = _state(runner.model)
    runner.train()
    after = _state(runner.model)
    for k in before:
        if k.startswith('head.'):
            assert not torch.equal(before[k], after[k]), k
        else:  # weights and BatchNorm statistics of the frozen backbone
            assert torch.equal(before[k], after[k]), k
    assert not runner.model.backbone[0].weight.requires_grad
    meta = read_checkpoint_meta(str(tmp_path / 'w' / 'epoch_2.pth'))
    assert meta[STAGE2_META_KEY]['trainable'] == ['head.bias', 'head.weight']


def test_module_prefix_selects_the_parameters_below_it(tmp_path):
    runner = _runner(
        tmp_path,
        dict(
            trainable=['backbone.1'],
            allow_backbone=True,
            require_load_from=False))
    runner.train()
    trained = {
        n
        for n, p in runner.model.named_parameters() if p.requires_grad
    }
    assert trained == {'backbone.1.weight', 'backbone.1.bias'}


@pytest.mark.parametrize('hook, match', [
    (dict(trainable=['neck']), "patterns \\['neck'\\] match no parameter"),
    (dict(trainable=['backbone.0']), 'backbone parameters'),
    (dict(), 'no trainable parameters given'),
])
def test_misuse_is_refused_before_the_first_iteration(tmp_path, hook, match):
    runner = _runner(tmp_path, dict(require_load_from=False, **hook))
    before = _state(runner.model)
    with pytest.raises(ValueError, match=match):
        runner.train()
    after = _state(runner.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not list((tmp_path / 'w').glob('*.pth'))


def test_fresh_stage2_without_load_from_is_refused(tmp_path):
    runner = _runner(tmp_path, dict(trainable=['head']))
    with pytest.raises(Stage2GuardError, match='load_from is not set'):
        runner.train()
