"""NCM class means for segmentation in a 2-process run (gloo on the CPU)
with a rank that gets no training image: the rank still joins every
all-reduce (else the other waits forever), and the means, the saved
checkpoint and the metrics equal those of one process.

``tools/dist_test.sh`` with the shipped ``digits_seg_ncm.py`` on the
session's tiny stage-1 FCN; the class-means loader sees one training image
(``train_dataloader.dataset.indices=1``), so rank 1's share is empty
(``round_up=False``: every image once over the ranks)."""
import os.path as osp
import re

import torch

from lt_mm.engine.checkpoint import safe_torch_load
from tests.conftest import REPO, run_dist

CONFIG = osp.join(REPO, 'configs', 'quickstart', 'digits_seg_ncm.py')
ONE_IMAGE = 'train_dataloader.dataset.indices=1'


def _metrics(stdout: str) -> dict:
    """The last ``mIoU: x  ...`` line of the test log as name -> value
    (without the timings)."""
    line = [ln for ln in stdout.splitlines() if 'mIoU:' in ln][-1]
    out = {k: float(v) for k, v in re.findall(r'(\w+): (-?[\d.]+)', line)}
    assert 'mIoU' in out and 'mIoU_tail' in out, line
    return {k: v for k, v in out.items() if 'time' not in k}


def test_seg_ncm_with_an_empty_rank_equals_one_process(seg_stage1, run_tool,
                                                       tmp_path):
    one = str(tmp_path / 'one')
    proc = run_tool('test.py', CONFIG, seg_stage1['checkpoint'], '--work-dir',
                    one, '--cfg-options', ONE_IMAGE)
    assert 'per-pixel class means of' in proc.stdout
    two = str(tmp_path / 'two')
    dist = run_dist('dist_test.sh', [
        CONFIG, seg_stage1['checkpoint'], '2', '--work-dir', two,
        '--cfg-options', ONE_IMAGE
    ], run_tool.data_root)
    assert dist.returncode == 0, dist.stdout[-4000:]
    assert 'Distributed training: True' in dist.stdout
    a = safe_torch_load(osp.join(one, 'ncm_centroids.pth'))['state_dict']
    b = safe_torch_load(osp.join(two, 'ncm_centroids.pth'))['state_dict']
    prefix = 'decode_head.conv_seg.'
    assert int(b[prefix + 'ncm_ready']) == 1
    # one image: some classes have no labelled pixel, the others a mean
    present = a[prefix + 'class_present']
    assert 0 < int(present.sum()) < present.numel()
    for key in a:
        if key.startswith(prefix):
            assert torch.equal(a[key], b[key]), key
    assert _metrics(dist.stdout) == _metrics(proc.stdout)
