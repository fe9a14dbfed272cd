"""End-to-end classification workflow through tools/train.py, tools/test.py
and tools/analysis/sweep_posthoc.py on the tiny ImageNet-LT-format data:
stage 1 (session fixture) -> every stage-2 / post-hoc method from that
checkpoint -> test (many / medium / few printed); TDE and CDT one-stage;
frozen parameters provably unchanged; bad input fails before training."""
import json
import os.path as osp
import re

import pytest
import torch

from lt_mm.engine.checkpoint import safe_torch_load

from ..conftest import QUICKSTART, last_checkpoint

METRIC_RE = {
    k: re.compile(rf'accuracy/{k}: (\d+\.\d+|nan)')
    for k in ('top1', 'top5', 'balanced', 'many', 'medium', 'few')
}


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


def _train(run_tool, method, work_dir, options, load_from=None, *extra):
    opts = list(options)
    if load_from:
        opts.append(f'load_from={load_from}')
    return run_tool('train.py', _cfg(method), '--work-dir', str(work_dir),
                    '--cfg-options', *opts, *extra)


def _test(run_tool, method, ckpt, work_dir, *opts):
    args = [_cfg(method), ckpt, '--work-dir', str(work_dir)]
    if opts:
        args += ['--cfg-options', *opts]
    proc = run_tool('test.py', *args)
    return proc.stdout, _metrics(proc.stdout)


def test_stage1_prints_long_tail_metrics(cls_stage1):
    m = _metrics(cls_stage1['log'], 'val')
    assert 0.0 <= m['top1'] <= 100.0


@pytest.mark.parametrize('method', ['disalign', 'lws', 'crt'])
def test_stage2_method(method, cls_stage1, run_tool, tmp_path):
    proc = _train(run_tool, method, tmp_path / 'train',
                  cls_stage1['options'], cls_stage1['checkpoint'])
    assert 'Stage2FreezeHook: training' in proc.stdout
    ckpt = last_checkpoint(str(tmp_path / 'train'))
    s1, s2 = _state(cls_stage1['checkpoint']), _state(ckpt)
    # everything stage 1 had stays bit-identical (BN statistics included),
    # except cRT's re-initialised classifier
    changed_ok = {'head.fc.weight', 'head.fc.bias'} if method == 'crt' \
        else set()
    for k, v in s1.items():
        if k in changed_ok:
            assert not torch.equal(v, s2[k]), k
        else:
            assert torch.equal(v, s2[k]), k
    if method == 'disalign':
        assert not torch.equal(s2['head.disalign.logit_bias'],
                               torch.zeros(10))
        assert 'head.disalign.confidence_layer.weight' in s2
    elif method == 'lws':
        assert not torch.equal(s2['head.lws.scales'], torch.ones(10))
    else:
        assert int(s2['head.crt_retrained']) == 1
    log, m = _test(run_tool, method, ckpt, tmp_path / 'test')
    assert set(m) >= {'many', 'medium', 'few', 'top1'}
    if method == 'crt':
        # the re-trained classifier is loaded, not re-initialised again
        assert 'fc is re-initialised' not in log


@pytest.mark.parametrize('method',
                         ['taunorm', 'posthoc_nc_tau', 'posthoc_logit_adjust'])
def test_posthoc_method_on_stage1(method, cls_stage1, run_tool, tmp_path):
    _, m = _test(run_tool, method, cls_stage1['checkpoint'], tmp_path)
    assert 0.0 <= m['balanced'] <= 100.0


def test_ncm_centroids_computed_saved_and_reused(cls_stage1, run_tool,
                                                 tmp_path):
    log, m = _test(run_tool, 'ncm', cls_stage1['checkpoint'],
                   tmp_path / 'a')
    assert 'class means of 131 training samples' in log
    saved = str(tmp_path / 'a' / 'ncm_centroids.pth')
    sd = _state(saved)
    assert int(sd['head.ncm_ready']) == 1
    assert sd['head.centroids'].shape == (10, 128)
    log2, m2 = _test(run_tool, 'ncm', saved, tmp_path / 'b')
    assert 'using the class means of the checkpoint' in log2
    assert m2 == m


def test_tde_one_stage_alpha_and_sweep(cls_stage1, run_tool, tmp_path):
    _train(run_tool, 'tde', tmp_path / 'train', cls_stage1['options'])
    ckpt = last_checkpoint(str(tmp_path / 'train'))
    sd = _state(ckpt)
    assert sd['head.fc.head_direction'].abs().sum() > 0  # updated, saved
    _, m = _test(run_tool, 'tde', ckpt, tmp_path / 'test',
                 'model.head.alpha=0.5')
    assert set(m) >= {'many', 'medium', 'few'}
    out = tmp_path / 'sweep.json'
    proc = run_tool('analysis/sweep_posthoc.py', _cfg('tde'), ckpt,
                    '--split', 'test', '--out', str(out))
    assert 'TDE (Eq. 8): alpha' in proc.stdout
    res = json.loads(out.read_text())
    curve = res['curves']['test']['tde_alpha']
    assert curve['values'][0] == 0.0 and len(curve['values']) == 17
    assert 'taunorm' in res['skipped']  # no linear fc in a TDE head
    t = res['timing']
    assert t['sweep_s'] < t['feature_extraction_s'], t


def test_cdt_one_stage(cls_stage1, run_tool, tmp_path):
    proc = _train(run_tool, 'cdt', tmp_path, cls_stage1['options'], None,
                  'model.head.loss.start_epoch=1')
    m = _metrics(proc.stdout, 'val')
    assert set(m) >= {'many', 'medium', 'few'}
    assert 'head.fc.weight' in _state(last_checkpoint(str(tmp_path)))


def test_sweep_tool_select_on_val(cls_stage1, run_tool, tmp_path):
    out = tmp_path / 'curves.json'
    proc = run_tool('analysis/sweep_posthoc.py',
                    _cfg('resnet_stage1'), cls_stage1['checkpoint'],
                    '--select-on', 'val', '--report', 'test', '--out',
                    str(out))
    log = proc.stdout
    for title in ('[val] tau-norm', '[test] tau-norm', 'N_c^tau rule',
                  'logit adjustment', 'selected on val by balanced'):
        assert title in log, title
    assert re.search(r'feature extraction \(backbone \+ neck, 80 images, '
                     r'once\): [\d.]+ s \| sweeps \(126 settings', log), log
    res = json.loads(out.read_text())
    curve = res['curves']['test']['taunorm']
    assert len(curve['values']) == 21 and len(curve['metrics']) == 21
    assert set(curve['metrics'][0]) >= {'top1', 'many', 'medium', 'few'}
    assert res['selected']['taunorm']['value'] in curve['values']
    assert 'tde_alpha' in res['skipped']


def test_bad_input_fails_before_training(cls_stage1, run_tool, tmp_path):
    # a stage-2 config without load_from
    proc = run_tool('train.py', _cfg('disalign'), '--work-dir',
                    str(tmp_path / 'a'), '--cfg-options',
                    *cls_stage1['options'], check=False)
    assert proc.returncode != 0
    assert 'load_from is not set' in proc.stdout
    assert 'Epoch(train)' not in proc.stdout
    # class counts of another length than the head's num_classes
    proc = run_tool('train.py', _cfg('disalign'), '--work-dir',
                    str(tmp_path / 'b'), '--cfg-options',
                    *cls_stage1['options'],
                    f'load_from={cls_stage1["checkpoint"]}',
                    'model.head.loss.train_ann_file=None',
                    'model.head.loss.counts=[5,3,1]', check=False)
    assert proc.returncode != 0
    assert 'num_classes=10' in proc.stdout
    assert 'Epoch(train)' not in proc.stdout
