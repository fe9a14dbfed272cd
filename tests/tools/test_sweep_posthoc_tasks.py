"""tools/analysis/sweep_posthoc.py on segmentation and detection configs.

One real subprocess per toolbox on the session stage-1 checkpoints. The
identity setting of the sweep (tau = 0 of the prior rules: the classifier's
own logits; det: also the ``model`` reference row) must give exactly the
numbers the runner's test loop printed for the same checkpoint: the stage-1
fixture's final validation (``test_dataloader = val_dataloader`` and
``test_evaluator = val_evaluator`` in both stage-1 configs, so it is what
``tools/test.py CONFIG CKPT`` prints).
"""
import json
import re

import pytest

SEG_KEYS = ('mIoU', 'mIoU_head', 'mIoU_body', 'mIoU_tail')
DET_KEYS = ('AP', 'APr', 'APc', 'APf')


def _last(log, pattern):
    found = re.findall(pattern, log)
    assert found, f'{pattern} not in:\n{log[-3000:]}'
    return float(found[-1])


def test_seg_sweep_reproduces_the_test_loop(seg_stage1, run_tool, tmp_path):
    out = tmp_path / 'seg.json'
    proc = run_tool('analysis/sweep_posthoc.py', seg_stage1['config'],
                    seg_stage1['checkpoint'], '--select-on', 'val', '--report',
                    'test', '--taus', '0', '0.5', '1', '--alphas', '0', '1',
                    '--out', str(out))
    log = proc.stdout
    res = json.loads(out.read_text())
    assert res['task'] == 'seg' and res['metric_keys'] == list(SEG_KEYS)
    # a stock FCN: tau-norm and the two prior rules (training pixel
    # counts), no TDE (conv_seg is not a causal-norm classifier)
    assert set(res['curves']['test']) == {'taunorm', 'nc_tau', 'logit_adjust'}
    assert 'CausalNormConvSeg' in res['skipped']['tde_alpha']
    for title in ('[val] tau-norm', '[test] N_c^tau rule',
                  'selected on val by mIoU'):
        assert title in log, title
    # the config's test set is its val set: said so, once
    assert log.count('WARNING: --select-on val and --report test are the '
                     'same images') == 1
    curves = res['curves']['test']
    assert curves['nc_tau']['values'] == [0.0, 0.5, 1.0]
    assert set(curves['taunorm']['metrics'][0]) >= set(SEG_KEYS)
    # tau = 0: both prior rules are the stock logits = tools/test.py
    for rule in ('nc_tau', 'logit_adjust'):
        row = curves[rule]['metrics'][0]
        for key in SEG_KEYS:
            printed = _last(seg_stage1['log'], re.escape(key) + r': ([\d.]+)')
            assert row[key] == pytest.approx(printed, abs=1e-6), (rule, key)
    assert res['selected']['nc_tau']['value'] in (0.0, 0.5, 1.0)
    assert set(res['selected']['nc_tau']['report']) == set(SEG_KEYS)
    assert re.search(
        r'feature extraction \(backbone \+ decode head, \d+ '
        r'images, once\).*\(18 settings', log), log[-2000:]


def test_det_sweep_reproduces_the_test_loop(det_stage1, run_tool, tmp_path):
    out = tmp_path / 'det.json'
    proc = run_tool('analysis/sweep_posthoc.py', det_stage1['config'],
                    det_stage1['checkpoint'], '--split', 'test', '--taus', '0',
                    '1', '--scales', '1', '--metric', 'APr', '--feat-dtype',
                    'float32', '--out', str(out))
    log = proc.stdout
    res = json.loads(out.read_text())
    assert res['task'] == 'det'
    assert res['metric_keys'] == [f'lvis/bbox_{k}' for k in DET_KEYS]
    curves = res['curves']['test']
    # a plain linear fc_cls: no TDE, no NCM (reported, not failed)
    assert set(curves) == {'model', 'taunorm', 'nc_tau', 'logit_adjust'}
    assert 'CausalNormLinear' in res['skipped']['tde_alpha']
    assert 'NCMLinear' in res['skipped']['ncm_scale']
    assert 'NCM softmax scale' not in log and '[test] logit adjustment' in log
    # the stock model and tau = 0 of both prior rules (background kept)
    # give exactly the box numbers of the runner's test loop
    for rule in ('model', 'nc_tau', 'logit_adjust'):
        row = curves[rule]['metrics'][0]
        for key in DET_KEYS:
            printed = _last(det_stage1['log'],
                            r'lvis/bbox_' + key + r': (-?[\d.]+)')
            assert row[f'lvis/bbox_{key}'] == printed, (rule, key)
    assert curves['taunorm']['values'] == [0.0, 1.0]
    assert res['timing']['num_settings'] == 7
