"""lt_mm.engine.feature_cache: the cache key (dataset_fingerprint) follows the
image list, also inside mmengine's dataset wrappers (ClassBalancedDataset,
ConcatDataset), which have no data_list of their own; the class-balanced
view allocation against hand-computed counts; the Conv-BatchNorm folding of
the extraction and its output check."""
import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset, ClassBalancedDataset, ConcatDataset
from torch import nn

from lt_mm.engine.feature_cache import (class_balanced_views,
                                        dataset_fingerprint, fuse_conv_bn,
                                        outputs_match)


class _Tiny(BaseDataset):
    """A dataset whose data list is given (no annotation file)."""

    def __init__(self, paths, labels):
        self._items = [
            dict(img_path=p, gt_label=y) for p, y in zip(paths, labels)
        ]
        super().__init__(serialize_data=False, lazy_init=False)

    def load_data_list(self):
        return list(self._items)

    def get_cat_ids(self, idx):
        return [self.get_data_info(idx)['gt_label']]


def test_fingerprint_follows_the_image_list():
    a = _Tiny(['a.png', 'b.png'], [0, 1])
    same = _Tiny(['a.png', 'b.png'], [0, 1])
    other = _Tiny(['a.png', 'c.png'], [0, 1])
    assert dataset_fingerprint(a) == dataset_fingerprint(same)
    assert dataset_fingerprint(a) != dataset_fingerprint(other)
    # the fields hashed are chosen by the caller
    relabelled = _Tiny(['a.png', 'b.png'], [1, 1])
    assert dataset_fingerprint(a) == dataset_fingerprint(relabelled)
    assert dataset_fingerprint(a, ('img_path', 'gt_label')) != \
        dataset_fingerprint(relabelled, ('img_path', 'gt_label'))


def test_fingerprint_follows_a_file_rewritten_under_its_name(tmp_path):
    img = tmp_path / 'a.png'
    img.write_bytes(b'first')
    paths = [str(img), str(tmp_path / 'missing.png')]
    before = dataset_fingerprint(_Tiny(paths, [0, 1]))
    assert dataset_fingerprint(_Tiny(paths, [0, 1])) == before
    # same name, other content (size and mtime change): other features
    img.write_bytes(b'second image')
    assert dataset_fingerprint(_Tiny(paths, [0, 1])) != before


def test_fingerprint_looks_inside_wrappers():
    paths, labels = ['a.png', 'b.png', 'c.png'], [0, 0, 1]
    other_paths = ['a.png', 'b.png', 'd.png']
    # class 1 is in 1 of 3 images (frequency 1/3 < 0.5): repeated
    rfs = ClassBalancedDataset(_Tiny(paths, labels), oversample_thr=0.5)
    rfs_same = ClassBalancedDataset(_Tiny(paths, labels), oversample_thr=0.5)
    rfs_other = ClassBalancedDataset(
        _Tiny(other_paths, labels), oversample_thr=0.5)
    assert len(rfs) == len(rfs_other) > 3  # same length, other images
    assert dataset_fingerprint(rfs) == dataset_fingerprint(rfs_same)
    assert dataset_fingerprint(rfs) != dataset_fingerprint(rfs_other)
    # the repeat setting is part of the key
    rfs_thr = ClassBalancedDataset(_Tiny(paths, labels), oversample_thr=0.9)
    assert dataset_fingerprint(rfs) != dataset_fingerprint(rfs_thr)
    cat = ConcatDataset([_Tiny(paths, labels), _Tiny(paths, labels)])
    cat_other = ConcatDataset(
        [_Tiny(paths, labels),
         _Tiny(other_paths, labels)])
    assert dataset_fingerprint(cat) != dataset_fingerprint(cat_other)


def test_views_must_hold_the_same_training_list():
    from torch.utils.data import DataLoader

    from lt_mm.engine.feature_cache import check_view_lengths
    a = _Tiny(['a.png', 'b.png'], [0, 1])
    b = _Tiny(['a.png', 'b.png', 'c.png'], [0, 1, 1])
    assert check_view_lengths([DataLoader(a), DataLoader(a)]) == 2
    with pytest.raises(ValueError, match='view 1 has 3 samples, view 0 has 2'):
        check_view_lengths([DataLoader(a), DataLoader(b)])


def test_class_balanced_views_by_hand():
    # N_c = 10, 5, 2; K = 4: ceil(4*2/10) = 1, ceil(4*2/5) = 2, ceil(4) = 4
    classes = [[0]] * 10 + [[1]] * 5 + [[2]] * 2
    v = class_balanced_views(classes, 4)
    assert v.dtype == np.int64
    np.testing.assert_array_equal(v, [1] * 10 + [2] * 5 + [4] * 2)
    # K = 7: ceil(1.4) = 2, ceil(2.8) = 3, 7 (integer ceil, exact)
    np.testing.assert_array_equal(
        class_balanced_views(classes, 7), [2] * 10 + [3] * 5 + [7] * 2)
    # K = 1: one view each; N_c = N_min everywhere: K each
    np.testing.assert_array_equal(class_balanced_views(classes, 1), [1] * 17)
    np.testing.assert_array_equal(
        class_balanced_views([[0], [1], [1], [0]], 3), [3, 3, 3, 3])
    # several classes: the rarest; none: one view (N_0 = 3, N_1 = 1)
    np.testing.assert_array_equal(
        class_balanced_views([[0], [0, 1], [0], []], 5), [2, 5, 2, 1])
    with pytest.raises(ValueError, match='max_views'):
        class_balanced_views(classes, 0)


class _ConvBN(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return (y, self.fc(y.mean((2, 3))))


class _Branchy(_ConvBN):

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: torch.fx cannot trace it
            x = -x
        return super().forward(x)


def test_fuse_conv_bn_folds_and_keeps_the_function():
    torch.manual_seed(0)
    net = _ConvBN()
    net.bn.running_mean.uniform_(-1, 1)
    net.bn.running_var.uniform_(0.5, 2)
    net.bn.weight.data.uniform_(0.5, 1.5)
    net.bn.bias.data.uniform_(-0.5, 0.5)
    with pytest.raises(ValueError, match='eval mode'):
        fuse_conv_bn(net)
    net.eval()
    x = torch.randn(2, 3, 6, 6)
    fused = fuse_conv_bn(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with torch.no_grad():
        a, b = net(x), fused(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert outputs_match(a, b)
    assert fuse_conv_bn(_Branchy().eval()) is None


def test_outputs_match_by_hand():
    a = torch.tensor([[1.0, -10.0]])
    # tolerance relative to the largest magnitude (10): 1e-4 * 10 = 1e-3
    assert outputs_match(a, a + torch.tensor([[9e-4, 0.0]]))
    assert not outputs_match(a, a + torch.tensor([[1.1e-3, 0.0]]))
    assert outputs_match((a, [a]), (a, [a]))
    assert not outputs_match((a, ), (a, a))
    assert not outputs_match(a, a.reshape(2, 1))
    assert not outputs_match(a, (a, ))
