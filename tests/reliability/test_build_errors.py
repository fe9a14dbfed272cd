"""Bad configs and bad inputs fail at build time with one clear message
(issue #10: defect 9, the class-count cross-checks of defect 5, and the
guards that already worked before the issue).

``lt_mm.engine.preflight.check_config`` runs on the loaded config before
the Runner is built (no dataset, model or work dir exists yet); the model
and dataset errors come out of the constructors (the Runner's build step).
Each test asserts the error type and that the message names the bad value
or file.
"""
import inspect
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import lt_mm.cls  # noqa: F401
import lt_mm.seg  # noqa: F401
from lt_mm.cls import (CausalNormClsHead, CDTLoss, GRWLoss, ImageNetLTDataset,
                       TauNormClsHead)
from lt_mm.core.checks import check_range
from lt_mm.core.stats import ClassStats
from lt_mm.engine import runner_utils
from lt_mm.engine.preflight import (ConfigCheckError, DataNotFoundError,
                                    check_config)
from lt_mm.seg import GRWCrossEntropyLoss
from tests.conftest import QUICKSTART, REPO
from tests.tool_server import run_fresh

ADE_CFG = osp.join(REPO, 'configs', 'ade20k', 'fcn_r50_disalign.py')
INLT_CFG = osp.join(REPO, 'configs', 'imagenet_lt',
                    'resnext50_32x4d_disalign-linear_10e_imagenet-lt.py')
LVIS_CFG = osp.join(REPO, 'configs', 'lvis',
                    'mask-rcnn_r50_fpn_ms-1x_lvis-v1.py')
CLS_QS = osp.join(QUICKSTART, 'digits_cls_resnet_stage1.py')
SEG_QS = osp.join(QUICKSTART, 'digits_seg_fcn_stage1.py')


@pytest.fixture(autouse=True)
def _mmpretrain_scope():
    """Heads build their stock loss through mmpretrain's registry, whatever
    scope an earlier in-process Runner left current."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _preflight_error(path, tmp_path, monkeypatch, options=None, **kw):
    """check_config on ``path`` run from an empty directory (no data/)."""
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as e:
        check_config(cfg, **kw)
    return e


def _wired(tools: bool = False) -> bool:
    """Whether the lead has wired preflight into runner_utils (or, with
    ``tools``, into tools/train.py)."""
    srcs = [inspect.getsource(runner_utils)]
    if tools:
        with open(osp.join(REPO, 'tools', 'train.py')) as f:
            srcs.append(f.read())
    return any('preflight' in s or 'check_config' in s for s in srcs)


# ---------------------------------------- defect 9: missing data, one line
def test_design_card_ade20k_without_data(tmp_path, monkeypatch):
    e = _preflight_error(ADE_CFG, tmp_path, monkeypatch, mode='train')
    assert isinstance(e.value, DataNotFoundError)
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    assert '\n' not in msg  # one line
    assert "data_root 'data/ade/ADEChallengeData2016' does not exist" in msg
    assert 'images/{training,validation}/*.jpg' in msg
    # how to point data_root at the data, for every loader reading it
    for loader in ('train', 'val', 'test'):
        assert f'{loader}_dataloader.dataset.data_root=PATH' in msg
    assert '--cfg-options' in msg


def test_imagenet_lt_without_data(tmp_path, monkeypatch):
    e = _preflight_error(INLT_CFG, tmp_path, monkeypatch)
    msg = str(e.value)
    assert isinstance(e.value, DataNotFoundError) and '\n' not in msg
    assert "'data/imagenet_lt'" in msg
    assert 'ImageNet_LT_{train,val,test}.txt' in msg


def test_lvis_without_data(tmp_path, monkeypatch):
    e = _preflight_error(LVIS_CFG, tmp_path, monkeypatch, mode='train')
    msg = str(e.value)
    assert isinstance(e.value, DataNotFoundError) and '\n' not in msg
    assert "'data/lvis_v1/'" in msg and 'lvis_v1_{train,val}.json' in msg
    assert 'train_dataloader.dataset.data_root=PATH' in msg


def test_env_var_config_names_the_variable(tmp_path, monkeypatch):
    missing = str(tmp_path / 'no_data_here')
    monkeypatch.setenv('LT_MM_DATA_ROOT', missing)
    e = _preflight_error(SEG_QS, tmp_path, monkeypatch, mode='train')
    msg = str(e.value)
    assert f"'{missing}/seg' does not exist" in msg
    assert 'LT_MM_DATA_ROOT' in msg and 'ADEChallengeData2016' in msg


def test_missing_list_file(tmp_path, monkeypatch):
    (tmp_path / 'cls').mkdir()  # data_root exists, the lists do not
    monkeypatch.setenv('LT_MM_DATA_ROOT', str(tmp_path))
    e = _preflight_error(CLS_QS, tmp_path, monkeypatch, mode='train')
    msg = str(e.value)
    assert isinstance(e.value, DataNotFoundError)
    assert 'ann_file' in msg and 'ImageNet_LT_train.txt' in msg


def test_mode_test_checks_test_data_only(tmp_path, monkeypatch):
    # train data missing is fine for tools/test.py; its test data is not
    root = tmp_path / 'cls'
    root.mkdir()
    (root / 'ImageNet_LT_train.txt').write_text('a.jpg 0\n')
    monkeypatch.setenv('LT_MM_DATA_ROOT', str(tmp_path))
    e = _preflight_error(CLS_QS, tmp_path, monkeypatch, mode='test')
    assert 'test_dataloader.dataset' in str(e.value)
    assert 'ImageNet_LT_test.txt' in str(e.value)


# ------------------------------- defect 5: class counts across components
def test_list_label_vs_head_num_classes(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    e = _preflight_error(
        CLS_QS,
        tmp_path,
        monkeypatch,
        options={'model.head.num_classes': 5},
        mode='train')
    msg = str(e.value)
    assert isinstance(e.value, ConfigCheckError)
    # the tiny training list (tests/conftest.py) is written class by class
    # with counts [40, 28, 20, 14, 10, 7, 5, 3, 2, 2]: the first label 9 is
    # on line 40 + 28 + 20 + 14 + 10 + 7 + 5 + 3 + 2 + 1 = 130
    assert 'ImageNet_LT_train.txt:130: label 9' in msg
    assert 'model.head.num_classes=5' in msg


def test_dataset_classes_vs_head(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    e = _preflight_error(
        CLS_QS,
        tmp_path,
        monkeypatch,
        options={'train_dataloader.dataset.num_classes': 12},
        mode='train')
    assert 'train_dataloader.dataset has 12 classes' in str(e.value)
    assert 'model.head.num_classes=10' in str(e.value)


def test_metric_num_classes_vs_head(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    e = _preflight_error(
        CLS_QS,
        tmp_path,
        monkeypatch,
        options={'val_evaluator.num_classes': 7},
        mode='train')
    assert 'val_evaluator.num_classes=7' in str(e.value)
    assert 'model.head.num_classes=10' in str(e.value)


def test_more_head_classes_than_the_data_has(data_root, monkeypatch, tmp_path):
    """A head of 12 classes on 10-class data passed preflight (labels <
    12), trained the whole schedule and failed in the metric."""
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    # a preprocessor with one-hot batch augments counts classes too
    e = _preflight_error(
        CLS_QS,
        tmp_path,
        monkeypatch,
        options={
            'model.head.num_classes':
            12,
            'data_preprocessor.batch_augments':
            dict(augments=[dict(type='Mixup', alpha=0.2)])
        },
        mode='train')
    assert 'model.head.num_classes=12 but data_preprocessor.num_classes=10' \
        in str(e.value)
    # without them it is unused (mmpretrain's in21k config: 21843 vs
    # 21842); the metric's count of the data's classes catches it
    e = _preflight_error(
        CLS_QS,
        tmp_path,
        monkeypatch,
        options={'model.head.num_classes': 12},
        mode='train')
    msg = str(e.value)
    assert 'val_evaluator counts 10 classes (labels 0..9' in msg
    assert 'model.head.num_classes=12' in msg


def test_counts_left_behind_by_a_moved_data_root(data_root, monkeypatch,
                                                 tmp_path):
    """The quickstart configs build their count sources from data_root;
    overriding only train_dataloader.dataset.data_root kept the old
    files' groups without a word: now one warning per source."""
    import shutil

    from lt_mm.engine.preflight import warn_counts_elsewhere
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    moved = str(tmp_path / 'moved')
    for task, path in (('cls', CLS_QS), ('seg', SEG_QS)):
        shutil.copytree(osp.join(data_root, task), osp.join(moved, task))
        cfg = Config.fromfile(path)
        evaluators = ['val_evaluator', 'test_evaluator']
        assert warn_counts_elsewhere(cfg, evaluators) == []
        cfg.merge_from_dict(
            {'train_dataloader.dataset.data_root': osp.join(moved, task)})
        warned = warn_counts_elsewhere(cfg, evaluators)
        key = 'train_ann_file' if task == 'cls' else 'stats_file'
        assert f'val_evaluator.{key}' in warned, warned


def test_seg_classes_vs_decode_head(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    e = _preflight_error(
        SEG_QS,
        tmp_path,
        monkeypatch,
        options={'model.decode_head.num_classes': 9},
        mode='train')
    assert 'has 10 classes' in str(e.value)
    assert 'model.decode_head.num_classes=9' in str(e.value)


def test_shipped_quickstart_configs_pass(data_root, monkeypatch):
    # no false alarm on the shipped quickstart configs (stage 1 and the
    # DisAlign stage 2 of each task), in every mode
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    for task, name in (('cls', 'resnet_stage1'), ('cls', 'disalign'),
                       ('seg', 'fcn_stage1'), ('seg', 'disalign'),
                       ('det', 'mask_rcnn_stage1'), ('det', 'disalign')):
        cfg = Config.fromfile(osp.join(QUICKSTART, f'digits_{task}_{name}.py'))
        for mode in ('train', 'test', 'all'):
            check_config(cfg, mode=mode)


@pytest.mark.skipif(
    not _wired(),
    reason='preflight not yet wired into '
    'lt_mm.engine.runner_utils by the lead')
def test_wired_through_runner_utils(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match='ADEChallengeData2016'):
        cfg = runner_utils.load_config(ADE_CFG)
        # if the lead calls it in build_runner instead of load_config
        runner_utils.build_runner(cfg)


@pytest.mark.skipif(
    not _wired(tools=True),
    reason='preflight not yet wired into tools/train.py by the lead')
@pytest.mark.skipif(
    osp.isdir(osp.join(REPO, 'data', 'ade')), reason='ADE20K present')
def test_design_card_command_one_line(tmp_path):
    # the design card's command, as a user types it, without ADE20K
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    cmd = [
        sys.executable, 'tools/train.py', 'configs/ade20k/fcn_r50_disalign.py',
        '--work-dir',
        str(tmp_path / 'wd')
    ]
    proc = run_fresh(cmd, env, timeout=300)
    out = proc.stdout
    assert proc.returncode != 0
    assert "data_root 'data/ade/ADEChallengeData2016' does not exist" in out
    assert 'list_dir_or_file' not in out  # not mmengine's file listing
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert 'ADEChallengeData2016' in last and '--cfg-options' in last
    assert not osp.exists(tmp_path / 'wd' / 'last_checkpoint')


# ---------------------------- defect 9 (small): stats file, bool ranges
def test_wrong_length_stats_file_is_named(tmp_path):
    path = str(tmp_path / 'three_classes.json')
    ClassStats(counts=[5, 3, 1], unit='images').save(path)
    with pytest.raises(ValueError) as e:
        GRWLoss(stats_file=path, num_classes=4)
    assert path in str(e.value) and 'have 3 classes' in str(e.value)
    assert 'num_classes=4' in str(e.value)


def test_counts_in_wrong_unit(tmp_path):
    # image counts where a segmentation loss needs pixel frequencies
    path = str(tmp_path / 'images.json')
    ClassStats(counts=[5, 3, 1], unit='images').save(path)
    with pytest.raises(ValueError) as e:
        GRWCrossEntropyLoss(stats_file=path, num_classes=3)
    msg = str(e.value)
    assert path in msg and "'images'" in msg and "'pixels'" in msg


def test_zero_count_classes():
    with pytest.raises(ValueError, match=r'zero count for classes \[1\]'):
        GRWLoss(counts=[5, 0, 2])


@pytest.mark.parametrize(
    'build, shown',
    [(lambda: GRWLoss(rho=-0.5, counts=[3, 1]), 'rho=-0.5'),
     (lambda: CDTLoss(gamma=-1.0, counts=[3, 1]), 'gamma=-1.0'),
     (lambda: TauNormClsHead(2, 4, tau=-0.1), 'tau=-0.1'),
     (lambda: CausalNormClsHead(2, 4, alpha=-2.0), 'alpha=-2.0'),
     (lambda: GRWCrossEntropyLoss(rho=float('nan'), counts=[3, 1]), 'rho=nan')
     ],
    ids=['rho', 'gamma', 'tau', 'alpha', 'rho-nan'])
def test_hyperparameter_out_of_range(build, shown):
    with pytest.raises(ValueError, match='out of range') as e:
        build()
    assert shown in str(e.value)


@pytest.mark.parametrize(
    'build', [
        lambda: CausalNormClsHead(2, 4, alpha=True),
        lambda: GRWLoss(rho=True, counts=[3, 1]),
        lambda: check_range('alpha', torch.tensor(True), 0.0)
    ],
    ids=['alpha', 'rho', 'tensor'])
def test_bool_is_not_a_number(build):
    # alpha=True used to mean alpha=1.0 silently
    with pytest.raises(
            ValueError,
            match='=(True|tensor\\(True\\)) is a '
            'bool; expected a number'):
        build()


def test_malformed_list_lines(tmp_path):
    ann = tmp_path / 'train.txt'
    ann.write_text('a.jpg 0\nb.jpg\n')
    with pytest.raises(ValueError, match=r'train\.txt:2: .*"<path> <label>"'):
        ImageNetLTDataset(ann_file=str(ann), stats_cache=False)
    ann.write_text('a.jpg 0\nb.jpg one\n')
    with pytest.raises(ValueError, match=r"train\.txt:2: label 'one'"):
        ImageNetLTDataset(ann_file=str(ann), stats_cache=False)


def test_typo_in_lt_mm_arguments():
    from mmpretrain.registry import MODELS
    with pytest.raises(TypeError, match='rhoo'):
        MODELS.build(dict(type='GRWLoss', rhoo=1.2, counts=[3, 1]))
    with pytest.raises(TypeError, match='alpah'):
        MODELS.build(
            dict(
                type='CausalNormClsHead',
                num_classes=2,
                in_channels=4,
                alpah=1.0))
