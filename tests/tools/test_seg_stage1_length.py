"""tools/analysis/seg_stage1_length.py: the length rule by hand, each length
its own stage 1, the training-mosaic test equal to ``tools/test.py`` on
the training split, the cache, and the refused arguments."""
import json
import os
import os.path as osp
import re

import pytest

from tests.conftest import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STAGE1 = osp.join(REPO, 'configs', 'quickstart', 'digits_seg_fcn_stage1.py')


def _tool():
    return load_script('tools', 'analysis', 'seg_stage1_length.py')


def test_choose_length_by_hand():
    tool = _tool()
    # the measured training tail mAcc of issue #11 (3 seeds)
    measured = {
        1000: [24.6, 28.7, 0.0],  # mean 17.8
        1500: [94.5, 50.0, 50.0],  # mean 64.8, every seed > 0
        2000: [100.0, 55.2, 59.8],
    }
    assert tool.choose_length(measured, 50) == 1500
    assert tool.choose_length(measured, 70) == 2000
    assert tool.choose_length(measured, 90) is None
    # a mean above the threshold with one seed at 0 does not count
    assert tool.choose_length({
        10: [100.0, 100.0, 0.0],
        20: [99.0, 2.0]
    }, 50) == 20
    # the threshold itself counts; the order of the dict does not matter
    assert tool.choose_length({30: [80.0], 10: [50.0, 50.0]}, 50) == 10


def test_each_length_trains_its_own_stage1_and_tests_the_training_mosaics(
        data_root, run_tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)  # the tool sets it
    tool = _tool()
    work = tmp_path / 'w'
    os.makedirs(work / 'seed_0')
    # the session's tiny data of seed 0, in the quickstart --seeds layout
    os.symlink(data_root, work / 'seed_0' / 'data')
    results = tool.main([
        '--work-dir',
        str(work), '--seeds', '0', '--iters', '3', '2', '--size', 'fast',
        '--min-tail-acc', '100'
    ])
    out = work / 'seg_stage1_length' / 'seed_0'
    assert sorted(results) == [2, 3]
    for iters in (2, 3):
        # a schedule of exactly that length, in its own work dir
        assert (out / f'iters_{iters}' / 'train' /
                f'iter_{iters}.pth').is_file()
        assert not (out / f'iters_{iters}' / 'train' /
                    f'iter_{iters + 1}.pth').exists()
        got = results[iters][0]
        assert set(got) == {'val', 'train'}
        for split in ('val', 'train'):
            assert 0 <= got[split]['mAcc_tail'] <= 100

    # the training-mosaic numbers equal tools/test.py on the training split
    # on the same checkpoint (8 training mosaics in the --fast data, 4 val)
    ckpt = str(out / 'iters_3' / 'train' / 'iter_3.pth')
    proc = run_tool('test.py', STAGE1, ckpt, '--work-dir',
                    str(tmp_path / 'cli'), '--cfg-options',
                    *tool.TRAIN_SPLIT_OPTIONS)
    assert 'Iter(test) [8/8]' in proc.stdout
    line = [ln for ln in proc.stdout.splitlines() if 'Iter(test)' in ln][-1]
    for key in ('aAcc', 'mIoU', 'mIoU_head', 'mAcc_tail'):
        cli = float(re.search(rf' {key}: ([0-9.]+)', line).group(1))
        assert results[3][0]['train'][key] == pytest.approx(cli, abs=5e-3)
    # ... and are not the val numbers (the tiny model's tail IoU is 0 on
    # both splits; the pixel accuracy tells the splits apart)
    assert results[3][0]['train']['aAcc'] != pytest.approx(
        results[3][0]['val']['aAcc'], abs=1e-3)

    table = capsys.readouterr().out
    assert '| 2 |' in table and '| 3 |' in table
    assert (work / 'seg_stage1_length' / 'table.md').is_file()

    # cached: a second call trains nothing and returns the same numbers
    for iters in (2, 3):
        os.remove(out / f'iters_{iters}' / 'train' / f'iter_{iters}.pth')
    again = tool.main([
        '--work-dir',
        str(work), '--seeds', '0', '--iters', '2', '3', '--size', 'fast'
    ])
    assert json.dumps(
        again, sort_keys=True) == json.dumps(
            results, sort_keys=True)

    # a cache written with other settings is recomputed, not returned
    stale = out / 'iters_2' / 'result.json'
    saved = json.loads(stale.read_text())
    assert saved['params'] == dict(seed=0, iters=2, size='fast')
    saved['params']['size'] = 'full'
    saved['val']['aAcc'] = -1.0
    stale.write_text(json.dumps(saved))
    redone = tool.run_length(
        str(work / 'seed_0'), 0, 2, str(out / 'iters_2'), size='fast')
    assert (out / 'iters_2' / 'train' / 'iter_2.pth').is_file()
    for split in ('val', 'train'):
        assert redone[split] == pytest.approx(results[2][0][split])


def test_another_config_trains_that_model_in_its_own_folder(
        data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)  # the tool sets it
    tool = _tool()
    work = tmp_path / 'w'
    os.makedirs(work / 'seed_0')
    os.symlink(data_root, work / 'seed_0' / 'data')
    cdt = osp.join(REPO, 'configs', 'quickstart', 'digits_seg_cdt.py')
    results = tool.main([
        '--work-dir',
        str(work), '--seeds', '0', '--iters', '2', '--size', 'fast',
        '--config',
        osp.relpath(cdt)
    ])
    out = work / 'seg_stage1_length_digits_seg_cdt' / 'seed_0' / 'iters_2'
    # the CDT model (its loss in the dumped config), not the stage 1
    dumped = (out / 'train' / 'digits_seg_cdt.py').read_text()
    assert 'CDTCrossEntropyLoss' in dumped
    assert not (work / 'seg_stage1_length').exists()
    saved = json.loads((out / 'result.json').read_text())
    assert saved['params'] == dict(
        seed=0, iters=2, size='fast', config='digits_seg_cdt.py')
    assert 0 <= results[2][0]['train']['mAcc_tail'] <= 100


@pytest.mark.parametrize('argv, message', [
    (['--config', 'no_such_config.py'], '--config'),
    (['--iters', '0', '1500'], '--iters'),
    (['--iters', '1500', '1500'], '--iters'),
    (['--seeds', '-1'], '--seeds'),
    (['--seeds', '1', '1'], '--seeds'),
    (['--min-tail-acc', '0'], '--min-tail-acc'),
    (['--min-tail-acc', '101'], '--min-tail-acc'),
])
def test_bad_arguments_are_refused(argv, message, tmp_path, capsys):
    tool = _tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['--work-dir', str(tmp_path), *argv])
    assert message in capsys.readouterr().err
