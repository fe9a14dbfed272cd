"""Pinned filling of class counts from the training dataset
(lt_mm.engine.counts: ``training_class_stats``, ``_walk``,
``fill_class_counts``), found unguarded by a mutation audit: the unit of
each toolbox (images by default, a consumer's own unit), the C each
consumer is counted for (inherited down the model, the model's C for the
evaluators), wrapped and concatenated training sets, errors that name the
missing annotations, and consumers that already give a source.

The configs are plain mmengine Configs around tiny ImageNet-LT lists and
COCO jsons written in tmp_path; the expected counts are in comments.
"""
import pytest
from mmengine.config import Config

import lt_mm.cls  # noqa: F401
import lt_mm.det  # noqa: F401
from lt_mm.cls.counts import read_cls_counts
from lt_mm.core.stats import ClassStats
from lt_mm.det.counts import read_det_counts
from lt_mm.engine.counts import (build_without_pipeline, fill_class_counts,
                                 register_count_reader, training_class_stats)
from lt_mm.engine.preflight import DataNotFoundError
from tests.cls.test_pinned_lists import _list
from tests.det.test_pinned_counts import _COCO_ANNS, _COCO_CATS, _write

# labels 0, 0, 1, 0 -> images per class [3, 1] (C = 2 from the labels)
_TRAIN = 'a.jpg 0\nb.jpg 0\nc.jpg 1\nd.jpg 0\n'


def _cls_cfg(tmp_path, dataset=None, **parts):
    if dataset is None:
        _list(tmp_path, _TRAIN)
        dataset = dict(
            type='ImageNetLTDataset',
            data_root=str(tmp_path),
            ann_file='train.txt',
            pipeline=[dict(type='LoadImageFromFile')])
    cfg = dict(
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            head=dict(
                type='LinearClsHead',
                num_classes=3,
                in_channels=4,
                loss=dict(type='GRWLoss'),
                posthoc=dict(type='nc_tau', tau=0.5))),
        train_dataloader=dict(dataset=dataset),
        val_evaluator=[dict(type='LongTailAccuracy')])
    cfg.update(parts)
    return Config(cfg)


def _det_cfg(tmp_path):
    # categories 7 'b', 3 'a': images [2, 1], instances [3, 1]
    _write(tmp_path / 'train.json', _COCO_CATS, _COCO_ANNS)
    return Config(
        dict(
            default_scope='mmdet',
            model=dict(
                type='FasterRCNN',
                roi_head=dict(
                    bbox_head=dict(
                        num_classes=2, posthoc=dict(type='nc_tau', tau=0.5)))),
            train_dataloader=dict(
                dataset=dict(
                    type='CocoDataset',
                    data_root=str(tmp_path),
                    ann_file='train.json',
                    data_prefix=dict(img='')))))


# ------------------------------------------------------------------ fill
def test_fill_counts_for_the_model_c_down_the_tree(tmp_path):
    cfg = _cls_cfg(tmp_path)
    filled = fill_class_counts(cfg)
    # the loss, the post-hoc prior and the evaluator in its list; all
    # counted for the head's C = 3: [3, 1, 0] (never the labels' C = 2)
    assert filled == [
        'model.head.loss', 'model.head.posthoc', 'val_evaluator.0'
    ]
    assert cfg.model.head.loss.counts == [3.0, 1.0, 0.0]
    assert cfg.model.head.posthoc.counts == [3.0, 1.0, 0.0]
    assert cfg.val_evaluator[0].counts == [3.0, 1.0, 0.0]
    # each consumer its own list
    cfg.model.head.loss.counts[0] = 7.0
    assert cfg.val_evaluator[0].counts[0] == 3.0


def test_fill_counts_per_consumer_c(tmp_path):
    # the evaluator says C = 4: its own count [3, 1, 0, 0]
    cfg = _cls_cfg(
        tmp_path, val_evaluator=dict(type='LongTailAccuracy', num_classes=4))
    assert fill_class_counts(cfg) == [
        'model.head.loss', 'model.head.posthoc', 'val_evaluator'
    ]
    assert cfg.model.head.loss.counts == [3.0, 1.0, 0.0]
    assert cfg.val_evaluator.counts == [3.0, 1.0, 0.0, 0.0]


def test_fill_skips_given_sources_not_none_ones(tmp_path):
    stats = str(tmp_path / 'stats.json')
    cfg = _cls_cfg(tmp_path)
    cfg.model.head.loss.stats_file = stats  # given: kept as it is
    cfg.model.head.posthoc.counts = None  # None is no source: filled
    cfg.val_evaluator[0].splits = dict(many=[0], medium=[1], few=[2])
    assert fill_class_counts(cfg) == ['model.head.posthoc']
    assert 'counts' not in cfg.model.head.loss
    assert cfg.model.head.loss.stats_file == stats
    assert 'counts' not in cfg.val_evaluator[0]


def test_fill_components_given_as_classes(tmp_path):
    # type=<the class> instead of its registered name
    from lt_mm.cls import GRWLoss, LongTailAccuracy
    cfg = _cls_cfg(tmp_path, val_evaluator=dict(type=LongTailAccuracy))
    cfg.model.head.loss = dict(type=GRWLoss)
    assert fill_class_counts(cfg) == [
        'model.head.loss', 'model.head.posthoc', 'val_evaluator'
    ]
    assert cfg.model.head.loss.counts == [3.0, 1.0, 0.0]
    assert cfg.val_evaluator.counts == [3.0, 1.0, 0.0]


def test_fill_unknown_scope_is_left_alone(tmp_path):
    cfg = _cls_cfg(tmp_path, default_scope='mmocr')
    assert fill_class_counts(cfg) == []
    assert 'counts' not in cfg.model.head.posthoc


def test_det_fill_uses_images(tmp_path):
    # the post-hoc prior of a detection head: images b = 2, a = 1
    cfg = _det_cfg(tmp_path)
    assert fill_class_counts(cfg) == ['model.roi_head.bbox_head.posthoc']
    assert cfg.model.roi_head.bbox_head.posthoc.counts == [2.0, 1.0]


@pytest.mark.parametrize('key', ['unit', 'count_unit'])
def test_det_fill_follows_the_consumers_unit(tmp_path, key):
    # the loss asks for instances (b = 3, a = 1), the prior keeps images
    cfg = _det_cfg(tmp_path)
    head = cfg.model.roi_head.bbox_head
    head.loss_cls = {'type': 'GRWLoss', key: 'instances'}
    assert fill_class_counts(cfg) == [
        'model.roi_head.bbox_head.posthoc', 'model.roi_head.bbox_head.loss_cls'
    ]
    assert head.loss_cls.counts == [3.0, 1.0]
    assert head.posthoc.counts == [2.0, 1.0]


# ------------------------------------------------------ training stats
def test_training_stats_unit_default_and_given(tmp_path):
    cfg = _det_cfg(tmp_path)
    st = training_class_stats(cfg)
    assert st.counts == [2.0, 1.0] and st.unit == 'images'
    assert st.names == ['b', 'a'] and st.dataset == 'train.json'
    st = training_class_stats(cfg, 'instances', 2)
    assert st.counts == [3.0, 1.0] and st.unit == 'instances'
    with pytest.raises(
            ValueError,
            match='GRWLoss: counting '
            'train_dataloader.dataset: .*num_classes=3'):
        training_class_stats(cfg, 'images', 3, key='GRWLoss')


def test_registered_reader_is_used(tmp_path):
    # a toolbox reader registered by the user replaces lt_mm's own

    def reader(dataset, unit, num_classes):
        return ClassStats(counts=[5, 6, 7], unit='images')

    register_count_reader('mmpretrain', reader)
    try:
        st = training_class_stats(_cls_cfg(tmp_path), num_classes=3)
    finally:
        register_count_reader('mmpretrain', read_cls_counts)
    assert st.counts == [5.0, 6.0, 7.0]


def test_wrapped_and_concatenated_training_sets(tmp_path):
    _list(tmp_path, _TRAIN)
    # second part: labels 1, 1 -> [0, 2]
    _list(tmp_path, 'e.jpg 1\nf.jpg 1\n', name='more.txt')

    def part(ann):
        return dict(
            type='ImageNetLTDataset', data_root=str(tmp_path), ann_file=ann)

    # RepeatDataset: the counts of the data, not of the repeated stream
    cfg = _cls_cfg(
        tmp_path,
        dict(type='RepeatDataset', times=5, dataset=part('train.txt')))
    st = training_class_stats(cfg, num_classes=2)
    assert st.counts == [3.0, 1.0] and st.dataset == 'train.txt'
    # ConcatDataset: parts summed [3 + 0, 1 + 2]
    cfg = _cls_cfg(
        tmp_path,
        dict(
            type='ConcatDataset',
            datasets=[part('train.txt'), part('more.txt')]))
    st = training_class_stats(cfg, num_classes=2)
    assert st.counts == [3.0, 3.0] and st.dataset is None
    # without C the parts disagree (2 and 2 classes agree; 3 labels
    # in a third part would not)
    _list(tmp_path, 'g.jpg 2\n', name='third.txt')
    cfg = _cls_cfg(
        tmp_path,
        dict(
            type='ConcatDataset',
            datasets=[part('train.txt'), part('third.txt')]))
    with pytest.raises(ValueError, match='have 2 and 3 classes'):
        training_class_stats(cfg, key='GRWLoss')


def test_pipelines_are_never_built(tmp_path):
    # a transform no registry knows, also inside a wrapper: the counts
    # read the annotations only (images b = 2, a = 1)
    bad = [dict(type='NoSuchTransformAnywhere')]
    cfg = _det_cfg(tmp_path)
    coco = dict(
        cfg.train_dataloader.dataset.to_dict(),
        metainfo=dict(classes=('b', 'a')),
        pipeline=bad)
    assert read_det_counts(
        coco, cache_file=False, source='dataset').counts == [2.0, 1.0]
    wrapped = dict(type='ConcatDataset', datasets=[coco])
    assert read_det_counts(wrapped, source='dataset').counts == [2.0, 1.0]
    # a dataset already built is used as it is
    ds = build_without_pipeline(coco, 'mmdet')
    assert build_without_pipeline(ds, 'mmdet') is ds
    cls = _cls_cfg(tmp_path)
    cls.train_dataloader.dataset.pipeline = bad
    assert training_class_stats(cls).counts == [3.0, 1.0]


@pytest.mark.parametrize('where', ['relative', 'absolute', 'folder'])
def test_missing_annotations_named(tmp_path, where):
    missing = str(tmp_path / 'missing.txt')
    ds = dict(type='ImageNetLTDataset', data_root=str(tmp_path))
    if where == 'relative':
        ds['ann_file'] = 'missing.txt'  # under an existing data_root
    elif where == 'absolute':
        ds['ann_file'] = missing  # absolute, data_root exists
    else:
        missing = str(tmp_path / 'nowhere')  # a folder dataset, no list
        ds = dict(type='CustomDataset', data_root=missing)
    cfg = _cls_cfg(tmp_path, ds)
    with pytest.raises(
            DataNotFoundError,
            match=f"GRWLoss: .*annotations '{missing}' do not "
            r'exist \(working directory'):
        training_class_stats(cfg, key='GRWLoss')


def test_reader_file_errors_become_data_errors(tmp_path):
    # the list exists but is not .txt: the dataset is built and its
    # images are missing
    _list(tmp_path, _TRAIN, name='train.lst')
    cfg = _cls_cfg(
        tmp_path,
        dict(
            type='ImageNetLTDataset',
            data_root=str(tmp_path),
            ann_file='train.lst'))
    with pytest.raises(
            DataNotFoundError,
            match='GRWLoss: counting train_dataloader.dataset: '
            '.*4 of 4 images do not exist.* Point the training '
            'data at your copy'):
        training_class_stats(cfg, key='GRWLoss')


def test_no_training_set_named(tmp_path):
    cfg = _cls_cfg(tmp_path)
    cfg.pop('train_dataloader')
    with pytest.raises(
            ValueError,
            match='^model.head.loss needs per-class training '
            'counts and gives no source, and the config has no '
            'train_dataloader.dataset to count. Give the counts '
            'explicitly: model.head.loss.stats_file=') as e:
        training_class_stats(cfg, key='model.head.loss')
    # the hint keeps its placeholders' case (not str.capitalize)
    assert ('model.head.loss.stats_file=PATH (python tools/class_stats.py '
            'CONFIG --out PATH)') in str(e.value)


def test_unknown_scope_named(tmp_path):
    cfg = _cls_cfg(tmp_path, default_scope='mmocr')
    with pytest.raises(
            ValueError,
            match="default_scope='mmocr': lt_mm has no "
            'class-counts reader'):
        training_class_stats(cfg)
