"""Segmentation fixtures: the training class statistics of the tiny
ADE20K-layout data, written by ``tools/class_stats.py`` (run in-process to
save a subprocess) before the stage-1 model trains (its
``HeadBodyTailIoUMetric`` reads them)."""
from __future__ import annotations

import os.path as osp

import pytest

from tests.conftest import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_STAGE1 = osp.join(REPO, 'configs', 'quickstart',
                      'digits_seg_fcn_stage1.py')


def class_stats_tool():
    """``tools/class_stats.py`` as a module (its ``main(argv)``)."""
    return load_script('tools', 'class_stats.py')


@pytest.fixture(scope='session')
def seg_stats(data_root) -> dict:
    """``<data_root>/seg/class_stats.json`` from tools/class_stats.py."""
    out = osp.join(data_root, 'seg', 'class_stats.json')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('LT_MM_DATA_ROOT', data_root)
        class_stats_tool().main([SEG_STAGE1, '--out', out, '--no-progress'])
    return dict(path=out)


@pytest.fixture(scope='session')
def seg_stage1(seg_stats, seg_stage1) -> dict:
    """The session stage-1 checkpoint, trained after the statistics exist."""
    return seg_stage1


@pytest.fixture(autouse=True)
def _mmseg_scope():
    """Every segmentation test builds in mmseg's scope."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield
