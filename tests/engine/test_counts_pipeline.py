"""One counts pipeline (issue #12 item 2): counts follow the training set.

* acceptance: two generated ImageNet-LT style training sets with different
  class counts; the quickstart DisAlign config built through the runner
  path of tools/train.py with ``train_dataloader.dataset.data_root=<second>``
  gives the loss the second set's counts; an explicit ``stats_file`` wins;
  a missing training set fails at build time naming the path and the fix
  (also through tools/test.py);
* the readers against hand-counted tiny files (cls list, LVIS json, seg
  label maps) and the one cache (hit, invalidated by a content change,
  off).
"""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import lt_mm.cls  # noqa: F401
from lt_mm.cls.counts import read_cls_counts
from lt_mm.core.stats import ClassStats, resolve_counts
from lt_mm.engine.counts import fill_class_counts
from lt_mm.engine.preflight import DataNotFoundError, check_config
from lt_mm.engine.runner_utils import build_runner, load_config
from lt_mm.toydata.imagenet_lt import make_imagenet_lt

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QS = osp.join(REPO, 'configs', 'quickstart')


def _train_counts(root):
    with open(osp.join(root, 'ImageNet_LT_train.txt')) as f:
        labels = [int(line.split()[-1]) for line in f if line.strip()]
    return np.bincount(labels, minlength=10).astype(float).tolist()


@pytest.fixture(scope='module')
def two_sets(tmp_path_factory):
    """Two tiny training sets (8 px images) with different profiles."""
    base = tmp_path_factory.mktemp('counts_data')
    roots = []
    for name, top, ratio in (('a', 12, 6), ('b', 9, 3)):
        root = str(base / name / 'cls')
        make_imagenet_lt(
            root,
            max_per_class=top,
            imbalance_ratio=ratio,
            val_per_class=1,
            test_per_class=1,
            image_size=8,
            seed=0)
        roots.append(root)
    return str(base / 'a'), roots[0], roots[1]


def test_counts_follow_train_data_root(two_sets, tmp_path, monkeypatch):
    env_root, root_a, root_b = two_sets
    monkeypatch.setenv('LT_MM_DATA_ROOT', env_root)
    counts_a, counts_b = _train_counts(root_a), _train_counts(root_b)
    assert counts_a != counts_b
    opts = {
        'train_dataloader.dataset.data_root': root_b,
        'train_dataloader.batch_size': 4,
    }
    cfg = load_config(
        osp.join(QS, 'digits_cls_disalign.py'), dict(opts),
        str(tmp_path / 'w1'))
    # the config names no count source: the loss's counts come from the
    # training dataset, here the second set
    assert 'train_ann_file' not in cfg.model.head.loss
    check_config(cfg, mode='train')
    runner = build_runner(cfg)
    assert runner.model.head.loss_module.counts == counts_b
    # the DisAlign weights follow: w_j ∝ (1 / n_j) ** rho (Eq. 11)
    w = runner.model.head.loss_module.class_weight
    assert int(w.argmin()) == int(np.argmax(counts_b))

    # an explicit stats_file wins over the dataset
    stats = str(tmp_path / 'stats.json')
    ClassStats(counts=[5.0] * 9 + [1.0], unit='images').save(stats)
    cfg = load_config(
        osp.join(QS, 'digits_cls_disalign.py'),
        dict(opts, **{'model.head.loss.stats_file': stats}),
        str(tmp_path / 'w2'))
    assert fill_class_counts(cfg) == []
    runner = build_runner(cfg)
    assert runner.model.head.loss_module.counts == [5.0] * 9 + [1.0]


def test_posthoc_and_metric_defaults(two_sets, monkeypatch):
    env_root, root_a, root_b = two_sets
    monkeypatch.setenv('LT_MM_DATA_ROOT', env_root)
    cfg = load_config(
        osp.join(QS, 'digits_cls_posthoc_nc_tau.py'), {
            'train_dataloader.dataset.data_root': root_b,
            'val_evaluator.train_ann_file': None,
        })
    filled = fill_class_counts(cfg)
    # the head's post-hoc prior and the metric without a source
    assert filled == ['model.head.posthoc', 'val_evaluator']
    assert cfg.model.head.posthoc.counts == _train_counts(root_b)
    assert cfg.val_evaluator.counts == _train_counts(root_b)
    # the test evaluator keeps its explicit train_ann_file (set A)
    assert 'counts' not in cfg.test_evaluator
    assert fill_class_counts(cfg) == []  # idempotent


def test_missing_training_set_is_a_clear_build_error(two_sets, tmp_path,
                                                     monkeypatch):
    env_root, _, _ = two_sets
    monkeypatch.setenv('LT_MM_DATA_ROOT', env_root)
    missing = str(tmp_path / 'nowhere')
    cfg = load_config(
        osp.join(QS, 'digits_cls_cdt.py'),
        {'train_dataloader.dataset.data_root': missing}, str(tmp_path / 'w'))
    with pytest.raises(DataNotFoundError) as e:
        build_runner(cfg)  # before any iteration: the Runner is not built
    msg = str(e.value)
    assert 'model.head.loss' in msg and missing in msg
    assert 'train_dataloader.dataset.data_root=PATH' in msg
    assert 'model.head.loss.stats_file=PATH' in msg
    # tools/test.py (its preflight does not look at the training data)
    ckpt = tmp_path / 'fake.pth'
    ckpt.write_bytes(b'0')
    env = dict(os.environ, LT_MM_DATA_ROOT=env_root, OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'test.py'),
        osp.join(QS, 'digits_cls_posthoc_logit_adjust.py'),
        str(ckpt), '--work-dir',
        str(tmp_path / 'wt'), '--cfg-options',
        f'train_dataloader.dataset.data_root={missing}'
    ],
                          capture_output=True,
                          text=True,
                          env=env,
                          cwd=REPO)
    assert proc.returncode != 0
    assert 'lt_mm: model.head.posthoc' in proc.stderr, proc.stderr[-2000:]
    assert missing in proc.stderr


# ------------------------------------------------------------- readers
def test_cls_reader_and_cache(tmp_path):
    lst = tmp_path / 'train.txt'
    # labels 0, 0, 2, 1, 0 -> counts [3, 1, 1, 0]
    lst.write_text('a.jpg 0\nb.jpg 0\nc.jpg 2\nd.jpg 1\ne.jpg 0\n')
    cache = tmp_path / 'train_class_stats_images.json'
    st = read_cls_counts(str(lst), 'images', 4)
    assert st.counts == [3.0, 1.0, 1.0, 0.0] and osp.isfile(cache)
    assert read_cls_counts(
        dict(data_root=str(tmp_path), ann_file='train.txt'), 'images',
        4).counts == [3.0, 1.0, 1.0, 0.0]
    # hit: a tampered cache with the same fingerprint is returned as is
    d = json.loads(cache.read_text())
    d['counts'] = [9, 9, 9, 9]
    cache.write_text(json.dumps(d))
    assert read_cls_counts(str(lst), 'images', 4).counts == [9.0] * 4
    # the list changes: recomputed (3 -> 4 images of class 0 ... + class 3)
    lst.write_text(lst.read_text() + 'f.jpg 3\n')
    assert read_cls_counts(str(lst), 'images', 4).counts == [3., 1., 1., 1.]
    # off: cache_file=False writes nothing
    os.remove(cache)
    assert read_cls_counts(
        str(lst), 'images', 4, cache_file=False).counts == [3., 1., 1., 1.]
    assert not osp.exists(cache)
    # core: exactly one source; the reader is the adapter's
    assert resolve_counts(
        dataset=str(lst),
        reader=read_cls_counts,
        num_classes=4,
        unit='images',
        allow_zero=True) == [3., 1., 1., 1.]
    with pytest.raises(ValueError, match='exactly one source'):
        resolve_counts(counts=[1, 2], dataset=str(lst), reader=read_cls_counts)
    with pytest.raises(ValueError, match='needs a toolbox reader'):
        resolve_counts(dataset=str(lst))


def test_det_reader(tmp_path):
    from lt_mm.det.counts import read_det_counts
    ann = tmp_path / 'train.json'
    # categories 7, 3: mmdet's labels follow the json's category order
    # (LVIS.get_cat_ids / COCO.get_cat_ids), label 0 = cat 7, 1 = cat 3;
    # image 1: cat 3 twice + cat 7, image 2: cat 3 -> images [1, 2],
    # instances [1, 3] (tests/det/test_build_checks.py checks the order
    # against LVISV1Dataset and CocoDataset)
    ann.write_text(
        json.dumps(
            dict(
                images=[dict(id=1), dict(id=2)],
                categories=[dict(id=7, name='b'),
                            dict(id=3, name='a')],
                annotations=[
                    dict(id=1, image_id=1, category_id=3),
                    dict(id=2, image_id=1, category_id=3),
                    dict(id=3, image_id=1, category_id=7),
                    dict(id=4, image_id=2, category_id=3)
                ])))
    ds = dict(data_root=str(tmp_path), ann_file='train.json')
    assert read_det_counts(ds, 'images', 2).counts == [1.0, 2.0]
    assert read_det_counts(ds, 'instances', 2).counts == [1.0, 3.0]
    assert osp.isfile(tmp_path / 'train_class_stats_instances.json')
    with pytest.raises(ValueError, match='num_classes=3'):
        read_det_counts(ds, 'images', 3)


def test_seg_reader(tmp_path):
    import lt_mm.seg  # noqa: F401
    from lt_mm.seg.counts import read_seg_counts
    img, ann = tmp_path / 'img', tmp_path / 'ann'
    img.mkdir()
    ann.mkdir()
    maps = {
        # x: 0 0 1 / 1 255 2  -> class 0: 2, 1: 2, 2: 1 pixels
        'x': [[0, 0, 1], [1, 255, 2]],
        # y: 2 2 2 / 2 2 0    -> class 0: 1, 2: 5
        'y': [[2, 2, 2], [2, 2, 0]],
    }
    for name, arr in maps.items():
        Image.new('RGB', (3, 2)).save(img / f'{name}.jpg')
        Image.fromarray(np.array(arr, np.uint8)).save(ann / f'{name}.png')
    ds = dict(
        type='BaseSegDataset',
        data_root=str(tmp_path),
        data_prefix=dict(img_path='img', seg_map_path='ann'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        metainfo=dict(classes=('a', 'b', 'c')),
        pipeline=[])
    st = read_seg_counts(ds, 'pixels')
    assert st.counts == [3.0, 2.0, 6.0] and st.names == ['a', 'b', 'c']
    assert st.extra['ignored_pixels'] == 1 and st.extra['total'] == 12
    assert read_seg_counts(ds, 'images').counts == [2.0, 1.0, 2.0]
    assert osp.isfile(str(ann) + '_class_stats_pixels.json')
