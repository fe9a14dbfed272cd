"""tools/analysis/det_tde_experiment.py: the alpha = 0 identity and the
ground-truth box ranking rows by hand, and a --fast end-to-end run (no
accuracy assertions)."""
import math
import os.path as osp

import torch

from lt_mm.core.causal_norm import causal_norm_logits
from lt_mm.det.classifiers import CausalNormLinear
from lt_mm.det.gt_box_stats import group_means
from tests.conftest import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    return load_script('tools', 'analysis', 'det_tde_experiment.py')


def _tiny_classifier() -> CausalNormLinear:
    # D = 4, K = 2 heads of 2 dims, C + 1 = 3 columns (background last),
    # tau = 2 so tau / K = 1, gamma = 0 (w_ck / ||w_ck||).
    fc = CausalNormLinear(
        4,
        3,
        num_heads=2,
        tau=2.0,
        gamma=0.0,
        alpha=1.5,
        background_exempt=True)
    with torch.no_grad():
        fc.weight.copy_(
            torch.tensor([[1., 0., 0., 2.], [0., 3., 4., 0.], [1., 1., 1.,
                                                               1.]]))
        fc.head_direction.copy_(torch.tensor([0., 1., 1., 0.]))
    return fc.eval()


def test_alpha0_tde_equals_plain_causal_norm_logits():
    tool = _tool()
    fc = _tiny_classifier()
    x = torch.tensor([[3., 4., 1., 0.]])
    # x_1 = (3, 4) / 5 = (0.6, 0.8), x_2 = (1, 0)
    # w_0: (1, 0), (0, 1); w_1: (0, 1), (1, 0); w_bg: (1, 1)/sqrt2 twice
    # y_0 = 0.6 + 0 = 0.6; y_1 = 0.8 + 1 = 1.8;
    # y_bg = (0.6 + 0.8) / sqrt2 + 1 / sqrt2 = 2.4 / sqrt2
    plain = torch.tensor([[0.6, 1.8, 2.4 / math.sqrt(2)]])
    torch.testing.assert_close(
        causal_norm_logits(x, fc.weight, 2, 2.0, 0.0), plain)
    with torch.no_grad():
        # the tool's 'plain' form (no background exemption) at alpha = 0
        with tool._Form(fc, 'plain', 0.0):
            torch.testing.assert_close(fc(x), plain)
        torch.testing.assert_close(tool._plain_logits(fc, x), plain)
        # exact Eq. 9 at alpha = 0: q = p, so the output is log softmax(y)
        with tool._Form(fc, 'exact', 0.0):
            torch.testing.assert_close(fc(x), torch.log_softmax(plain, 1))
        # alpha = 1 (the head direction matters): d_1 = (0, 1), d_2 =
        # (1, 0); cos_1 = 0.8, cos_2 = 1 -> x_1 - 0.8 d_1 = (0.6, 0),
        # x_2 - d_2 = (0, 0); TDE = (0.6, 0, 0.6 / sqrt2)
        with tool._Form(fc, 'plain', 1.0):
            torch.testing.assert_close(
                fc(x), torch.tensor([[0.6, 0.0, 0.6 / math.sqrt(2)]]))
    # the settings are restored on exit
    assert fc.alpha == 1.5 and fc.background_exempt
    stats = tool.head_stats(fc, x)
    # |d| = sqrt2; mean cos = (0.8 + 1) / 2 = 0.9; fg-bg = 1.8 - 2.4/sqrt2
    assert math.isclose(stats['|d|'], math.sqrt(2), rel_tol=1e-6)
    assert math.isclose(stats['cos(x,d)'], 0.9, rel_tol=1e-6)
    assert math.isclose(
        stats['fg-bg logit'], 1.8 - 2.4 / math.sqrt(2), rel_tol=1e-5)


def test_ranking_rows_by_hand():
    tool = _tool()
    fc = _tiny_classifier().train()
    # mean over the 2 heads of cos(x_k, d_k), d_1 = (0, 1), d_2 = (1, 0):
    # box 0 (3, 4 | 1, 0): (0.8 + 1) / 2 = 0.9; box 1 (1, 0 | 0, 1): 0;
    # box 2 (0, 1 | 1, 1): (1 + 1 / sqrt2) / 2 = 0.85
    feats = torch.tensor([[3., 4., 1., 0.], [1., 0., 0., 1.], [0., 1., 1.,
                                                               1.]])
    labels = torch.tensor([0, 1, 0])
    rows = tool.ranking_rows(
        fc, feats, labels, ['f', 'r'], [0.0, 1.0], shuffles=3)
    # class 0's boxes lie nearer the head direction than class 1's
    assert rows['cos(x,d)'] == {'AUC f': 1.0, 'AUC r': 0.0}
    assert set(rows) == {'a=0', 'a=1', 'a=1 shuffled', 'cos(x,d)'}
    assert fc.training  # the mode is restored
    # alpha = 0: Eq. 9 is the softmax of the causal-norm logits
    plain = torch.log_softmax(tool._plain_logits(fc.eval(), feats), 1)
    assert rows['a=0'] == group_means(
        tool._class_metrics(plain[:, :2], labels), ['f', 'r'])
    # a softmax classifier gives one row
    lin = torch.nn.Linear(4, 3)
    rows = tool.ranking_rows(lin, feats, labels, ['f', 'r'], [1.0])
    assert list(rows) == ['softmax']


def test_fast_run_end_to_end(tmp_path, monkeypatch):
    # main() points LT_MM_DATA_ROOT at its own data; restore it afterwards
    monkeypatch.setenv('LT_MM_DATA_ROOT', str(tmp_path / 'data'))
    tool = _tool()
    per_seed = tool.main([
        '--fast', '--seeds', '0', '--work-dir',
        str(tmp_path / 'w'), '--gt-boxes'
    ])
    res = per_seed[0]
    # the ranking of the val ground-truth boxes, both models
    assert list(res['gt base']) == ['softmax']
    assert {'a=0', 'a=1.5', 'a=1.5 shuffled', 'cos(x,d)'} <= set(res['gt tde'])
    for row in list(res['gt base'].values()) + list(res['gt tde'].values()):
        assert row and all(0.0 <= v <= 1.0 for v in row.values())
    assert 'AUC f' in (tmp_path / 'w' / 'table.md').read_text()
    for key in ('base thr=1e-4', 'base thr=1e-5', 'tde a=0 exact',
                'tde a=1.5 exact', 'tde a=1.5 eps', 'tde a=0 plain',
                'tde a=1.5 plain'):
        assert key in res, key
        assert 0.0 <= res[key]['lvis/bbox_AP'] <= 1.0
        assert res[key]['dets'] >= 0
    # alpha = 0: Eq. 9 with q = p is the plain softmax, the same detections
    assert res['tde a=0 exact']['fg>1e-5'] == res['tde a=0 plain']['fg>1e-5']
    assert abs(res['tde a=0 exact']['lvis/bbox_AP'] -
               res['tde a=0 plain']['lvis/bbox_AP']) < 1e-3
    assert osp.isfile(tmp_path / 'w' / 'table.md')
    # a rerun reuses the cached results (no training, no test)
    again = tool.main([
        '--fast', '--seeds', '0', '--work-dir',
        str(tmp_path / 'w'), '--gt-boxes'
    ])
    assert again[0]['tde a=1.5 plain'] == res['tde a=1.5 plain']
    assert again[0]['gt tde'] == res['gt tde']
