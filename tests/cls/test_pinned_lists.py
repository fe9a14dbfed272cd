"""Pinned list reading and image counting of the classification adapter
(found unpinned by a mutation audit): ImageNet-LT list lines, labels
outside [0, C) named with their line, counts per class (hand-computed on
tiny lists under ``tmp_path``)."""
import pytest

from lt_mm.cls.counts import read_list_file


def _list(tmp_path, text, name='train.txt'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_negative_label_named_with_its_line(tmp_path):
    path = _list(tmp_path, 'a.jpg 0\nb.jpg -1\n')
    with pytest.raises(ValueError, match=r'train.txt:2: label -1 is negative'):
        read_list_file(path)


def test_empty_list_refused(tmp_path):
    path = _list(tmp_path, '\n\n')
    with pytest.raises(ValueError, match='has no samples'):
        read_list_file(path)


def test_list_counts_and_label_beyond_num_classes(tmp_path):
    from lt_mm.cls.counts import class_stats_from_list
    path = _list(tmp_path, 'a.jpg 0\nb.jpg 2\nc c.jpg 2\n\nd.jpg 0\ne.jpg 0\n')
    # labels 0, 2, 2, 0, 0 (a path may hold a space): n = [3, 0, 2]
    stats = class_stats_from_list(path, cache_file=False)
    assert stats.counts == [3, 0, 2] and stats.unit == 'images'
    stats = class_stats_from_list(path, num_classes=4, cache_file=False)
    assert stats.counts == [3, 0, 2, 0]
    with pytest.raises(ValueError, match='has label 2 but num_classes=2'):
        class_stats_from_list(path, num_classes=2, cache_file=False)


def _folder(tmp_path):
    """CustomDataset folder layout: a/ 2 images, b/ 1 (never decoded)."""
    for name in ('a/1.jpg', 'a/2.jpg', 'b/3.jpg'):
        p = tmp_path / 'img' / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b'')
    return dict(type='CustomDataset', data_root=str(tmp_path / 'img'))


def test_dataset_counts_need_classes(tmp_path):
    from lt_mm.cls.counts import class_stats_from_dataset
    with pytest.raises(ValueError, match='has no classes'):
        class_stats_from_dataset(_folder(tmp_path), num_classes=0)


# equal-length label lists reach lt_mm's check; lists of different
# lengths make mmpretrain's get_gt_labels fail first (numpy: inhomogeneous)
@pytest.mark.parametrize('second', [[1, 0], [1]])
def test_multi_label_dataset_refused(tmp_path, second):
    import json

    from lt_mm.cls.counts import class_stats_from_dataset
    (tmp_path / 'ml.json').write_text(
        json.dumps(
            dict(
                metainfo=dict(classes=['x', 'y']),
                data_list=[
                    dict(img_path='0.jpg', gt_label=[0, 1]),
                    dict(img_path='1.jpg', gt_label=second),
                ])))
    cfg = dict(
        type='MultiLabelDataset', data_root=str(tmp_path), ann_file='ml.json')
    with pytest.raises(ValueError, match='MultiLabelDataset is multi-label'):
        class_stats_from_dataset(cfg, cache_file=False)


def test_read_cls_counts_refuses_pixel_unit(tmp_path):
    from lt_mm.cls.counts import read_cls_counts
    path = _list(tmp_path, 'a.jpg 0\n')
    with pytest.raises(ValueError, match="unit='pixels'"):
        read_cls_counts(path, unit='pixels')


def test_imagenet_lt_dataset_argument_errors(tmp_path):
    from lt_mm.cls.datasets import ImageNetLTDataset
    with pytest.raises(ValueError, match='needs ann_file'):
        ImageNetLTDataset(ann_file='')
    path = _list(tmp_path, 'a.jpg 0\n')
    with pytest.raises(
            FileNotFoundError,
            match=r"classes file '.*nonames\.txt' does not exist"):
        ImageNetLTDataset(
            ann_file=path, data_root=str(tmp_path), classes='nonames.txt')
    with pytest.raises(ValueError, match='num_classes=3 but 2 class names'):
        ImageNetLTDataset(ann_file=path, classes=['x', 'y'], num_classes=3)
