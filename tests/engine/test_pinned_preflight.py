"""Pins guards of :func:`lt_mm.engine.preflight.check_config` that no other
test fixed (found by mutation testing). Plain config dicts over tiny
ImageNet-LT lists written here (``check_config`` reads only the config and
the list files it names)."""
from __future__ import annotations

import os.path as osp

import pytest

from lt_mm.engine.preflight import (ConfigCheckError, DataNotFoundError,
                                    check_config)


def _write_list(path, labels):
    with open(path, 'w') as f:
        for i, y in enumerate(labels):
            f.write(f'train/img_{i}.JPEG {y}\n')
    return str(path)


def _cfg(root, head=5, ds_extra=None, evaluator=None, ann='train.txt'):
    ds = dict(
        type='ImageNetLTDataset',
        data_root=str(root),
        ann_file=ann,
        data_prefix='')
    ds.update(ds_extra or {})
    return dict(
        default_scope='mmpretrain',
        model=dict(type='ImageClassifier', head=dict(num_classes=head)),
        train_dataloader=dict(dataset=ds),
        val_dataloader=dict(dataset=dict(ds)),
        val_cfg=dict(),
        val_evaluator=evaluator or dict(type='Accuracy'))


@pytest.fixture
def root(tmp_path):
    _write_list(tmp_path / 'train.txt', [0, 1, 2, 3, 4, 0, 0])
    return tmp_path


def test_good_config_passes(root):
    check_config(_cfg(root), mode='train')


def test_unknown_mode_is_refused_naming_it(root):
    with pytest.raises(ValueError) as err:
        check_config(_cfg(root), mode='val')
    assert "mode='val'" in str(err.value)
    assert "'train'" in str(err.value) and "'test'" in str(err.value)


def test_list_label_beyond_the_dataset_classes(root):
    _write_list(root / 'big.txt', [0, 1, 2, 0, 7, 1])
    cfg = _cfg(root, head=8, ds_extra=dict(num_classes=6), ann='big.txt')
    with pytest.raises(ConfigCheckError) as err:
        check_config(cfg, mode='train')
    msg = str(err.value)
    assert f"{osp.join(str(root), 'big.txt')}:5" in msg
    assert 'label 7' in msg and '[0, 6)' in msg


def test_dataset_class_count_differs_from_the_head(root):
    cfg = _cfg(root, head=5, ds_extra=dict(num_classes=6))
    with pytest.raises(ConfigCheckError) as err:
        check_config(cfg, mode='train')
    msg = str(err.value)
    assert 'has 6 classes' in msg and 'model.head.num_classes=5' in msg


def test_missing_data_prefix_folder_is_named(root):
    cfg = _cfg(root, ds_extra=dict(data_prefix=dict(img_path='images')))
    with pytest.raises(DataNotFoundError) as err:
        check_config(cfg, mode='train')
    msg = str(err.value)
    assert 'data_prefix.img_path' in msg
    assert repr(osp.join(str(root), 'images')) in msg


def test_missing_evaluator_ann_file_is_named(root):
    ev = dict(type='Accuracy', ann_file=str(root / 'nope.json'))
    with pytest.raises(DataNotFoundError) as err:
        check_config(_cfg(root, evaluator=ev), mode='train')
    msg = str(err.value)
    assert 'val_evaluator.ann_file' in msg
    assert repr(str(root / 'nope.json')) in msg


def test_missing_train_ann_file_of_a_loss_is_named(root):
    cfg = _cfg(root)
    missing = str(root / 'gone.txt')
    cfg['model']['head']['loss'] = dict(type='GRWLoss', train_ann_file=missing)
    with pytest.raises(DataNotFoundError) as err:
        check_config(cfg, mode='train')
    msg = str(err.value)
    assert 'model.head.loss.train_ann_file' in msg and repr(missing) in msg


def test_train_ann_file_label_beyond_the_head(root):
    cfg = _cfg(root)
    big = _write_list(root / 'big.txt', [0, 1, 9])
    cfg['model']['head']['loss'] = dict(type='GRWLoss', train_ann_file=big)
    with pytest.raises(ConfigCheckError) as err:
        check_config(cfg, mode='train')
    msg = str(err.value)
    assert f'{big}:3' in msg and 'label 9' in msg
    assert 'model.head.num_classes=5' in msg


def test_metric_counting_other_classes_than_the_model(root):
    small = _write_list(root / 'small.txt', [0, 1, 2, 3])  # 4 classes
    ev = dict(type='LongTailAccuracy', train_ann_file=small)
    with pytest.raises(ConfigCheckError) as err:
        check_config(_cfg(root, evaluator=ev), mode='train')
    msg = str(err.value)
    assert 'val_evaluator counts 4 classes' in msg
    assert 'model.head.num_classes=5' in msg
    # an explicit num_classes equal to the model's is fine
    ev['num_classes'] = 5
    check_config(_cfg(root, evaluator=ev), mode='train')
    ev['num_classes'] = 4
    with pytest.raises(ConfigCheckError, match='num_classes=4 but'):
        check_config(_cfg(root, evaluator=ev), mode='train')


def test_seg_dataset_classes_vs_decode_head(tmp_path):
    (tmp_path / 'img').mkdir()
    ds = dict(
        type='BaseSegDataset',
        data_root=str(tmp_path),
        data_prefix=dict(img_path='img'),
        metainfo=dict(classes=('a', 'b', 'c', 'd')))
    cfg = dict(
        default_scope='mmseg',
        model=dict(decode_head=dict(num_classes=5)),
        train_dataloader=dict(dataset=ds))
    with pytest.raises(ConfigCheckError) as err:
        check_config(cfg, mode='train')
    msg = str(err.value)
    assert 'has 4 classes' in msg and 'model.decode_head.num_classes=5' in msg
    cfg['model']['decode_head']['num_classes'] = 4
    check_config(cfg, mode='train')


def test_dataset_classes_read_from_a_file(root):
    (root / 'classes.txt').write_text('\n'.join('abcdef') + '\n')
    cfg = _cfg(root, head=5, ds_extra=dict(classes='classes.txt'))
    with pytest.raises(ConfigCheckError) as err:
        check_config(cfg, mode='train')
    assert 'has 6 classes' in str(err.value)
    assert 'model.head.num_classes=5' in str(err.value)
