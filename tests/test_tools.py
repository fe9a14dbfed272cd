"""Foundation: tools/train.py and tools/test.py drive all three toolboxes.

For each of mmpretrain, mmseg and mmdet (configs inherit stock configs via
``mmpretrain::`` / ``mmseg::`` / ``mmdet::``) on tiny data in the real
on-disk formats: train (the session stage-1 fixture), test the checkpoint,
``load_from`` it into a second run and ``--resume`` an interrupted run.
``tools/dist_train.sh CONFIG 2`` runs on CPU (gloo).
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, last_checkpoint, run_dist

# metric names each toolbox prints after testing
METRIC_KEYS = {
    'cls': ['accuracy/top1', 'many', 'medium', 'few'],
    'seg': ['mIoU', 'aAcc'],
    'det': ['bbox_AP', 'bbox_APr', 'segm_AP', 'segm_APf'],
}
# first checkpoint of the stage-1 run, used to simulate an interruption
FIRST_CKPT = {'cls': 'epoch_1.pth', 'seg': 'iter_2.pth', 'det': 'epoch_1.pth'}


@pytest.fixture(params=['cls', 'seg', 'det'])
def stage1(request):
    return request.getfixturevalue(f'{request.param}_stage1'), request.param


def _scalars(work_dir):
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    rows = []
    for f in files:
        with open(f) as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def test_test_tool_prints_metrics(stage1, run_tool, tmp_path):
    s1, task = stage1
    out = str(tmp_path / 'preds.pkl')
    proc = run_tool('test.py', s1['config'], s1['checkpoint'], '--work-dir',
                    str(tmp_path), '--out', out)
    for key in METRIC_KEYS[task]:
        assert key in proc.stdout, f'{key} not printed:\n{proc.stdout[-3000:]}'
    assert osp.getsize(out) > 0


def test_load_from_and_resume(stage1, run_tool, tmp_path):
    s1, task = stage1
    # load_from: a new run initialised from the stage-1 checkpoint
    w1 = str(tmp_path / 'load_from')
    proc = run_tool('train.py', s1['config'], '--work-dir', w1,
                    '--cfg-options', *s1['options'],
                    f'load_from={s1["checkpoint"]}')
    assert 'Load checkpoint from' in proc.stdout
    assert osp.isfile(last_checkpoint(w1))

    # --resume: an "interrupted" run holds only the first checkpoint
    w2 = str(tmp_path / 'resume')
    os.makedirs(w2)
    first = osp.join(w2, FIRST_CKPT[task])
    shutil.copy(osp.join(s1['work_dir'], FIRST_CKPT[task]), first)
    with open(osp.join(w2, 'last_checkpoint'), 'w') as f:
        f.write(first)
    proc = run_tool('train.py', s1['config'], '--work-dir', w2, '--resume',
                    '--cfg-options', *s1['options'])
    assert 'resumed' in proc.stdout.lower(), proc.stdout[-3000:]
    final = last_checkpoint(w2)
    assert osp.basename(final) == osp.basename(s1['checkpoint'])
    # the schedule continues exactly: same learning rate at the same steps
    ref = {r['step']: r['lr'] for r in _scalars(s1['work_dir']) if 'lr' in r}
    res = {r['step']: r['lr'] for r in _scalars(w2) if 'lr' in r}
    assert res, 'the resumed run logged no learning rate'
    first_step = min(res)
    assert first_step > min(ref), 'resume restarted from the beginning'
    for step, lr in res.items():
        assert lr == pytest.approx(ref[step], rel=1e-6), step


def test_test_tool_refuses_foreign_pickle(cls_stage1, run_tool, tmp_path):
    bad = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': {}, 'payload': os.system}, bad)
    proc = run_tool(
        'test.py',
        cls_stage1['config'],
        bad,
        '--work-dir',
        str(tmp_path),
        check=False)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stdout
    assert 'posix.system' in proc.stdout


@pytest.mark.parametrize('stage', ['stage1', 'stage2'])
def test_dist_train_two_cpu_processes(cls_stage1, run_tool, tmp_path, stage):
    """dist_train.sh with 2 gloo processes; the shipped stage-2 config
    as it is (its find_unused_parameters=True: the frozen parameters get
    no gradient, and DDP without it is refused)."""
    work = str(tmp_path / 'dist')
    config = cls_stage1['config'] if stage == 'stage1' else osp.join(
        REPO, 'configs', 'quickstart', 'digits_cls_disalign.py')
    extra = [] if stage == 'stage1' else [
        f'load_from={cls_stage1["checkpoint"]}'
    ]
    proc = run_dist('dist_train.sh', [
        config, '2', '--work-dir', work, '--cfg-options',
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1', *extra
    ], run_tool.data_root)
    errors = [
        line for line in proc.stdout.splitlines()
        if 'Error' in line or 'error' in line
    ]
    assert proc.returncode == 0, '\n'.join(errors[-20:]) + proc.stdout[-3000:]
    assert 'Distributed training: True' in proc.stdout
    # each of the 2 ranks sees half of the epoch: ceil(ceil(N / 2) / 32)
    with open(osp.join(run_tool.data_root, 'cls',
                       'ImageNet_LT_train.txt')) as f:
        n = len([line for line in f if line.strip()])
    iters = -(-(-(-n // 2)) // 32)
    assert f'Epoch(train) [1][{iters}/{iters}]' in proc.stdout
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


def test_dist_train_refusal_fails_the_job_loudly(seg_stage1, run_tool,
                                                 tmp_path):
    """A stage-2 refusal that needs the built model (the checkpoint does
    not fit) with 2 gloo processes: the group exists when it is raised,
    the job fails, the reason is printed and nothing is written."""
    work = str(tmp_path / 'dist_refused')
    config = osp.join(REPO, 'configs', 'quickstart', 'digits_cls_disalign.py')
    proc = run_dist('dist_train.sh', [
        config, '2', '--work-dir', work, '--cfg-options',
        f'load_from={seg_stage1["checkpoint"]}', 'train_cfg.max_epochs=1'
    ], run_tool.data_root)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert 'Distributed training: True' in proc.stdout
    assert 'lt_mm: Stage2GuardError' in proc.stdout, proc.stdout[-3000:]
    assert 'does not fit this stage-2 model' in proc.stdout
    assert not glob.glob(osp.join(work, '**', '*.pth'), recursive=True)


def test_importing_lt_mm_core_imports_no_toolbox():
    code = ('import sys, lt_mm, lt_mm.core; '
            'bad = [m for m in sys.modules if m.startswith('
            '("mmdet", "mmseg", "mmpretrain", "mmcv", "mmengine"))]; '
            'assert not bad, bad')
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True)


@pytest.mark.parametrize('task', ['cls', 'seg'])
def test_show_dir_paints_every_image_with_interval_1(request, run_tool,
                                                     tmp_path, task):
    """--show-dir painted 1 of 50 cls images and none of 4 seg images (the
    hooks' default intervals); --interval 1 paints each (mmpretrain's own
    default)."""
    s1 = request.getfixturevalue(f'{task}_stage1')
    show = tmp_path / 'show'
    args = ['--work-dir', str(tmp_path / 'w'), '--show-dir', str(show)]
    if task == 'seg':
        args += ['--interval', '1']
    run_tool('test.py', s1['config'], s1['checkpoint'], *args)
    painted = [
        p for p in glob.glob(str(tmp_path / '**' / '*.*'), recursive=True)
        if p.endswith(('.png', '.jpg', '.JPEG')) and 'show' in p
    ]
    lst = 'ImageNet_LT_test.txt' if task == 'cls' else None
    if lst:
        with open(osp.join(run_tool.data_root, 'cls', lst)) as f:
            n = len([line for line in f if line.strip()])
    else:
        n = len(
            os.listdir(
                osp.join(run_tool.data_root, 'seg', 'images', 'validation')))
    assert len(painted) == n, (len(painted), n)
    proc = run_tool(
        'test.py',
        s1['config'],
        s1['checkpoint'],
        *args[:4],
        '--interval',
        '0',
        check=False)
    assert proc.returncode == 1 and '--interval 0' in proc.stdout
