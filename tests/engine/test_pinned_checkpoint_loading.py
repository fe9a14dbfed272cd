"""Pinned behaviour of lt_mm's checked checkpoint loading (mutation audit).

``load_checkpoint_checked`` is run on a real mmengine ``Runner`` around a
tiny model; ``check_state_dict_fit`` and ``load_state_dict_checked`` on
hand-built inputs whose expected messages are written out here. The
allowlist is pinned entry by entry: any global added to it is a global a
checkpoint may call while being unpickled.
"""
from __future__ import annotations

import io
import os.path as osp
import uuid
import zipfile

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel, BaseTTAModel
from mmengine.runner import Runner
from torch import nn

# yapf: disable
from lt_mm.engine.checkpoint import (MMENGINE_SAFE_GLOBALS,
                                     CheckpointMismatchError,
                                     CheckpointReadError,
                                     UnsafeCheckpointError,
                                     check_state_dict_fit,
                                     history_buffer_getattr,
                                     load_checkpoint_checked,
                                     load_checkpoint_safely,
                                     load_state_dict_checked, safe_torch_load)
# yapf: enable
from tests.reliability.conftest import write_evil_checkpoint


class _Net(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, inputs=None, data_samples=None, mode='tensor'):
        return self.bn(self.fc(inputs))


class _Record(Hook):
    """Renames ``old.*`` keys to ``fc.*`` as a real after_load hook may."""

    def __init__(self) -> None:
        self.seen = []

    def after_load_checkpoint(self, runner, checkpoint) -> None:
        self.seen.append(sorted(checkpoint['state_dict']))
        sd = checkpoint['state_dict']
        for k in [k for k in sd if k.startswith('old.')]:
            sd['fc.' + k[len('old.'):]] = sd.pop(k)


@pytest.fixture(scope='module')
def runner(tmp_path_factory):
    work = tmp_path_factory.mktemp('ckpt_runner')
    r = Runner(
        model=_Net(),
        work_dir=str(work),
        experiment_name=f'lt_mm_pin_ckpt_{uuid.uuid4().hex[:8]}',
        default_scope='mmengine')
    return r


def _full_state(value: float = 0.5) -> dict:
    net = _Net()
    return {k: torch.full_like(v, value) for k, v in net.state_dict().items()}


def test_allowlist_is_exactly_what_mmengine_writes():
    from numpy._core import multiarray
    names = []
    for g in MMENGINE_SAFE_GLOBALS:
        if isinstance(g, tuple):
            names.append((g[0], g[1]))
        else:
            names.append((g, f'{g.__module__}.{g.__qualname__}'))
    expected = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (history_buffer_getattr, 'builtins.getattr'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
        (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
    ] + [(getattr(np.dtypes, n), f'numpy.dtypes.{n}')
         for n in ('Float64DType', 'Float32DType', 'Int64DType', 'Int32DType',
                   'BoolDType', 'UInt8DType')
         if getattr(np.dtypes, n, None) is not None]
    assert names == expected


def test_evil_checkpoint_is_refused_without_running_it(tmp_path):
    path, marker = str(tmp_path / 'evil.pth'), str(tmp_path / 'MARKER')
    write_evil_checkpoint(path, marker)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_torch_load(path)
    assert path in str(err.value) and 'system' in str(err.value)
    assert not osp.exists(marker)


def _as_numpy1_checkpoint(obj) -> bytes:
    """``torch.save(obj)`` as numpy 1.x names it
    (``numpy.core.multiarray``): the pickle's GLOBAL lines rewritten."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith('data.pkl'):
                assert b'cnumpy._core.multiarray\n' in data
                data = data.replace(b'cnumpy._core.multiarray\n',
                                    b'cnumpy.core.multiarray\n')
                assert b'numpy._core' not in data
            dst.writestr(name, data)
    return out.getvalue()


def test_numpy1_checkpoint_meta_loads():
    data = _as_numpy1_checkpoint({
        'meta': {
            'a': np.array([1.5, 2.0]),
            's': np.float64(3.25)
        },
        'state_dict': {
            'w': torch.ones(2)
        }
    })
    ckpt = safe_torch_load(data)
    np.testing.assert_array_equal(ckpt['meta']['a'], [1.5, 2.0])
    assert ckpt['meta']['s'] == 3.25
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))


def test_checkpoint_without_state_dict_is_named(runner, tmp_path):
    path = str(tmp_path / 'a_list.pth')
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint_checked(runner, path)
    assert path in str(err.value) and 'a list' in str(err.value)


def test_strict_refuses_unexpected_entries_else_ignores_them(runner, tmp_path):
    path = str(tmp_path / 'extra.pth')
    state = _full_state(0.25)
    state['extra.w'] = torch.zeros(1)
    torch.save({'meta': {}, 'state_dict': state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint_checked(runner, path, strict=True)
    assert str(err.value) == (f'checkpoint {path!r}: 1 entries are not in '
                              'the model (extra.w).')
    runner.model.fc.weight.data.zero_()
    ckpt = load_checkpoint_checked(runner, path)
    assert sorted(ckpt['state_dict']) == sorted(state)
    assert torch.equal(runner.model.fc.weight, torch.full((3, 2), 0.25))


def test_after_load_checkpoint_hooks_run_before_copying(runner, tmp_path):
    hook = _Record()
    runner.register_hook(hook)
    try:
        state = _full_state(0.75)
        state['old.weight'] = state.pop('fc.weight')
        path = str(tmp_path / 'renamed.pth')
        torch.save({'meta': {}, 'state_dict': state}, path)
        load_checkpoint_checked(runner, path)
    finally:
        runner._hooks.remove(hook)
    assert len(hook.seen) == 1 and 'old.weight' in hook.seen[0]
    assert torch.equal(runner.model.fc.weight, torch.full((3, 2), 0.75))


def test_module_prefix_is_revised_and_missing_entries_refused(
        runner, tmp_path):
    state = {'module.' + k: v for k, v in _full_state(1.0).items()}
    del state['module.fc.bias']
    path = str(tmp_path / 'ddp.pth')
    torch.save({'meta': {}, 'state_dict': state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint_checked(runner, path)
    msg = str(err.value)
    assert msg.startswith(
        f'checkpoint {path!r} (6 entries) does not fit the model: '
        '1 model parameter(s)/buffer(s) are missing from it (fc.bias). ')
    load_checkpoint_checked(runner, path, allow_missing_keys=True)
    assert torch.equal(runner.model.fc.weight, torch.ones(3, 2))


def test_missing_only_is_refused_and_listed_with_a_count():
    missing = [f'k{i}' for i in range(7)]
    with pytest.raises(CheckpointMismatchError) as err:
        check_state_dict_fit('f.pth', missing, [], 1)
    assert str(err.value).startswith(
        "checkpoint 'f.pth' (1 entry) does not fit the model: 7 model "
        'parameter(s)/buffer(s) are missing from it (k0, k1, k2, k3, k4, '
        '... (+2 more)). They would keep')
    with pytest.raises(CheckpointMismatchError) as err:
        check_state_dict_fit('f.pth', missing[:5], [], 2)
    assert '(2 entries) does not fit the model: 5 model parameter(s)/' \
        'buffer(s) are missing from it (k0, k1, k2, k3, k4). They' \
        in str(err.value)


def test_errors_only_are_refused_shapes_and_others_apart():
    shape = ('size mismatch for fc.weight: copying a param with shape '
             'torch.Size([5, 2]) from checkpoint, the shape in current '
             'model is torch.Size([3, 2]).')
    other = '  While copying the parameter named "bn.weight", boom.  '
    with pytest.raises(CheckpointMismatchError) as err:
        check_state_dict_fit('g.pth', [], [shape, other], 3, opt_out='--x')
    msg = str(err.value)
    assert msg.startswith(
        "checkpoint 'g.pth' (3 entries) does not fit the model: 1 have "
        'another shape in it (fc.weight: checkpoint [5, 2] vs model [3, 2]);'
        ' 1 could not be copied (While copying the parameter named '
        '"bn.weight", boom.). They would keep')
    assert msg.endswith('pass --x to evaluate anyway.')
    assert check_state_dict_fit(
        'g.pth', ['a'], [shape], 3, allow_missing_keys=True) is None
    assert check_state_dict_fit('g.pth', [], [], 0) is None


def test_load_state_dict_post_hooks_may_fill_missing_entries():

    class Filled(nn.Module):

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.register_buffer('made', torch.zeros(2))

            def fill(module, keys):
                # the lists hold full names ('0.made'), as in torch
                for k in [k for k in keys.missing_keys if k.endswith('made')]:
                    keys.missing_keys.remove(k)

            self.register_load_state_dict_post_hook(fill)

    model = nn.Sequential(Filled())
    state = {'0.fc.weight': torch.zeros(2, 2), '0.fc.bias': torch.zeros(2)}
    assert load_state_dict_checked(model, state) == ([], [], [])
    missing, unexpected, errors = load_state_dict_checked(
        model, {
            '0.fc.weight': torch.zeros(2, 2),
            'x': torch.zeros(1)
        })
    assert (missing, unexpected, errors) == (['0.fc.bias'], ['x'], [])


def test_a_folder_is_not_found_as_a_checkpoint(tmp_path):
    folder = tmp_path / 'epoch_1.pth'
    folder.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint_safely(str(folder))
    assert str(err.value) == f'checkpoint {str(folder)!r} can not be found.'


def test_errors_of_a_complete_file_are_not_called_corrupt(tmp_path):
    """An error raised while loading a complete checkpoint (here by the
    caller's map_location) is the caller's, not 'truncated or corrupt'."""
    path = str(tmp_path / 'ok.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}}, path)

    def refuse(storage, location):
        raise ValueError('map_location refused it')

    with pytest.raises(ValueError, match='map_location refused it') as err:
        safe_torch_load(path, map_location=refuse)
    assert not isinstance(err.value, CheckpointReadError)


class _TTA(BaseTTAModel):

    def merge_preds(self, data_samples_list):
        return data_samples_list


def test_tta_model_loads_the_checkpoint_of_its_module():
    """``tools/test.py --tta``: the runner's model is a BaseTTAModel whose
    ``module`` holds the checkpoint's entries (no 'module.' prefix)."""
    state = _full_state(0.5)
    tta = _TTA(module=_Net())
    assert load_state_dict_checked(tta, state) == ([], [], [])
    assert torch.equal(tta.module.fc.weight, torch.full((3, 2), 0.5))
    missing, unexpected, _ = load_state_dict_checked(tta, {
        'module.' + k: v
        for k, v in state.items()
    })
    assert sorted(missing) == sorted(k for k in state
                                     if 'num_batches_tracked' not in k)
    assert sorted(unexpected) == sorted('module.' + k for k in state)
