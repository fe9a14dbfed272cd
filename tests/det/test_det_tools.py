"""Detection methods end to end with tools/train.py and tools/test.py.

Tiny LVIS-v1-format data (session fixture ``data_root``) and the shared
stage-1 tiny Mask R-CNN (``det_stage1``):

* DisAlign stage 2 from the stage-1 checkpoint: only the calibration
  trains; every other tensor (parameters and BN buffers) is unchanged;
* TDE one-stage (train, the final validation prints the LVIS metrics);
* Cascade Mask R-CNN with TDE: train, then tools/test.py;
* tau-norm post-hoc: tools/test.py on the stage-1 checkpoint.
"""
import os.path as osp
import re

import torch

from lt_mm.engine.checkpoint import safe_torch_load
from tests.conftest import QUICKSTART, last_checkpoint

LVIS_KEYS = [
    f'lvis/{t}_{k}' for t in ('bbox', 'segm')
    for k in ('AP', 'APr', 'APc', 'APf')
]


def _assert_lvis_metrics(log):
    for key in LVIS_KEYS:
        assert re.search(re.escape(key) + r': -?\d', log), \
            f'{key} not printed:\n{log[-4000:]}'


def _state(path):
    return safe_torch_load(path)['state_dict']


def test_disalign_stage2_trains_only_the_calibration(det_stage1, run_tool,
                                                     tmp_path):
    work = str(tmp_path / 'disalign')
    proc = run_tool('train.py', osp.join(QUICKSTART, 'digits_det_disalign.py'),
                    '--work-dir', work, '--cfg-options',
                    *det_stage1['options'],
                    f'load_from={det_stage1["checkpoint"]}')
    log = proc.stdout
    prefix = 'roi_head.bbox_head.fc_cls.calibration.'
    calib = {
        prefix + n
        for n in ('logit_scale', 'logit_bias', 'confidence_layer.weight',
                  'confidence_layer.bias')
    }
    # the freeze hook logs what trains: exactly the 4 calibration tensors
    assert 'Stage2FreezeHook: training 4 tensors' in log, log[-4000:]
    for name in calib:
        assert name in log
    _assert_lvis_metrics(log)

    s1 = _state(det_stage1['checkpoint'])
    s2 = _state(last_checkpoint(work))
    assert set(s2) == set(s1) | calib
    changed = [k for k in s1 if not torch.equal(s1[k], s2[k])]
    # backbone, neck, RPN, box fcs, fc_cls, fc_reg, mask head and the BN
    # running statistics are all bit-identical to stage 1
    assert changed == [], changed[:10]
    # ... while the calibration left its identity initialisation
    assert not torch.equal(s2[prefix + 'logit_scale'],
                           torch.ones_like(s2[prefix + 'logit_scale'])) or \
        not torch.equal(s2[prefix + 'logit_bias'],
                        torch.zeros_like(s2[prefix + 'logit_bias']))


def test_tde_one_stage_train(det_stage1, run_tool, tmp_path):
    work = str(tmp_path / 'tde')
    proc = run_tool('train.py', osp.join(QUICKSTART,
                                         'digits_det_tde.py'), '--work-dir',
                    work, '--cfg-options', *det_stage1['options'])
    _assert_lvis_metrics(proc.stdout)
    state = _state(last_checkpoint(work))
    d = state['roi_head.bbox_head.fc_cls.head_direction']
    # the head direction was accumulated from (post-ReLU) foreground RoIs
    assert d.shape == (64, ) and d.abs().sum() > 0 and (d >= 0).all()


def test_cascade_tde_train_then_test(det_stage1, run_tool, tmp_path):
    config = osp.join(QUICKSTART, 'digits_det_cascade_tde.py')
    work = str(tmp_path / 'cascade_tde')
    opts = [o for o in det_stage1['options'] if 'val_interval' not in o]
    run_tool('train.py', config, '--work-dir', work, '--cfg-options', *opts,
             'train_cfg.val_interval=100')
    ckpt = last_checkpoint(work)
    state = _state(ckpt)
    for stage in range(3):
        key = f'roi_head.bbox_head.{stage}.fc_cls.head_direction'
        assert state[key].abs().sum() > 0, key
    proc = run_tool('test.py', config, ckpt, '--work-dir',
                    str(tmp_path / 'cascade_test'))
    _assert_lvis_metrics(proc.stdout)


def test_taunorm_post_hoc_test(det_stage1, run_tool, tmp_path):
    proc = run_tool('test.py', osp.join(QUICKSTART, 'digits_det_taunorm.py'),
                    det_stage1['checkpoint'], '--work-dir', str(tmp_path))
    _assert_lvis_metrics(proc.stdout)
