"""End-to-end classification workflow through tools/train.py, tools/test.py
and tools/analysis/sweep_posthoc.py on the tiny ImageNet-LT-format data:
stage 1 (session fixture) -> every stage-2 / post-hoc method from that
checkpoint -> test (many / medium / few printed); TDE and CDT one-stage;
frozen parameters provably unchanged; bad input fails before training.

Independent tool runs of a test are started side by side (one per core,
at most 4) to keep the suite short."""
import json
import os
import os.path as osp
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from lt_mm.engine.checkpoint import safe_torch_load
from ..conftest import QUICKSTART, last_checkpoint

METRIC_RE = {
    k: re.compile(rf'accuracy/{k}: (\d+\.\d+|nan)')
    for k in ('top1', 'top5', 'balanced', 'many', 'medium', 'few')
}
# stage 2 / one-stage runs: one epoch of the tiny data is enough to
# exercise the loops (the stage-1 fixture's options, shortened)
ONE_EPOCH = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1']


def _parallel(*calls):
    workers = max(1, min(4, os.cpu_count() or 1, len(calls)))
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futures = [ex.submit(c) for c in calls]
        return [f.result() for f in futures]


def _cfg(method):
    return osp.join(QUICKSTART, f'digits_cls_{method}.py')


def _metrics(log, where='test'):
    """The last printed value of every long-tail metric."""
    lines = [ln for ln in log.splitlines() if f'Epoch({where})' in ln]
    assert lines, f'no Epoch({where}) line in:\n{log[-3000:]}'
    out = {}
    for k, rx in METRIC_RE.items():
        found = rx.findall(lines[-1])
        assert found, f'{k} not printed in: {lines[-1]}'
        out[k] = float(found[-1])
    return out


def _state(path):
    return safe_torch_load(path)['state_dict']


def _train(run_tool, stage1, method, work_dir, load=True, extra=()):
    opts = list(stage1['options']) + ONE_EPOCH + list(extra)
    if load:
        opts.append(f'load_from={stage1["checkpoint"]}')
    return lambda: run_tool('train.py', _cfg(method), '--work-dir',
                            str(work_dir), '--cfg-options', *opts)


def _test(run_tool, method, ckpt, work_dir, *opts):
    args = [_cfg(method), ckpt, '--work-dir', str(work_dir)]
    if opts:
        args += ['--cfg-options', *opts]
    return lambda: run_tool('test.py', *args).stdout


def test_stage1_prints_long_tail_metrics(cls_stage1):
    m = _metrics(cls_stage1['log'], 'val')
    assert 0.0 <= m['top1'] <= 100.0


def test_stage2_methods_freeze_and_test(cls_stage1, run_tool, tmp_path):
    methods = ('disalign', 'lws', 'crt')
    logs = _parallel(*[
        _train(run_tool, cls_stage1, m, tmp_path / m / 'train')
        for m in methods
    ])
    s1 = _state(cls_stage1['checkpoint'])
    ckpts = {}
    for method, proc in zip(methods, logs):
        assert 'Stage2FreezeHook: training' in proc.stdout
        ckpts[method] = last_checkpoint(str(tmp_path / method / 'train'))
        s2 = _state(ckpts[method])
        # every stage-1 tensor stays bit-identical (BN statistics too),
        # except cRT's re-initialised and re-trained classifier
        retrained = {'head.fc.weight', 'head.fc.bias'} \
            if method == 'crt' else set()
        for k, v in s1.items():
            assert torch.equal(v, s2[k]) != (k in retrained), (method, k)
        if method == 'disalign':
            assert not torch.equal(s2['head.calibration.logit_bias'],
                                   torch.zeros(10))
            assert not torch.equal(s2['head.calibration.logit_scale'],
                                   torch.ones(10))
        elif method == 'lws':
            assert not torch.equal(s2['head.lws.scales'], torch.ones(10))
        else:
            assert int(s2['head.crt_retrained']) == 1
    tests = _parallel(
        *
        [_test(run_tool, m, ckpts[m], tmp_path / m / 'test') for m in methods])
    for method, log in zip(methods, tests):
        m = _metrics(log)
        assert set(m) >= {'top1', 'many', 'medium', 'few'}
        if method == 'crt':  # the re-trained fc loads, no second re-init
            assert 'fc is re-initialised' not in log


def test_test_time_methods_on_stage1(cls_stage1, run_tool, tmp_path):
    methods = ('taunorm', 'posthoc_nc_tau', 'posthoc_logit_adjust', 'ncm')
    logs = _parallel(*[
        _test(run_tool, m, cls_stage1['checkpoint'], tmp_path / m)
        for m in methods
    ])
    for log in logs:
        m = _metrics(log)
        assert 0.0 <= m['balanced'] <= 100.0
    # NCM: class means computed from the 131 training images before the
    # test, saved with the model
    assert 'class means of 131 training samples' in logs[-1]
    sd = _state(str(tmp_path / 'ncm' / 'ncm_centroids.pth'))
    assert int(sd['head.ncm_ready']) == 1
    assert sd['head.centroids'].shape == (10, 128)


def test_one_stage_tde_and_cdt(cls_stage1, run_tool, tmp_path):
    tde, cdt = _parallel(
        _train(run_tool, cls_stage1, 'tde', tmp_path / 'tde', load=False),
        _train(
            run_tool,
            cls_stage1,
            'cdt',
            tmp_path / 'cdt',
            load=False,
            extra=['model.head.loss.start_epoch=1']))
    assert set(_metrics(cdt.stdout, 'val')) >= {'many', 'medium', 'few'}
    assert 'head.fc.weight' in _state(last_checkpoint(str(tmp_path / 'cdt')))
    ckpt = last_checkpoint(str(tmp_path / 'tde'))
    sd = _state(ckpt)
    assert sd['head.fc.head_direction'].abs().sum() > 0  # updated, saved
    log = _test(run_tool, 'tde', ckpt, tmp_path / 'tde_test',
                'model.head.alpha=0.5')()
    out = tmp_path / 'sweep.json'
    sweep = run_tool('analysis/sweep_posthoc.py', _cfg('tde'), ckpt, '--split',
                     'test', '--out', str(out))
    printed = _metrics(log)
    assert 'TDE (Eq. 8): alpha' in sweep.stdout
    res = json.loads(out.read_text())
    curve = res['curves']['test']['tde_alpha']
    assert curve['values'][0] == 0.0 and len(curve['values']) == 17
    # the sweep on cached features reproduces tools/test.py at alpha = 0.5
    row = curve['metrics'][curve['values'].index(0.5)]
    for k in ('top1', 'balanced', 'many', 'medium', 'few'):
        assert row[k] == pytest.approx(printed[k], abs=1e-3), k
    assert 'taunorm' in res['skipped']  # a TDE head has no linear fc
    # both timings are reported (compared by the tool's printout, never
    # asserted here: speed is not a test property)
    assert set(res['timing']) >= {'sweep_s', 'feature_extraction_s'}
    assert 'feature extraction' in sweep.stdout


def test_sweep_tool_select_on_val(cls_stage1, run_tool, tmp_path):
    out = tmp_path / 'curves.json'
    proc = run_tool('analysis/sweep_posthoc.py', _cfg('resnet_stage1'),
                    cls_stage1['checkpoint'], '--select-on', 'val', '--report',
                    'test', '--out', str(out))
    log = proc.stdout
    for title in ('[val] tau-norm', '[test] tau-norm', 'N_c^tau rule',
                  'logit adjustment', 'selected on val by balanced'):
        assert title in log, title
    assert 'same images' not in log  # ImageNet-LT lists: val != test
    # 30 val + 50 test images; 3 sweeps x 21 values x 2 splits
    assert re.search(
        r'feature extraction \(backbone \+ neck, 80 images, '
        r'once\): [\d.]+ s \| sweeps \(126 settings', log), log
    res = json.loads(out.read_text())
    curve = res['curves']['test']['taunorm']
    assert len(curve['values']) == 21 and len(curve['metrics']) == 21
    assert set(curve['metrics'][0]) >= {'top1', 'many', 'medium', 'few'}
    assert res['selected']['taunorm']['value'] in curve['values']
    assert 'tde_alpha' in res['skipped']


def test_sweep_tool_refuses_a_checkpoint_or_stats_file_that_does_not_fit(
        cls_stage1, seg_stage1, run_tool, tmp_path, data_root):
    # another task's checkpoint: swept with random weights before
    proc = run_tool(
        'analysis/sweep_posthoc.py',
        _cfg('resnet_stage1'),
        seg_stage1['checkpoint'],
        check=False)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert 'lt_mm: CheckpointMismatchError' in proc.stdout
    assert '--allow-missing-keys' in proc.stdout
    # pixel counts for the image-count rules of classification
    seg_stats = osp.join(data_root, 'seg', 'class_stats.json')
    proc = run_tool(
        'analysis/sweep_posthoc.py',
        _cfg('resnet_stage1'),
        cls_stage1['checkpoint'],
        '--stats-file',
        seg_stats,
        '--sweeps',
        'nc_tau',
        check=False)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert '--stats-file' in proc.stdout and 'pixels' in proc.stdout


def test_sweep_tool_loads_checkpoints_safely(run_tool, tmp_path):
    # the sweep's own checked loading keeps weights_only + the allowlist
    bad = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': {}, 'payload': os.system}, bad)
    proc = run_tool(
        'analysis/sweep_posthoc.py', _cfg('resnet_stage1'), bad, check=False)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stdout
    assert 'posix.system' in proc.stdout


def test_bad_input_fails_before_training(cls_stage1, run_tool, tmp_path,
                                         data_root, monkeypatch):
    # a stage-2 config without load_from: clear error, no training step
    proc = run_tool(
        'train.py',
        _cfg('disalign'),
        '--work-dir',
        str(tmp_path / 'a'),
        '--cfg-options',
        *cls_stage1['options'],
        check=False)
    assert proc.returncode != 0
    assert 'load_from is not set' in proc.stdout
    assert 'Epoch(train)' not in proc.stdout
    # class counts of another length than the head's num_classes: the
    # model of the stage-2 config does not build (in-process: the Runner
    # builds the model first, before any data is loaded)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(_cfg('disalign'))
    cfg.merge_from_dict({
        'model.head.loss.train_ann_file': None,
        'model.head.loss.counts': [5, 3, 1]
    })
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match='num_classes=10'):
            MODELS.build(cfg.model)
