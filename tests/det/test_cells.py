"""Decoupling (LWS, cRT, NCM) and post-hoc prior box classifiers.

Formulas against hand-computed numbers, one test per bad input, and the
real tools on the shared stage-1 tiny Mask R-CNN (``det_stage1``): LWS and
cRT stage 2 (what trains changes, everything else bit-equal, the stage-1
folder untouched), post-hoc and NCM tests with LVIS APr / APc / APf.
"""
import glob
import math
import os
import os.path as osp
import re

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from torch.testing import assert_close

from lt_mm.core.decoupling import class_centroids
from lt_mm.det.decoupling import (CRTLinear, LWSLinear, NCMLinear,
                                  PosthocLinear, keep_background_log_probs)
from lt_mm.det.hooks import NCMCentroidHook, gt_box_dataloader_cfg
from lt_mm.engine.checkpoint import safe_torch_load
from tests.conftest import QUICKSTART, REPO, last_checkpoint

LVIS_KEYS = [
    f'lvis/{t}_{k}' for t in ('bbox', 'segm')
    for k in ('AP', 'APr', 'APc', 'APf')
]
NEW_QUICKSTART = [
    osp.join(QUICKSTART, f'digits_det_{m}.py')
    for m in ('lws', 'crt', 'ncm', 'posthoc_nc_tau', 'posthoc_logit_adjust')
]
NEW_LVIS = [
    osp.join(REPO, 'configs', 'lvis', f'mask-rcnn_r50_fpn_{m}_lvis-v1.py')
    for m in ('lws_9k', 'crt_9k', 'posthoc-la', 'posthoc-nctau', 'ncm')
]
LOG2 = math.log(2.0)


def _set(layer, weight, bias):
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


# ------------------------------------------------------------------ LWS
def test_lws_scales_foreground_weights_only_background_fixed():
    layer = _set(
        LWSLinear(2, 3), [[1., 0.], [0., 1.], [1., 1.]], [0.5, -1., 2.])
    x = torch.tensor([[2., 3.]])
    # init: scales 1 -> the stock linear layer
    assert_close(layer(x), torch.tensor([[2.5, 2., 7.]]))
    assert layer.lws.scales.shape == (2, )  # C foreground scales only
    with torch.no_grad():
        layer.lws.scales.copy_(torch.tensor([2., .5]))
    # W x = [2, 3, 5]; fg: f * Wx + b = [2*2 + .5, .5*3 - 1]; bg 5 + 2
    assert_close(layer(x), torch.tensor([[4.5, 0.5, 7.]]))
    layer.lws.scale_bias = True  # reference cls variant: f * (Wx + b)
    assert_close(layer(x), torch.tensor([[5., 1., 7.]]))
    assert layer.stage2_parameter_names() == ['lws.scales']
    assert set(layer.state_dict()) == {'weight', 'bias', 'lws.scales'}


# ------------------------------------------------------------------ cRT
def test_crt_reinitialises_a_stage1_classifier_only():
    stage1 = {'weight': torch.full((3, 4), 7.), 'bias': torch.full((3, ), 7.)}
    layer = CRTLinear(4, 3)
    layer.load_state_dict(dict(stage1), strict=True)  # no missing flag
    # fresh nn.Linear init U(-1/sqrt(4), 1/sqrt(4)) = U(-.5, .5), not 7
    assert layer.weight.abs().max() <= 0.5 and layer.bias.abs().max() <= .5
    assert int(layer.crt_retrained) == 0
    layer.train()
    layer(torch.ones(1, 4))  # a training step marks it re-trained
    assert int(layer.crt_retrained) == 1
    assert layer.stage2_parameter_names() == ['weight', 'bias']
    # a stage-2 checkpoint (flag 1) loads as is
    other = CRTLinear(4, 3)
    other.load_state_dict(
        dict(stage1, crt_retrained=torch.tensor(1)), strict=True)
    assert_close(other.weight, stage1['weight'])
    assert_close(other.bias, stage1['bias'])


# -------------------------------------------------------------- post hoc
def _posthoc(kind, tau, counts, **kw):
    layer = PosthocLinear(
        2, 3, posthoc=dict(type=kind, tau=tau, counts=counts), **kw)
    return _set(layer, [[1., 0.], [0., 1.], [0., 0.]], [0., 0., 0.]).eval()


def test_logit_adjust_keeps_the_background_probability():
    layer = _posthoc('logit_adjust', 1.0, [1, 4])
    logits = torch.tensor([[LOG2, 0., 0.], [0., 0., LOG2]])
    out = layer.apply_posthoc(logits).exp()
    expected = torch.tensor([
        # p = [2, 1, 1] / 4 -> P_bg = 1/4; fg p / N = [2/1, 1/4] -> [8/9, 1/9]
        [3 / 4 * 8 / 9, 3 / 4 * 1 / 9, 1 / 4],
        # p = [1, 1, 2] / 4 -> P_bg = 1/2; fg p / N = [1/1, 1/4] -> [4/5, 1/5]
        [1 / 2 * 4 / 5, 1 / 2 * 1 / 5, 1 / 2]
    ])
    assert_close(out, expected)
    # the background column is the stock log-probability
    assert_close(
        layer.apply_posthoc(logits)[:, -1],
        logits.log_softmax(1)[:, -1])
    # forward in eval = apply_posthoc(W x + b)  (W = [[1, 0], [0, 1], [0, 0]])
    assert_close(layer(torch.tensor([[LOG2, 0.]])).exp(), expected[:1])
    assert layer.posthoc.counts.dtype == torch.float64
    assert layer.posthoc.counts.tolist() == [1., 4.]


def test_nc_tau_on_two_rows_background_column_kept():
    layer = _posthoc('nc_tau', 0.5, [1, 4])
    x = torch.tensor([[2., 4.], [-1., 2.]])
    out = layer(x).exp()
    for row, (z0, z1) in enumerate(x.tolist()):
        # z / N ** .5 = [z0 / 1, z1 / 2]; P_bg = 1 / (e^z0 + e^z1 + 1)
        p_bg = 1 / (math.exp(z0) + math.exp(z1) + 1)
        s0, s1 = z0, z1 / 2
        q0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))
        expected = [(1 - p_bg) * q0, (1 - p_bg) * (1 - q0), p_bg]
        assert_close(out[row], torch.tensor(expected))


def test_posthoc_before_softmax_variant_and_train_mode():
    layer = _posthoc('logit_adjust', 1.0, [1, 4], keep_background_prob=False)
    x = torch.tensor([[LOG2, 0.], [1., 3.]])
    # z - log N on the foreground, background logit 0 untouched
    expected = torch.tensor([[LOG2, -math.log(4), 0.],
                             [1., 3. - math.log(4), 0.]])
    assert_close(layer(x), expected)
    layer.train()
    assert_close(layer(x), torch.tensor([[LOG2, 0., 0.], [1., 3., 0.]]))
    plain = PosthocLinear(2, 3).eval()  # no posthoc: the stock layer
    assert_close(
        plain(x), torch.nn.functional.linear(x, plain.weight, plain.bias))


def test_posthoc_counts_travel_in_the_checkpoint():
    layer = _posthoc('nc_tau', 1.0, [1, 4])
    stock = {'weight': torch.ones(3, 2), 'bias': torch.zeros(3)}
    layer.load_state_dict(stock, strict=True)  # stock mmdet keys load
    assert layer.posthoc.counts.tolist() == [1., 4.]
    assert 'posthoc.counts' in layer.state_dict()
    layer.load_state_dict(
        dict(stock, **{'posthoc.counts': torch.tensor([2., 3.])}))
    assert layer.posthoc.counts.tolist() == [2., 3.]


# ------------------------------------------------------------------- NCM
def test_ncm_with_kept_background_hand_computed():
    layer = NCMLinear(2, 3, feat_type='un', dist='l2', scale=1.0)
    _set(layer, [[0., 0.]] * 3, [0., 0., LOG2])  # P_bg = 2 / 4
    feats = torch.tensor([[1., 0.], [3., 0.], [0., 2.]])
    layer.set_centroids(feats, torch.tensor([0, 0, 1]))
    # means: c0 = [2, 0], c1 = [0, 2]; global mean [4/3, 2/3]
    assert_close(layer.centroids, torch.tensor([[2., 0.], [0., 2.]]))
    assert_close(layer.global_mean, torch.tensor([4 / 3, 2 / 3]))
    out = layer.eval()(torch.tensor([[1., 0.]])).exp()
    # -||x - c||^2 = [-1, -5] -> softmax [1, e^-4] / (1 + e^-4)
    q0 = 1 / (1 + math.exp(-4))
    assert_close(out, torch.tensor([[0.5 * q0, 0.5 * (1 - q0), 0.5]]))


def test_ncm_centroids_equal_the_core_rule():
    torch.manual_seed(0)
    feats, labels = torch.randn(40, 5), torch.arange(40) % 4
    layer = NCMLinear(5, 5, feat_type='cl2n')
    layer.set_centroids(feats, labels, chunk=7)  # chunked accumulation
    c, mu = class_centroids(feats, labels, 4, 'cl2n')
    assert_close(layer.centroids, c)
    assert_close(layer.global_mean, mu)
    assert layer.ready


def test_ncm_float32_1203_classes_finite():
    torch.manual_seed(0)
    c, d = 1203, 64
    layer = NCMLinear(d, c + 1).eval()
    layer.set_centroids(torch.randn(3 * c, d), torch.arange(3 * c) % c)
    x = torch.randn(6, d)
    logits = torch.zeros(6, c + 1)
    logits[:3, -1], logits[:3, :-1] = 80., -80.  # background certain
    logits[3:, -1] = -80.  # background impossible
    out = keep_background_log_probs(logits, layer.fg_scores(x))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert_close(out.logsumexp(1), torch.zeros(6), atol=1e-5, rtol=0)
    # the background log-probability is the stock one
    assert_close(out[:, -1], logits.log_softmax(1)[:, -1])
    out2 = layer(x).exp()  # the layer itself: rows sum to 1
    assert_close(out2.sum(1), torch.ones(6))


def test_ncm_state_dict_without_means_loads_and_refuses_to_predict():
    layer = NCMLinear(2, 3)
    layer.load_state_dict({'weight': torch.ones(3, 2), 'bias': torch.ones(3)})
    with pytest.raises(RuntimeError, match='NCMCentroidHook'):
        layer.eval()(torch.ones(1, 2))
    assert_close(layer.train()(torch.ones(1, 2)), torch.full((1, 3), 3.))


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize('cls',
                         [LWSLinear, CRTLinear, PosthocLinear, NCMLinear])
def test_box_classifier_needs_background_column(cls):
    with pytest.raises(ValueError, match='out_features=1'):
        cls(4, 1)


def test_posthoc_unknown_rule():
    with pytest.raises(ValueError, match='posthoc type'):
        PosthocLinear(2, 3, posthoc=dict(type='nc', counts=[1, 2]))


def test_posthoc_counts_with_background_refused():
    with pytest.raises(ValueError, match='num_classes=2'):
        PosthocLinear(2, 3, posthoc=dict(type='nc_tau', counts=[1, 2, 3]))


def test_posthoc_without_counts():
    with pytest.raises(ValueError, match='train_ann_file'):
        PosthocLinear(2, 3, posthoc=dict(type='logit_adjust'))


def test_posthoc_zero_count():
    with pytest.raises(ValueError, match='zero count'):
        PosthocLinear(2, 3, posthoc=dict(type='nc_tau', counts=[0, 2]))


def test_posthoc_negative_tau():
    with pytest.raises(ValueError, match='tau'):
        PosthocLinear(2, 3, posthoc=dict(type='nc_tau', tau=-1, counts=[1, 2]))


def test_posthoc_unknown_key():
    with pytest.raises(ValueError, match='unknown keys'):
        PosthocLinear(
            2, 3, posthoc=dict(type='nc_tau', counts=[1, 2], num_classes=2))


def test_ncm_bad_feat_type():
    with pytest.raises(ValueError, match='feat_type'):
        NCMLinear(2, 3, feat_type='l1')


def test_ncm_bad_dist():
    with pytest.raises(ValueError, match='dist'):
        NCMLinear(2, 3, dist='dot')


def test_ncm_non_positive_scale():
    with pytest.raises(ValueError, match='scale'):
        NCMLinear(2, 3, scale=0.0)


def test_ncm_class_without_training_box():
    with pytest.raises(ValueError, match=r'classes \[1\]'):
        NCMLinear(2, 3).set_centroids(torch.ones(2, 2), torch.tensor([0, 0]))


def test_ncm_features_of_wrong_width():
    with pytest.raises(ValueError, match='must be'):
        NCMLinear(2, 3).set_centroids(torch.ones(2, 5), torch.tensor([0, 1]))


def test_ncm_hook_bad_cap():
    with pytest.raises(ValueError, match='max_per_class'):
        NCMCentroidHook(max_per_class=0)


def test_keep_background_shapes():
    with pytest.raises(ValueError, match=r'\(N, C\)'):
        keep_background_log_probs(torch.zeros(2, 3), torch.zeros(2, 3))


def test_ncm_hook_cap_keeps_first_per_class():
    hook = NCMCentroidHook(max_per_class=2)
    labels = torch.tensor([1, 0, 1, 1, 0, 2, 1])
    # class 1 at 0, 2, 3, 6 -> 0, 2; class 0 at 1, 4; class 2 at 5
    assert hook._cap(labels).tolist() == [0, 1, 2, 4, 5]


def test_gt_box_loader_loads_boxes_before_resize(data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(osp.join(QUICKSTART, 'digits_det_ncm.py'))
    loader = gt_box_dataloader_cfg(cfg)
    types = [t['type'] for t in loader['dataset']['pipeline']]
    assert types[:3] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize']
    assert 'RandomFlip' not in types
    assert loader['sampler'] == dict(type='DefaultSampler', shuffle=False)
    assert 'batch_sampler' not in loader
    # the boxes follow the image: 64 x 64 canvases resized to 128 x 128
    from mmengine.runner import Runner
    cfg.test_dataloader.dataset.pipeline[1].scale = (128, 128)
    built = Runner.build_dataloader(gt_box_dataloader_cfg(cfg))
    sample = built.dataset[0]['data_samples']
    raw = [i['bbox'] for i in built.dataset.get_data_info(0)['instances']]
    assert sample.metainfo['scale_factor'] == (2.0, 2.0)
    assert_close(sample.gt_instances.bboxes.tensor,
                 2 * torch.tensor(raw, dtype=torch.float32))


# ---------------------------------------------------------------- configs
def _counts_for_stats_files(node, num_classes=1203):
    if isinstance(node, dict):
        if node.get('stats_file') is not None:
            node.pop('stats_file')
            node['counts'] = list(range(1, num_classes + 1))
        for v in node.values():
            _counts_for_stats_files(v, num_classes)
    elif isinstance(node, list):
        for v in node:
            _counts_for_stats_files(v, num_classes)


EXPECTED = {
    'lws': LWSLinear,
    'crt': CRTLinear,
    'ncm': NCMLinear,
    'posthoc': PosthocLinear
}


@pytest.mark.parametrize(
    'path',
    NEW_LVIS + NEW_QUICKSTART,
    ids=[osp.basename(p) for p in NEW_LVIS + NEW_QUICKSTART])
def test_new_configs_build(path, data_root, monkeypatch):
    from lt_mm.engine.counts import fill_class_counts
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(path)
    _counts_for_stats_files(cfg.model)
    if 'quickstart' in path:
        fill_class_counts(cfg)  # as tools/train.py and tools/test.py do
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    name = osp.basename(path)
    fc = model.roi_head.bbox_head.fc_cls
    assert fc.out_features == model.roi_head.bbox_head.num_classes + 1
    cls = [c for k, c in EXPECTED.items() if k in name]
    assert len(cls) == 1 and type(fc) is cls[0], (name, type(fc))
    hooks = [h['type'] for h in cfg.get('custom_hooks', [])]
    stage2 = '_lws' in name or '_crt' in name
    assert hooks == (['Stage2FreezeHook'] if stage2 else
                     ['NCMCentroidHook'] if '_ncm' in name else [])
    if stage2:
        assert cfg.train_dataloader.sampler.type == 'ClassBalancedSampler'
        assert cfg.model.roi_head.bbox_head.loss_cls.type == \
            'CrossEntropyLoss'
    if 'posthoc' in name:
        kind = 'nc_tau' if ('nc_tau' in name or 'nctau' in name) else \
            'logit_adjust'
        assert fc.posthoc.rule == kind


# ------------------------------------------------------- the real tools
def _state(path):
    return safe_torch_load(path)['state_dict']


def _snapshot(folder):
    return {
        p: (os.stat(p).st_size, os.stat(p).st_mtime_ns)
        for p in glob.glob(osp.join(folder, '**'), recursive=True)
    }


def _assert_lvis_metrics(log):
    for key in LVIS_KEYS:
        assert re.search(re.escape(key) + r': -?\d', log), \
            f'{key} not printed:\n{log[-4000:]}'


@pytest.mark.parametrize('method,trained', [
    ('lws', ['lws.scales']),
    ('crt', ['weight', 'bias']),
])
def test_stage2_from_det_stage1(method, trained, det_stage1, run_tool,
                                tmp_path):
    before = _snapshot(det_stage1['work_dir'])
    work = str(tmp_path / method)
    opts = [o for o in det_stage1['options'] if 'val_interval' not in o]
    proc = run_tool('train.py', osp.join(QUICKSTART,
                                         f'digits_det_{method}.py'),
                    '--work-dir', work, '--cfg-options', *opts,
                    'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
                    f'load_from={det_stage1["checkpoint"]}')
    prefix = 'roi_head.bbox_head.fc_cls.'
    assert (f'Stage2FreezeHook: training {len(trained)} tensors'
            in proc.stdout), proc.stdout[-4000:]
    s1 = _state(det_stage1['checkpoint'])
    s2 = _state(last_checkpoint(work))
    names = {prefix + n for n in trained}
    extra = {prefix + 'crt_retrained'} if method == 'crt' else names
    assert set(s2) == set(s1) | extra
    changed = sorted(k for k in s1 if not torch.equal(s1[k], s2[k]))
    # everything but the stage-2 parameters is bit-identical to stage 1
    assert changed == (sorted(names) if method == 'crt' else []), changed
    for n in names:  # what trains has moved (LWS: away from ones)
        ref = s1.get(n, torch.ones_like(s2[n]))
        assert not torch.equal(s2[n], ref), n
    if method == 'crt':
        assert int(s2[prefix + 'crt_retrained']) == 1
        assert 're-initialised for cRT' in proc.stdout
    assert _snapshot(det_stage1['work_dir']) == before


def _bbox_ap(log, key='AP'):
    found = re.findall(r'lvis/bbox_' + key + r': (-?[\d.]+)', log)
    assert found, log[-3000:]
    return float(found[-1])


def test_posthoc_ncm_tests_and_the_cached_sweep(det_stage1, run_tool,
                                                data_root, tmp_path,
                                                monkeypatch):
    logs = {}
    for name in ('posthoc_logit_adjust', 'ncm'):
        work = str(tmp_path / name)
        proc = run_tool('test.py', osp.join(QUICKSTART,
                                            f'digits_det_{name}.py'),
                        det_stage1['checkpoint'], '--work-dir', work)
        _assert_lvis_metrics(proc.stdout)
        logs[name] = proc.stdout
    assert 'NCMCentroidHook: class means of' in logs['ncm']
    state = _state(osp.join(work, 'ncm_centroids.pth'))
    prefix = 'roi_head.bbox_head.fc_cls.'
    assert int(state[prefix + 'ncm_ready']) == 1
    assert state[prefix + 'centroids'].shape == (8, 64)
    assert state[prefix + 'centroids'].abs().sum(1).min() > 0

    # the cached sweep reproduces tools/test.py's box numbers exactly:
    # 'model' = the stage-1 validation, logit_adjust tau=1 = the test above
    from mmdet.registry import METRICS
    from mmengine.runner import Runner, load_checkpoint

    from lt_mm.det.counts import resolve_det_counts
    from lt_mm.det.posthoc_sweep import cache_roi_outputs, evaluate_rule
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(det_stage1['config'])
    model = MODELS.build(cfg.model)
    load_checkpoint(model, det_stage1['checkpoint'], map_location='cpu')
    loader = Runner.build_dataloader(cfg.test_dataloader)
    metric = METRICS.build(dict(cfg.test_evaluator, metric='bbox'))
    metric.dataset_meta = loader.dataset.metainfo
    items = cache_roi_outputs(model, loader)
    counts = resolve_det_counts(
        train_ann_file=osp.join(data_root, 'det', 'annotations',
                                'lvis_v1_train.json'),
        num_classes=8)
    plain = evaluate_rule(model, items, metric, 'model')
    adjusted = evaluate_rule(model, items, metric, 'logit_adjust', 1.0, counts)
    for key in ('AP', 'APr', 'APc', 'APf'):
        assert plain[f'lvis/bbox_{key}'] == _bbox_ap(det_stage1['log'], key)
        assert adjusted[f'lvis/bbox_{key}'] == \
            _bbox_ap(logs['posthoc_logit_adjust'], key)
    # tau = 0 is the plain classifier again (background kept exactly)
    zero = evaluate_rule(model, items, metric, 'logit_adjust', 0.0, counts)
    assert zero['lvis/bbox_AP'] == plain['lvis/bbox_AP']
    tau = evaluate_rule(model, items, metric, 'taunorm', 0.0)
    assert 'lvis/bbox_APr' in tau


# ------------------------------------------------------- sweep score rules
def test_sweep_ncm_scale_equals_the_layer_with_that_scale():
    from lt_mm.det.posthoc_sweep import score_function
    torch.manual_seed(0)
    layer = NCMLinear(4, 4, scale=1.0)
    layer.set_centroids(torch.randn(12, 4), torch.arange(12) % 3)
    x = torch.randn(5, 4)
    other = NCMLinear(4, 4, scale=7.0)
    other.load_state_dict(layer.state_dict())
    assert_close(score_function(layer, 'ncm_scale', 7.0)(x), other.eval()(x))
    # logit adjustment through the sweep = PosthocLinear.adjust
    lin = torch.nn.Linear(4, 4)
    ref = PosthocLinear(
        4, 4, posthoc=dict(type='logit_adjust', tau=.5, counts=[1, 2, 3]))
    ref.load_state_dict(lin.state_dict())
    assert_close(
        score_function(lin, 'logit_adjust', .5, [1, 2, 3])(x),
        ref.eval()(x))


@pytest.mark.parametrize(
    'layer,rule,value',
    [
        (torch.nn.Linear(2, 3), 'tde_alpha', 1.0),
        (torch.nn.Linear(2, 3), 'ncm_scale', 1.0),
        (LWSLinear(2, 3), 'taunorm', 1.0),
        (torch.nn.Linear(2, 3), 'nc_tau', 1.0),  # no counts
        (torch.nn.Linear(2, 3), 'dot', 1.0),
    ])
def test_sweep_rule_needs_a_matching_classifier(layer, rule, value):
    from lt_mm.det.posthoc_sweep import score_function
    with pytest.raises(ValueError, match=rule):
        score_function(layer, rule, value)
