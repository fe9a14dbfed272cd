"""The segmentation cells of issue #11 item 5: cosine ``conv_seg``, cRT,
NCM (per-pixel class means) and the post-hoc N_c^tau / logit-adjustment
option of ``LTDecodeHead`` -- formulas against hand-computed numbers, bad
inputs, and each method through the real Runner (tools/train.py,
tools/test.py) from the session stage-1 checkpoint.
"""
import glob
import hashlib
import math
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from torch.testing import assert_close

from lt_mm.core.decoupling import (centroids_from_sums, class_centroids,
                                   class_feature_sums, cosine_logits,
                                   reinit_classifier_from_stage1)
from lt_mm.engine.checkpoint import safe_torch_load
from lt_mm.seg import CosineConvSeg, CRTConvSeg, NCMConvSeg

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICK = osp.join(REPO, 'configs', 'quickstart')
ADE = osp.join(REPO, 'configs', 'ade20k')
NEW_CONFIGS = [
    osp.join(QUICK, f'digits_seg_{n}.py')
    for n in ('cosine', 'crt', 'ncm', 'posthoc_nc_tau', 'posthoc_logit_adjust')
] + [
    osp.join(ADE, f'fcn_r50_{n}.py')
    for n in ('cosine', 'crt', 'ncm', 'posthoc-nctau', 'posthoc-la')
]
GROUP_KEYS = ('mIoU_head', 'mIoU_body', 'mIoU_tail')
TINY = [
    'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
    'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1'
]


def _fcn(**extra):
    """A 2-class FCNHead without convs: conv_seg sees the input map."""
    cfg = dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        in_channels=2,
        channels=2,
        num_convs=0,
        concat_input=False,
        num_classes=2)
    cfg.update(extra)
    return MODELS.build(cfg)


def _pixels(*vectors):
    """(1, D, 1, P) map whose pixel p is vectors[p]."""
    return torch.tensor(vectors).t().reshape(1, len(vectors[0]), 1, -1)


# ------------------------------------------------------------- cosine
def test_cosine_conv_seg_hand_computed():
    # w0 = [3, 4] -> [0.6, 0.8]; w1 = [1, 0]; s = 2
    # pixel [1, 0]: cos = [0.6, 1.0] -> [1.2, 2.0]
    # pixel [0, 2]: cos = [0.8, 0.0] -> [1.6, 0.0]
    clf = CosineConvSeg(2, 2, scale=2.0)
    assert clf.bias is None and clf.weight.shape == (2, 2, 1, 1)
    assert set(clf.state_dict()) == {'weight'}
    with torch.no_grad():
        clf.weight.copy_(
            torch.tensor([[3.0, 4.0], [1.0, 0.0]]).reshape(2, 2, 1, 1))
    x = _pixels([1.0, 0.0], [0.0, 2.0])
    expected = torch.tensor([[1.2, 1.6], [2.0, 0.0]]).reshape(1, 2, 1, 2)
    assert_close(clf(x), expected)
    clf.eval()
    with torch.no_grad():
        assert_close(clf(x), expected)
    assert_close(cosine_logits(x, clf.weight, 2.0), expected)
    learn = CosineConvSeg(2, 2, scale=3.0, learn_scale=True)
    assert {n for n, _ in learn.named_parameters()} == {'weight', 'scale'}
    assert clf.stage2_parameter_names() == []


def test_cosine_bad_input():
    with pytest.raises(ValueError, match='scale'):
        CosineConvSeg(2, 2, scale=0.0)
    with pytest.raises(ValueError, match=r'\(N, 2, H, W\)'):
        CosineConvSeg(2, 2)(torch.ones(1, 3, 2, 2))


# --------------------------------------------------------------- cRT
def test_crt_reinit_on_stage1_keeps_stage2():
    torch.manual_seed(0)
    stage1 = {'weight': torch.ones(3, 2, 1, 1), 'bias': torch.full((3, ), 7.0)}
    clf = CRTConvSeg(2, 3)
    clf.load_state_dict(dict(stage1))  # strict: no missing key
    assert not torch.equal(clf.weight, stage1['weight'])
    assert not torch.equal(clf.bias, stage1['bias'])
    assert int(clf.crt_retrained) == 0
    clf.train()
    clf(torch.rand(1, 2, 2, 2))  # a training forward marks it re-trained
    assert int(clf.crt_retrained) == 1
    trained = {k: v.clone() for k, v in clf.state_dict().items()}
    again = CRTConvSeg(2, 3)
    again.load_state_dict(trained)  # a stage-2 checkpoint loads as is
    for k, v in trained.items():
        assert torch.equal(again.state_dict()[k], v), k
    assert clf.stage2_parameter_names() == ['weight', 'bias']
    # through the head: the model-level prefix, the head declares its names
    head = _fcn(classifier=dict(type='CRTConvSeg'))
    state = {k: v.clone() for k, v in head.state_dict().items()}
    del state['conv_seg.crt_retrained']
    state['conv_seg.weight'].fill_(1.0)
    head.load_state_dict(state)
    assert not torch.equal(head.conv_seg.weight, state['conv_seg.weight'])
    assert head.stage2_parameter_names() == [
        'conv_seg.weight', 'conv_seg.bias'
    ]


def test_core_reinit_classifier_from_stage1():
    lin = torch.nn.Linear(2, 2)
    sd = {'head.fc.weight': torch.zeros(2, 2), 'head.fc.bias': torch.ones(2)}
    assert reinit_classifier_from_stage1(lin, sd, 'head.fc.', 'head.flag')
    assert torch.equal(sd['head.fc.weight'], lin.weight.detach())
    assert int(sd['head.flag']) == 0
    sd = {'w.weight': torch.zeros(2, 2), 'flag': torch.tensor(1)}
    assert not reinit_classifier_from_stage1(lin, sd, 'w.', 'flag')
    assert torch.equal(sd['w.weight'], torch.zeros(2, 2))
    with pytest.raises(ValueError, match='nn.Linear or nn.Conv'):
        reinit_classifier_from_stage1(torch.nn.ReLU(), {}, '', 'flag')


# --------------------------------------------------------------- NCM
def _ncm_data():
    # 2x2 map, D = 2: p00 = [1, 0] (class 0), p01 = [3, 0] (class 0),
    # p10 = [0, 2] (class 1), p11 = [5, 5] (ignored, 255)
    feats = torch.tensor([[[1.0, 3.0], [0.0, 5.0]], [[0.0, 0.0], [2.0,
                                                                  5.0]]])[None]
    labels = torch.tensor([[[0, 0], [1, 255]]])
    return feats, labels


def test_ncm_per_pixel_means_hand_computed():
    feats, labels = _ncm_data()
    clf = NCMConvSeg(2, 2, feat_type='un', dist='l2').eval()
    clf.set_centroids(feats, labels, ignore_index=255)
    # un: c0 = ([1, 0] + [3, 0]) / 2 = [2, 0]; c1 = [0, 2]
    # global mean over the 3 labelled pixels: [4/3, 2/3]
    assert_close(clf.centroids, torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    assert_close(clf.global_mean, torch.tensor([4 / 3, 2 / 3]))
    # pixel [2, 1]: -||x - c0||^2 = -1, -||x - c1||^2 = -(4 + 1) = -5
    x = _pixels([2.0, 1.0])
    assert_close(clf(x), torch.tensor([-1.0, -5.0]).reshape(1, 2, 1, 1))
    # l2n: [1, 0], [1, 0] -> c0 = [1, 0]; [0, 2] -> c1 = [0, 1]
    l2n = NCMConvSeg(2, 2, feat_type='l2n', dist='cos').eval()
    l2n.set_centroids(feats, labels)
    assert_close(l2n.centroids, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # cos([2, 1], [1, 0]) = 2 / sqrt(5), cos([2, 1], [0, 1]) = 1 / sqrt(5)
    s5 = math.sqrt(5.0)
    assert_close(l2n(x), torch.tensor([2 / s5, 1 / s5]).reshape(1, 2, 1, 1))
    # training mode: the stock conv (stage-1 weights load and train)
    l2n.train()
    assert_close(l2n(x), l2n.logits(x))


def test_ncm_class_without_pixels_is_never_predicted():
    # documented behaviour (missing='warn'): class 1 has no pixel -> no mean,
    # its score is one below the lowest other score at every pixel
    feats, labels = _ncm_data()
    clf = NCMConvSeg(2, 2, feat_type='un').eval()
    assert clf.set_centroids(feats, torch.zeros_like(labels)) == [1]
    assert clf.class_present.tolist() == [True, False]
    # all 4 pixels are class 0: c0 = ([1,0] + [3,0] + [0,2] + [5,5]) / 4
    #                              = [9/4, 7/4]
    assert_close(clf.centroids[0], torch.tensor([2.25, 1.75]))
    # pixel [2, 1]: -||[-0.25, -0.75]||^2 = -(0.0625 + 0.5625) = -0.625
    out = clf(_pixels([2.0, 1.0]))
    assert_close(out.flatten(), torch.tensor([-0.625, -1.625]))


def test_ncm_streaming_equals_core_class_centroids():
    # cl2n over two "images" accumulated = class_centroids on all pixels
    torch.manual_seed(0)
    feats = torch.randn(2, 4, 3, 3)
    labels = torch.randint(0, 3, (2, 3, 3))
    labels[0, 0, 0] = 255
    ref_c, ref_mu = class_centroids(feats, labels, 3, 'cl2n', ignore_index=255)
    raw = [
        class_feature_sums(feats[i:i + 1], labels[i:i + 1], 3, 'un', None, 255)
        for i in range(2)
    ]
    mu = (raw[0][0] + raw[1][0]).sum(0) / (raw[0][1] + raw[1][1]).sum()
    assert_close(mu.float(), ref_mu)
    parts = [
        class_feature_sums(feats[i:i + 1], labels[i:i + 1], 3, 'cl2n', mu, 255)
        for i in range(2)
    ]
    c = centroids_from_sums(parts[0][0] + parts[1][0],
                            parts[0][1] + parts[1][1])
    assert_close(c, ref_c)
    clf = NCMConvSeg(4, 3)
    clf.set_centroids(feats, labels)
    assert_close(clf.centroids, ref_c)
    assert_close(clf.global_mean, ref_mu)


def test_ncm_bad_input_and_buffers_in_checkpoint():
    clf = NCMConvSeg(2, 2).eval()
    with pytest.raises(RuntimeError, match='NCMCentroidHook'):
        clf(torch.ones(1, 2, 1, 1))
    feats, labels = _ncm_data()
    strict = NCMConvSeg(2, 2, missing='error')
    with pytest.raises(ValueError, match=r'classes \[1\] have no sample'):
        strict.set_centroids(feats, torch.zeros_like(labels))
    assert not strict.ready
    with pytest.raises(ValueError, match='missing'):
        NCMConvSeg(2, 2, missing='ignore')
    with pytest.raises(ValueError, match='feat_type'):
        NCMConvSeg(2, 2, feat_type='l1')
    with pytest.raises(ValueError, match='labels must lie'):
        clf.set_centroids(feats, torch.full_like(labels, 2))
    # the means travel in the checkpoint; a stage-1 state dict (only the
    # stock conv) loads strictly and leaves the model "not ready"
    clf.set_centroids(feats, labels)
    fresh = NCMConvSeg(2, 2).eval()
    fresh.load_state_dict(clf.state_dict())
    assert fresh.ready and torch.equal(fresh.centroids, clf.centroids)
    stage1 = NCMConvSeg(2, 2)
    stage1.load_state_dict({
        'weight': clf.weight.detach(),
        'bias': clf.bias.detach()
    })
    assert not stage1.ready


# ------------------------------------------------------------ posthoc
def test_posthoc_hand_computed_per_pixel():
    # counts [100, 1]; logits z0 = [2, -1], z1 = [1, 1] on a (1, 2, 1, 2) map
    z = torch.tensor([[2.0, -1.0], [1.0, 1.0]]).reshape(1, 2, 1, 2)
    head = _fcn(posthoc=dict(type='nc_tau', tau=0.5, counts=[100, 1]))
    assert head.posthoc.counts.tolist() == [100.0, 1.0]
    # nc_tau: z_c / N_c ** 0.5 -> class 0 divided by 10
    assert_close(
        head.apply_posthoc(z),
        torch.tensor([[0.2, -0.1], [1.0, 1.0]]).reshape(1, 2, 1, 2))
    # logit adjustment: z_c - tau * log N_c -> class 0 shifted by ln 100
    la = head.apply_posthoc(z, kind='logit_adjust', tau=1.0)
    ln100 = math.log(100.0)
    assert_close(
        la,
        torch.tensor([[2.0 - ln100, -1.0 - ln100], [1.0,
                                                    1.0]]).reshape(1, 2, 1, 2))
    # through cls_seg: conv_seg = identity, bias 0 -> logits = features;
    # adjusted in eval mode only
    with torch.no_grad():
        head.conv_seg.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
        head.conv_seg.bias.zero_()
    head.eval()
    assert_close(head.cls_seg(z), head.apply_posthoc(z))
    assert_close(head([z]), head.apply_posthoc(z))
    head.train()
    head.dropout = None
    assert_close(head.cls_seg(z), z)


def test_posthoc_counts_travel_and_stage1_loads():
    head = _fcn(posthoc=dict(type='logit_adjust', tau=1.0, counts=[3, 1]))
    state = head.state_dict()
    assert state['posthoc.counts'].tolist() == [3.0, 1.0]
    other = _fcn(posthoc=dict(type='logit_adjust', tau=1.0, counts=[9, 9]))
    other.load_state_dict(state)  # the checkpoint's counts win
    assert other.posthoc.counts.tolist() == [3.0, 1.0]
    stage1 = {k: v for k, v in state.items() if k != 'posthoc.counts'}
    other = _fcn(posthoc=dict(type='logit_adjust', tau=1.0, counts=[9, 9]))
    other.load_state_dict(stage1)  # strict: no missing key
    assert other.posthoc.counts.tolist() == [9.0, 9.0]
    # the earlier buffer name loads
    old = dict(stage1, prior_counts=torch.tensor([5.0, 2.0]))
    other.load_state_dict(old)
    assert other.posthoc.counts.tolist() == [5.0, 2.0]
    # with a long-tail classifier too
    both = _fcn(
        classifier=dict(type='TauNormConvSeg'),
        posthoc=dict(type='nc_tau', tau=1.0, counts=[2, 1]))
    assert 'posthoc.counts' in both.state_dict()


def test_posthoc_wrong_counts_length():
    with pytest.raises(ValueError, match='posthoc'):
        _fcn(posthoc=dict(type='nc_tau', tau=1.0, counts=[1, 2, 3]))


def test_posthoc_unknown_type():
    with pytest.raises(ValueError, match='posthoc type'):
        _fcn(posthoc=dict(type='nc-tau', tau=1.0, counts=[1, 2]))


def test_posthoc_unknown_key_and_train_ann_file():
    with pytest.raises(ValueError, match='unknown keys'):
        _fcn(posthoc=dict(type='nc_tau', tau=1.0, count=[1, 2]))
    with pytest.raises(ValueError, match='tools/class_stats.py'):
        _fcn(posthoc=dict(type='nc_tau', train_ann_file='x.txt'))


def test_posthoc_negative_tau_and_zero_count():
    with pytest.raises(ValueError, match='tau'):
        _fcn(posthoc=dict(type='nc_tau', tau=-1.0, counts=[1, 2]))
    with pytest.raises(ValueError, match='posthoc'):
        _fcn(posthoc=dict(type='logit_adjust', counts=[0, 2]))


def test_posthoc_pixel_unit_checked(tmp_path):
    # an image-count statistics file is refused (unit 'pixels' expected)
    import json
    path = tmp_path / 'stats.json'
    path.write_text(
        json.dumps(
            dict(
                format='lt_mm.class_stats/v1',
                unit='images',
                classes=['a', 'b'],
                counts=[5, 1])))
    with pytest.raises(ValueError, match='pixels'):
        _fcn(posthoc=dict(type='nc_tau', stats_file=str(path)))


# ------------------------------------------------------------ configs
def test_every_new_config_builds(seg_stats, data_root, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    kinds = {}
    for path in NEW_CONFIGS:
        cfg = Config.fromfile(path)
        model = MODELS.build(cfg.model)
        head = model.decode_head
        rule = head.posthoc.rule if head.posthoc is not None else None
        kinds[osp.basename(path)] = (type(head.conv_seg).__name__, rule)
    assert kinds['digits_seg_cosine.py'][0] == 'CosineConvSeg'
    assert kinds['digits_seg_crt.py'][0] == 'CRTConvSeg'
    assert kinds['digits_seg_ncm.py'][0] == 'NCMConvSeg'
    assert kinds['digits_seg_posthoc_nc_tau.py'] == ('Conv2d', 'nc_tau')
    assert kinds['digits_seg_posthoc_logit_adjust.py'][1] == 'logit_adjust'
    assert kinds['fcn_r50_crt.py'][0] == 'CRTConvSeg'
    assert kinds['fcn_r50_posthoc-nctau.py'] == ('Conv2d', 'nc_tau')
    assert kinds['fcn_r50_posthoc-la.py'][1] == 'logit_adjust'
    assert kinds['fcn_r50_cosine.py'][0] == 'CosineConvSeg'
    assert kinds['fcn_r50_ncm.py'][0] == 'NCMConvSeg'


# ---------------------------------------------------- through the Runner
def _ckpt(work_dir):
    marker = osp.join(work_dir, 'last_checkpoint')
    with open(marker) as f:
        return f.read().strip()


def _folder_digest(folder):
    out = {}
    for path in sorted(glob.glob(osp.join(folder, '**'), recursive=True)):
        if osp.isfile(path):
            with open(path, 'rb') as f:
                out[osp.relpath(path,
                                folder)] = hashlib.sha1(f.read()).hexdigest()
    return out


def _assert_groups(log):
    for key in ('mIoU', ) + GROUP_KEYS:
        assert f'{key}: ' in log, f'{key} not printed:\n{log[-3000:]}'


def test_crt_stage2_through_runner(seg_stage1, run_tool, tmp_path):
    before = _folder_digest(seg_stage1['work_dir'])
    work = str(tmp_path / 'crt')
    proc = run_tool('train.py', osp.join(QUICK, 'digits_seg_crt.py'),
                    '--work-dir', work, '--cfg-options', *TINY,
                    f'load_from={seg_stage1["checkpoint"]}')
    assert 'Stage2FreezeHook' in proc.stdout
    assert 'conv_seg is re-initialised for cRT' in proc.stdout
    _assert_groups(proc.stdout)
    s1 = safe_torch_load(seg_stage1['checkpoint'])['state_dict']
    s2 = safe_torch_load(_ckpt(work))['state_dict']
    trained = ('decode_head.conv_seg.weight', 'decode_head.conv_seg.bias')
    for k, v in s1.items():
        if k in trained:
            assert not torch.equal(v, s2[k]), f'{k} kept its stage-1 value'
        else:
            assert torch.equal(v, s2[k]), f'{k} changed in stage 2'
    assert sorted(set(s2) - set(s1)) == ['decode_head.conv_seg.crt_retrained']
    assert int(s2['decode_head.conv_seg.crt_retrained']) == 1
    assert _folder_digest(seg_stage1['work_dir']) == before
    # the stage-2 checkpoint loads its re-trained conv (no re-init)
    from mmengine.runner.checkpoint import load_checkpoint
    cfg = Config.fromfile(osp.join(QUICK, 'digits_seg_crt.py'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, _ckpt(work), map_location='cpu')
    assert torch.equal(model.decode_head.conv_seg.weight, s2[trained[0]])


def test_ncm_and_posthoc_test_runs(seg_stage1, run_tool, tmp_path):
    work = str(tmp_path / 'ncm')
    proc = run_tool('test.py', osp.join(QUICK, 'digits_seg_ncm.py'),
                    seg_stage1['checkpoint'], '--work-dir', work)
    assert 'per-pixel class means of' in proc.stdout
    _assert_groups(proc.stdout)
    saved = safe_torch_load(osp.join(work, 'ncm_centroids.pth'))['state_dict']
    assert int(saved['decode_head.conv_seg.ncm_ready']) == 1
    assert saved['decode_head.conv_seg.centroids'].shape == (10, 32)
    assert saved['decode_head.conv_seg.centroids'].abs().sum() > 0

    proc = run_tool('test.py', osp.join(QUICK, 'digits_seg_posthoc_nc_tau.py'),
                    seg_stage1['checkpoint'], '--work-dir',
                    str(tmp_path / 'nctau'))
    _assert_groups(proc.stdout)
    assert 'missing keys' not in proc.stdout


def test_cosine_stage1_two_iterations(seg_stats, run_tool, tmp_path):
    work = str(tmp_path / 'cosine')
    proc = run_tool('train.py', osp.join(QUICK, 'digits_seg_cosine.py'),
                    '--work-dir', work, '--cfg-options', *TINY)
    _assert_groups(proc.stdout)
    state = safe_torch_load(_ckpt(work))['state_dict']
    assert state['decode_head.conv_seg.weight'].shape == (10, 32, 1, 1)
    assert 'decode_head.conv_seg.bias' not in state
    assert os.path.isfile(osp.join(work, 'iter_2.pth'))


def test_posthoc_sweep_on_cached_features(seg_stage1, data_root, monkeypatch,
                                          tmp_path):
    # lt_mm.seg.posthoc_sweep: features once, then every setting
    from lt_mm.engine.runner_utils import build_runner
    from lt_mm.seg.posthoc_sweep import extract_split, sweep
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(osp.join(QUICK, 'digits_seg_posthoc_nc_tau.py'))
    cfg.work_dir = str(tmp_path / 'sweep')
    cfg.load_from = seg_stage1['checkpoint']
    cfg.experiment_name = 'sweep_cells'
    runner = build_runner(cfg)
    runner.load_or_resume()
    loader = runner.build_dataloader(cfg.val_dataloader)
    metric = runner.build_evaluator(cfg.val_evaluator).metrics[0]
    metric.dataset_meta = loader.dataset.metainfo
    cached = extract_split(runner.model, loader, max_images=3)
    assert len(cached) == 3 and cached.feats[0].shape[1] == 32
    curves = sweep(runner.model.decode_head, cached, metric,
                   dict(nc_tau=[0.0, 0.5], logit_adjust=[0.0], tau_norm=[0.0]))
    nc0, la0 = curves['nc_tau'][0][1], curves['logit_adjust'][0][1]
    assert nc0 == la0  # tau = 0: both are the stage-1 logits
    for key in ('mIoU', ) + GROUP_KEYS:
        assert key in curves['tau_norm'][0][1]
