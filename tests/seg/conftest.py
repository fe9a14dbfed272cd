"""Segmentation fixtures: the training class statistics of the tiny
ADE20K-layout data, written by ``tools/class_stats.py`` before the stage-1
model trains (its ``HeadBodyTailIoUMetric`` reads them)."""
from __future__ import annotations

import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_STAGE1 = osp.join(REPO, 'configs', 'quickstart',
                      'digits_seg_fcn_stage1.py')


@pytest.fixture(scope='session')
def seg_stats(data_root, run_tool) -> dict:
    """``<data_root>/seg/class_stats.json`` from tools/class_stats.py."""
    out = osp.join(data_root, 'seg', 'class_stats.json')
    proc = run_tool('class_stats.py', SEG_STAGE1, '--out', out)
    return dict(path=out, log=proc.stdout)


@pytest.fixture(scope='session')
def seg_stage1(seg_stats, seg_stage1) -> dict:
    """The session stage-1 checkpoint, trained after the statistics exist."""
    return seg_stage1
