"""Each segmentation method through tools/train.py and tools/test.py on the
tiny ADE20K-layout data (stage 2 from the session stage-1 checkpoint, or one
tiny stage), plus the acceptance run of configs/ade20k/fcn_r50_disalign.py.
"""
import glob
import os.path as osp

import pytest
import torch

from lt_mm.engine.checkpoint import safe_torch_load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICK = osp.join(REPO, 'configs', 'quickstart')
GROUP_KEYS = ('mIoU_head', 'mIoU_body', 'mIoU_tail', 'mAcc_head', 'mAcc_body',
              'mAcc_tail')
# two iterations, validation (and a checkpoint) at the end
TINY = [
    'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
    'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
    'param_scheduler.0.end=2'
]


def _ckpt(work_dir):
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            return f.read().strip()
    return sorted(glob.glob(osp.join(work_dir, '*.pth')))[-1]


def _assert_metrics(log):
    for key in ('aAcc', 'mIoU', 'mAcc') + GROUP_KEYS:
        assert f'{key}: ' in log, f'{key} not printed:\n{log[-3000:]}'
    assert 'per group results' in log


def _state(path):
    return safe_torch_load(path)['state_dict']


def _frozen_unchanged(stage1, stage2, trained_prefix):
    s1, s2 = _state(stage1), _state(stage2)
    for k, v in s1.items():
        assert torch.equal(v, s2[k]), f'{k} changed in stage 2'
    new = [k for k in s2 if k not in s1]
    assert new and all(k.startswith(trained_prefix) for k in new), new
    return s2


def test_disalign_stage2(seg_stage1, run_tool, tmp_path):
    work = str(tmp_path / 'disalign')
    cfg = osp.join(QUICK, 'digits_seg_disalign.py')
    proc = run_tool('train.py', cfg, '--work-dir', work, '--cfg-options',
                    *TINY, f'load_from={seg_stage1["checkpoint"]}')
    assert 'Stage2FreezeHook' in proc.stdout
    _assert_metrics(proc.stdout)
    ckpt = _ckpt(work)
    # every stage-1 tensor (BN statistics included) is unchanged
    s2 = _frozen_unchanged(seg_stage1['checkpoint'], ckpt,
                           'decode_head.conv_seg.calibration.')
    assert not torch.equal(s2['decode_head.conv_seg.calibration.logit_bias'],
                           torch.zeros(10))


def test_lws_stage2(seg_stage1, run_tool, tmp_path):
    work = str(tmp_path / 'lws')
    proc = run_tool('train.py', osp.join(QUICK, 'digits_seg_lws.py'),
                    '--work-dir', work, '--cfg-options', *TINY,
                    f'load_from={seg_stage1["checkpoint"]}')
    assert 'Stage2FreezeHook' in proc.stdout
    _assert_metrics(proc.stdout)
    s2 = _frozen_unchanged(seg_stage1['checkpoint'], _ckpt(work),
                           'decode_head.conv_seg.lws.')
    assert not torch.equal(s2['decode_head.conv_seg.lws.scales'],
                           torch.ones(10))


def test_stage2_without_load_from_fails_before_training(
        seg_stats, data_root, tmp_path, monkeypatch):
    # in-process Runner (no subprocess): the freeze hook refuses to start
    from mmengine.config import Config

    from lt_mm.engine.runner_utils import build_runner
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = Config.fromfile(osp.join(QUICK, 'digits_seg_disalign.py'))
    cfg.work_dir = str(tmp_path / 'w')
    cfg.train_cfg.max_iters = 2
    cfg.experiment_name = f'no_load_from_{tmp_path.name}'
    runner = build_runner(cfg)
    with pytest.raises(ValueError, match='load_from is not set'):
        runner.train()
    assert runner.iter == 0


def test_tde_and_cdt_one_stage(seg_stats, run_tool, tmp_path):
    work = str(tmp_path / 'tde')
    proc = run_tool('train.py', osp.join(QUICK, 'digits_seg_tde.py'),
                    '--work-dir', work, '--cfg-options', *TINY)
    _assert_metrics(proc.stdout)
    state = _state(_ckpt(work))
    assert state['decode_head.conv_seg.weight'].shape == (10, 32, 1, 1)
    direction = state['decode_head.conv_seg.head_direction']
    assert direction.shape == (32, ) and direction.abs().sum() > 0
    assert 'decode_head.conv_seg.bias' not in state

    work = str(tmp_path / 'cdt')
    proc = run_tool('train.py', osp.join(QUICK, 'digits_seg_cdt.py'),
                    '--work-dir', work, '--cfg-options', *TINY)
    assert 'loss_ce' in proc.stdout
    _assert_metrics(proc.stdout)


def test_taunorm_post_hoc(seg_stage1, run_tool, tmp_path):
    proc = run_tool('test.py', osp.join(QUICK, 'digits_seg_taunorm.py'),
                    seg_stage1['checkpoint'], '--work-dir',
                    str(tmp_path / 'taunorm'))
    _assert_metrics(proc.stdout)
    assert 'missing keys' not in proc.stdout


def test_fcn_r50_disalign_acceptance(data_root, run_tool, tmp_path):
    """configs/ade20k/fcn_r50_disalign.py itself (150 ADE20K classes, GRW on
    DisAlign Table 16 frequencies, built-in head/body/tail split) on the tiny
    data with a tiny schedule.

    Stage 1 must be an FCN-R50-D8 with the stock parameter names; instead of
    downloading the 160k checkpoint, the test saves a randomly initialised
    stock FCN-R50 (built from the stock mmseg config) as the stage-1
    checkpoint, {'state_dict': ...}. The tiny data use ADE20K's layout
    (labels 1..10 -> the first 10 ADE20K classes).
    """
    import mmseg
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    stock = Config.fromfile(
        osp.join(
            osp.dirname(mmseg.__file__), '.mim', 'configs', 'fcn',
            'fcn_r50-d8_4xb4-160k_ade20k-512x512.py'))
    stock.model.pretrained = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(stock.model)
    stage1 = str(tmp_path / 'fcn_r50_random_stage1.pth')
    torch.save({'state_dict': model.state_dict()}, stage1)
    del model

    seg = osp.join(data_root, 'seg')
    data = [
        f'{split}_dataloader.{key}' for split in ('train', 'val', 'test')
        for key in (f'dataset.data_root={seg}', 'num_workers=0',
                    'persistent_workers=False')
    ] + [
        'train_dataloader.batch_size=2',
        # RandomResize -> 64 x 64, RandomCrop 64 x 64, test Resize 64 x 64
        'train_dataloader.dataset.pipeline.2.scale=(64,64)',
        'train_dataloader.dataset.pipeline.2.ratio_range=(1.0,1.0)',
        'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
        'val_dataloader.dataset.pipeline.1.scale=(64,64)',
        'test_dataloader.dataset.pipeline.1.scale=(64,64)',
        'model.data_preprocessor.size=(64,64)',
    ]
    cfg = osp.join(REPO, 'configs', 'ade20k', 'fcn_r50_disalign.py')
    work = str(tmp_path / 'fcn_r50_disalign')
    proc = run_tool('train.py', cfg, '--work-dir', work, '--cfg-options',
                    *data, *TINY, f'load_from={stage1}')
    assert 'Stage2FreezeHook' in proc.stdout
    _assert_metrics(proc.stdout)
    ckpt = _ckpt(work)
    _frozen_unchanged(stage1, ckpt, 'decode_head.conv_seg.calibration.')
    proc = run_tool('test.py', cfg, ckpt, '--work-dir', str(tmp_path / 'test'),
                    '--cfg-options', *data)
    _assert_metrics(proc.stdout)


# DisAlign stage 2 must actually calibrate (issue #11): with the old recipe
# (lr 0.01, weight decay on alpha / beta / sigma, GRW averaged over all
# pixels although ~80 % are ignored) 20 iterations moved alpha and beta by
# ~1e-3 and sigma(x) stayed at 0.5, and no prediction changed.
MOVES_ITERS = 20
# measured with the fixed recipe (lr 0.1, no weight decay, labelled-pixel
# mean) after 20 iterations on the session stage 1: max |alpha - 1| 0.017,
# max |beta| 0.29, confidence-layer bias 0.023, 10 % of the val pixels
# change their label. The old recipe moves each ~50x less (lr / 10, loss
# / ~5): 3e-4, 6e-3, 5e-4 -- below every threshold.
ALPHA_MOVE = 0.005
BETA_MOVE = 0.05
SIGMA_BIAS_MOVE = 0.01
CHANGED_FRACTION = 0.02


def _val_images(data_root):
    return sorted(
        glob.glob(osp.join(data_root, 'seg', 'images', 'validation', '*.jpg')))


def _predict(config, checkpoint, images, sigma_out=None):
    """argmax maps (one (H, W) tensor per image); optionally sigma(x)."""
    from mmseg.apis import inference_model, init_model
    model = init_model(config, checkpoint, device='cpu')
    handle = None
    if sigma_out is not None:
        layer = model.decode_head.conv_seg.calibration.confidence_layer
        handle = layer.register_forward_hook(
            lambda m, i, o: sigma_out.append(torch.sigmoid(o).flatten()))
    try:
        return [
            inference_model(model, img).pred_sem_seg.data[0] for img in images
        ]
    finally:
        if handle is not None:
            handle.remove()


def test_disalign_stage2_moves_alpha_beta_sigma_and_predictions(
        seg_stage1, run_tool, data_root, tmp_path, monkeypatch):
    work = str(tmp_path / 'disalign_moves')
    cfg = osp.join(QUICK, 'digits_seg_disalign.py')
    n = MOVES_ITERS
    run_tool('train.py', cfg, '--work-dir', work, '--cfg-options',
             f'train_cfg.max_iters={n}', f'train_cfg.val_interval={n}',
             f'default_hooks.checkpoint.interval={n}',
             f'load_from={seg_stage1["checkpoint"]}')
    ckpt = _ckpt(work)
    s2 = _state(ckpt)
    alpha = s2['decode_head.conv_seg.calibration.logit_scale']
    beta = s2['decode_head.conv_seg.calibration.logit_bias']
    # initial values: alpha = 1, beta = 0 (param='identity', Eq. 5) and
    # sigma(x) = sigmoid(w x + b) with b = 0 (sigma_init='normal')
    assert (alpha - 1).abs().max() > ALPHA_MOVE, alpha
    assert beta.abs().max() > BETA_MOVE, beta
    conf_bias = s2['decode_head.conv_seg.calibration.confidence_layer.bias']
    assert conf_bias.abs().max() > SIGMA_BIAS_MOVE, conf_bias

    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    images = _val_images(data_root)
    assert images
    sigma = []
    calibrated = _predict(cfg, ckpt, images, sigma_out=sigma)
    plain = _predict(seg_stage1['config'], seg_stage1['checkpoint'], images)
    # sigma(x) is computed per pixel, in (0, 1), and not constant
    sigma = torch.cat(sigma)
    assert sigma.numel() > 0 and 0 < sigma.min() and sigma.max() < 1
    assert sigma.std() > 0
    # the calibration changes predictions (the stage-1 model's otherwise)
    changed = sum(int((a != b).sum()) for a, b in zip(calibrated, plain))
    total = sum(a.numel() for a in plain)
    assert changed / total > CHANGED_FRACTION, (changed, total)
