"""Bad arguments of the tools stop with a message naming the argument and
the fix, before any data is read or any model is trained or run (before
the fixes: a misspelt --methods ran only the baselines and exited 0;
class_stats.py counted every label map and then raised a TypeError, or
silently ignored --thr; sweep_posthoc.py extracted every feature and exited
0 with nothing swept)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from tests.conftest import REPO, load_script

QUICK = osp.join(REPO, 'configs', 'quickstart')
SEG_CFG = osp.join(QUICK, 'digits_seg_fcn_stage1.py')
CLS_CFG = osp.join(QUICK, 'digits_cls_resnet_stage1.py')


@pytest.fixture(scope='module')
def quickstart():
    return load_script('tools', 'quickstart.py')


@pytest.fixture(scope='module')
def class_stats():
    return load_script('tools', 'class_stats.py')


@pytest.fixture(scope='module')
def sweep():
    return load_script('tools', 'analysis', 'sweep_posthoc.py')


def test_quickstart_refuses_unknown_methods_before_any_work(
        quickstart, tmp_path):
    work = tmp_path / 'qs'
    with pytest.raises(
            SystemExit,
            match='--methods Disalign: no such '
            r'method.*seg: DisAlign, TDE'):
        quickstart.main([
            '--fast', '--work-dir',
            str(work), '--tasks', 'seg', '--methods', 'Disalign'
        ])
    assert not work.exists()  # no data built, no stage 1 trained
    # a method of another task only
    with pytest.raises(SystemExit, match='--methods cosine'):
        quickstart.main([
            '--fast', '--work-dir',
            str(work), '--tasks', 'cls', '--methods', 'cosine'
        ])
    quickstart.check_methods(['DisAlign', 'N_c^tau'], ['cls', 'det'])
    quickstart.check_methods(None, ['cls'])


def test_quickstart_seed_arguments(quickstart, tmp_path):
    with pytest.raises(SystemExit, match='--seed 3 and --seeds'):
        quickstart.main([
            '--fast', '--work-dir',
            str(tmp_path), '--seed', '3', '--seeds', '2'
        ])
    with pytest.raises(SystemExit, match=r'--seeds -1: seeds are 0 \.\.'):
        quickstart.seed_list([-1, 2])


def test_class_stats_checks_rule_and_thresholds_before_counting(
        class_stats, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    out = tmp_path / 'stats.json'
    base = [SEG_CFG, '--out', str(out), '--no-progress']
    cases = [
        (['--thr', 'head_shar=1.0'],
         '--thr head_shar: --rule pixel takes head_share, tail_share'),
        (['--rule', 'none', '--thr',
          'head_share=1.0'], '--rule none takes no thresholds'),
        (['--rule', 'ade20k', '--thr',
          'head_thr=0.02'], '--rule ade20k takes no thresholds'),
        (['--rule', 'ratio', '--thr',
          'head_thr=abc'], "--thr head_thr='abc': give a number"),
        (['--split', 'val', '--cfg-options', 'val_dataloader=None'],
         '--split val: the config has no val_dataloader.dataset'),
    ]
    for extra, msg in cases:
        with pytest.raises(SystemExit, match=msg):
            class_stats.main(base + extra)
        assert not out.exists()
    with pytest.raises(SystemExit, match='--rule pixel groups pixel counts'):
        class_stats.main([CLS_CFG, '--out', str(out), '--rule', 'pixel'])
    # valid thresholds still reach the rule
    class_stats.main(base + ['--rule', 'ratio', '--thr', 'head_thr=0.5'])
    assert out.exists()


def test_class_stats_auto_rule_on_ade20k_refuses_thresholds(class_stats):
    from lt_mm.core.stats import ade20k_class_stats
    ade = ade20k_class_stats()
    res = dict(pixels=ade.counts, images=ade.counts, total=sum(ade.counts))
    # without --thr: the Table 16 groups
    rule, splits = class_stats.make_splits('mmseg', 'auto', list(ade.names),
                                           res, {})
    assert rule == 'ade20k' and splits == ade.splits
    with pytest.raises(SystemExit, match='fixed DisAlign Table 16 groups'):
        class_stats.make_splits('mmseg', 'auto', list(ade.names), res,
                                {'head_share': 1.0})


def test_sweep_with_nothing_to_sweep_stops_before_extraction(
        sweep, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    from mmseg.registry import MODELS

    import lt_mm.seg  # noqa: F401
    cfg = Config.fromfile(SEG_CFG)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'stock_fcn.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'sweep.json'
    # a stock conv_seg has no TDE alpha
    with pytest.raises(SystemExit, match='nothing to sweep.*tde_alpha'):
        sweep.main([SEG_CFG, ckpt, '--sweeps', 'tde_alpha', '--out', str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit, match='--max-images 0'):
        sweep.main([SEG_CFG, ckpt, '--max-images', '0'])


def test_det_tde_table_only_without_results_names_the_files(tmp_path):
    # before: a FileNotFoundError traceback writing table.md (or, with the
    # folder present, an empty table and exit 0)
    tool = load_script('tools', 'analysis', 'det_tde_experiment.py')
    work = tmp_path / 'none'
    with pytest.raises(
            SystemExit,
            match=r'--table-only: no cached results '
            r'\(.*seed0/results\.json'):
        tool.main(['--table-only', '--work-dir', str(work), '--seeds', '0'])
    work.mkdir()
    with pytest.raises(SystemExit, match='no cached results'):
        tool.main(['--table-only', '--work-dir', str(work), '--seeds', '0'])
