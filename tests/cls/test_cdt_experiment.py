"""tools/analysis/cdt_experiment.py: lt_mm's CDT head + loss against the
tool's plain PyTorch loop on identical inputs, and a --fast smoke run.

No accuracy is asserted (the --fast run trains 1 epoch on tiny data); the
evidence is in docs/quickstart_evidence.md (classification).
"""
import math
import os.path as osp
import re

import pytest
import torch
from torch.testing import assert_close

from tests.conftest import REPO, ToolRunner, load_script

TOOL = osp.join(REPO, 'tools', 'analysis', 'cdt_experiment.py')


def _tool():
    return load_script(osp.relpath(TOOL, REPO))


# lt_mm: LTLinearClsHead + CDTLoss through mmpretrain (the shipped path);
# lt_mm_core: lt_mm.core.cdt.CDTCrossEntropy alone (what CDTLoss wraps)
IMPL_CLASSES = {'lt_mm': 'LtmmHead', 'lt_mm_core': 'LtmmCoreHead'}


@pytest.mark.parametrize('impl', sorted(IMPL_CLASSES))
def test_plain_and_lt_mm_agree_hand_computed(impl):
    tool = _tool()
    # counts [4, 1], gamma 1 -> a = (4 / N)^1 = [1, 4]
    plain = tool.PlainHead(2, [4, 1], gamma=1.0, start_epoch=1)
    ltmm = getattr(tool, IMPL_CLASSES[impl])(
        2, [4, 1], gamma=1.0, start_epoch=1)
    with torch.no_grad():
        plain.fc.weight.copy_(torch.eye(2))
        plain.fc.bias.zero_()
    ltmm.fc.load_state_dict(plain.fc.state_dict())
    feats = torch.tensor([[2.0, 4.0]])  # logits z = [2, 4]
    y = torch.tensor([1])
    # epoch 0 < start_epoch: plain CE = log(1 + e^(2 - 4))
    off = torch.tensor(math.log(1 + math.exp(-2)))
    assert_close(plain.loss(feats, y, 0), off)
    assert_close(ltmm.loss(feats, y, 0), off)
    # epoch 1: z / a = [2, 1] -> CE = log(1 + e^(2 - 1))
    on = torch.tensor(math.log(1 + math.exp(1)))
    assert_close(plain.loss(feats, y, 1), on)
    assert_close(ltmm.loss(feats, y, 1), on)
    # test logits: the raw z = [2, 4], no temperatures
    assert_close(ltmm.logits(feats), torch.tensor([[2.0, 4.0]]))
    assert_close(plain.logits(feats), torch.tensor([[2.0, 4.0]]))


@pytest.mark.parametrize('impl', sorted(IMPL_CLASSES))
def test_plain_and_lt_mm_agree_random_inputs(impl):
    tool = _tool()
    counts = [100, 64, 41, 27, 17, 11, 7, 4, 3, 2]
    diff = tool.check_agreement(counts, gamma=0.2, start_epoch=1, impl=impl)
    for key in ('loss_off', 'grad_off', 'loss_on', 'grad_on', 'test_logits',
                'test_is_raw'):
        assert diff[key] < 1e-5, (key, diff)
    # the temperatures do change the training loss
    assert abs(diff['cdt_minus_ce']) > 1e-3


def test_cdt_experiment_fast_runs(tmp_path):
    proc = ToolRunner(str(tmp_path))(
        'analysis/cdt_experiment.py',
        '--fast',
        '--work-dir',
        str(tmp_path / 'work'),
        timeout=300)
    out = proc.stdout
    # the shipped head + loss whenever mmpretrain imports
    other = 'lt_mm' if _tool().mmpretrain_available() else 'lt_mm_core'
    line = next(ln for ln in out.splitlines()
                if ln.startswith(f'agreement plain vs {other} '))
    diffs = [float(v) for v in re.findall(r' (\d\.\d+e[+-]\d+)', line)]
    assert len(diffs) == 6 and max(diffs) < 1e-5, line
    for recipe in ('quickstart', 'plain'):
        for impl in ('plain', other):
            for method in ('baseline', 'CDT'):
                assert re.search(rf'^{recipe}\s+{impl}\s+{method}\s+\d', out,
                                 re.MULTILINE), (recipe, impl, method,
                                                 out[-3000:])
    assert re.search(r'8 runs, .* wall \d+ s', out), out[-2000:]
