"""lt_mm.engine.class_means: per-sample rows in their own storage (a view
pickles its whole batch when the rows are gathered across ranks), their
gathering in dataset order on two real gloo processes, and the class-means
hook refusing a model without its NCM classifier when the run starts."""
import glob
import os
import os.path as osp
import pickle
import re

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lt_mm.engine.class_means import gather_in_order, per_sample
from lt_mm.engine.runner_utils import build_runner, load_config
from tests.conftest import QUICKSTART, free_port


def test_per_sample_rows_own_their_storage():
    x = torch.arange(64 * 32, dtype=torch.float32).reshape(64, 32)
    rows = per_sample(x)
    assert len(rows) == 64
    assert all(torch.equal(r, x[i]) for i, r in enumerate(rows))
    assert all(r.untyped_storage().nbytes() == 32 * 4 for r in rows)
    # pickled: a view carries the whole batch (64 x 8 KB here)
    views = len(pickle.dumps([x[i] for i in range(64)]))
    assert views > 64 * x.numel() * 4
    assert len(pickle.dumps(rows)) * 10 < views
    # row blocks (boxes per image), an empty one included
    blocks = per_sample(x[:5], [2, 0, 3])
    assert [b.shape[0] for b in blocks] == [2, 0, 3]
    assert torch.equal(blocks[2], x[2:5])
    assert blocks[2].untyped_storage().nbytes() == 3 * 32 * 4


def test_gather_with_one_process_returns_the_rows():
    rows = [(torch.ones(2), 0), (torch.zeros(2), 1)]
    assert gather_in_order(rows, 2) is rows


def _worker(rank, port, out_dir):
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        # 5 samples, DistributedSampler order: rank 0 has 0, 2, 4; rank 1
        # has 1, 3 and the padding sample 0
        mine = [0, 2, 4] if rank == 0 else [1, 3, 0]
        feats = per_sample(torch.tensor(mine, dtype=torch.float32)[:, None])
        rows = [(f, i) for f, i in zip(feats, mine)]
        out = gather_in_order(rows, 5)
        torch.save([(f, i) for f, i in out], os.path.join(out_dir, f'{rank}'))
    finally:
        dist.destroy_process_group()


def test_gather_in_dataset_order_on_two_gloo_processes(tmp_path):
    if not dist.is_available():
        pytest.skip('torch.distributed is not available')
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        out = torch.load(os.path.join(tmp_path, f'{rank}'))
        assert [i for _, i in out] == [0, 1, 2, 3, 4]
        assert [float(f) for f, _ in out] == [0., 1., 2., 3., 4.]


@pytest.mark.parametrize('stage1, match', [
    ('digits_cls_resnet_stage1.py', 'needs a head with set_centroids'),
    ('digits_seg_fcn_stage1.py', 'needs the NCMConvSeg classifier'),
    ('digits_det_mask_rcnn_stage1.py', "cls_predictor_cfg=dict(type='NCM"),
])
def test_ncm_hook_refuses_a_model_without_ncm_before_training(
        stage1, match, data_root, monkeypatch, tmp_path):
    """NCMCentroidHook on a model without its NCM classifier (each
    toolbox's stage-1 config, a real Runner): refused when the run starts,
    not after the first training epoch at the first validation."""
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    cfg = load_config(osp.join(QUICKSTART, stage1), {}, str(tmp_path))
    cfg.log_level = 'WARNING'
    # one epoch / iteration, validated after it: what the guard used to wait
    # for (a full stage-1 schedule here)
    length = 'max_epochs' if 'max_epochs' in cfg.train_cfg else 'max_iters'
    cfg.train_cfg.update({length: 1, 'val_interval': 1})
    cfg.custom_hooks = list(cfg.get('custom_hooks',
                                    [])) + [dict(type='NCMCentroidHook')]
    runner = build_runner(cfg)
    with pytest.raises(ValueError, match=re.escape(match)):
        runner.train()
    assert runner.iter == 0 and runner.epoch == 0
    assert not glob.glob(osp.join(str(tmp_path), '*.pth'))
