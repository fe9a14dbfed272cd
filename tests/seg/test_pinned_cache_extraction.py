"""Pinned by mutation testing of ``lt_mm.seg.feature_cache`` (round 2 of
the segmentation feature-cache audit: the extraction into the cache), on
a real Runner of the quickstart DisAlign config (its own random initial
weights) over the tiny ADE20K-layout data, and by hand:

* whole maps: every view's row is the decode head's pre-``conv_seg`` map
  of the image after the *training-mode* padding of the data
  preprocessor, and the label row the padded label map (``seg_pad_val``
  outside the image); ``meta.json`` records the views, the samples and
  the pixel options; the model's mode (eval or train) is restored;
* pixel subset: the pixels of view k are drawn by a generator seeded
  ``runner seed * 1000 + k`` (class-balanced when asked), image after
  image; pixels labelled with the head's ``ignore_index`` are never
  drawn; the features are stored in the configured dtype (float16 by
  default);
* labels: uint8 storage while the classes and ``ignore_index`` fit, else
  int32 (``ignore_index=-1``);
* refusals: a loader with more or fewer samples than the dataset, a label
  (e.g. ``seg_pad_val``) that the label storage type cannot hold, views
  whose label maps differ in size, a decode head that does more after its
  classifier (a user's temperature, mmseg's ``DAHead`` with its three
  maps) or never calls it (``SegmenterMaskTransformerHead``; the error
  names the loop), a model that is not EncoderDecoder-like, a decode head
  without ``conv_seg``, batch augmentation, a spatial classifier in
  pixel-subset mode, and ill-typed ``pixels_per_image`` /
  ``class_balanced`` options.
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.models import ImageClassifier
from mmseg.models.decode_heads import FCNHead
from mmseg.registry import DATASETS, MODELS
from torch import nn
from torch.utils.data import DataLoader

from lt_mm.engine.feature_cache import unwrap_model
from lt_mm.seg.feature_cache import (LOOP, check_cacheable_segmentor,
                                     check_seg_cache_options,
                                     extract_seg_cache)
from .test_feature_cache import data_env  # noqa: F401
from .test_pinned_feature_cache import _runner

pytestmark = pytest.mark.usefixtures('data_env')


def _loader(dataset, indices=None):
    n = len(dataset)
    return DataLoader(
        dataset,
        batch_size=3,  # batches of 3, 3 and 2 of the 8 images
        sampler=list(range(n)) if indices is None else list(indices),
        collate_fn=pseudo_collate)


def _extract(model, loaders, root, pixels=None, balanced=False, seed=0):
    return extract_seg_cache(model, loaders, str(root), 'float32', 'fp',
                             pixels, balanced, seed)


def _reference(model, dataset):
    """Per image, one by one: the decode head's map before ``conv_seg``
    (eval mode) of the training-mode preprocessed image, and the padded
    label map."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            data = model.data_preprocessor(pseudo_collate([dataset[i]]), True)
            x = model.extract_feat(data['inputs'])
            feats.append(model.decode_head._forward_feature(x)[0])
            labels.append(data['data_samples'][0].gt_sem_seg.data[0])
    model.train(was_training)
    return torch.stack(feats), torch.stack(labels)


def _expected_pixels(feats, labels, num, ignore, balanced, seed):
    """The cache rows of one view by hand: labels at feature resolution
    (output stride 8: nearest neighbour takes every 8th row and column),
    then, image after image from one generator, ``num`` distinct labelled
    pixels with weight 1 (uniform) or 1 / (pixels of their class in the
    image) (class-balanced)."""
    gen = torch.Generator().manual_seed(seed)
    small = labels[:, ::8, ::8].reshape(len(labels), -1).long()
    flat = feats.reshape(feats.shape[0], feats.shape[1], -1)
    rows_f, rows_l = [], []
    for lab, f in zip(small, flat):
        weights = (lab != ignore).double()
        assert weights.sum() > num  # a draw in every image
        if balanced:
            for c in lab[lab != ignore].unique():
                weights[lab == c] /= int((lab == c).sum())
        idx = torch.multinomial(weights, num, False, generator=gen)
        rows_f.append(f[:, idx])
        rows_l.append(lab[idx])
    return torch.stack(rows_f).numpy(), torch.stack(rows_l).numpy()


def test_whole_maps_after_the_training_padding_in_every_view(tmp_path):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model)
    # 64 x 64 images padded to 72 x 72 in training mode only (test mode
    # keeps 64 x 64): 72 / 8 = 9 x 9 feature maps, label maps padded with
    # seg_pad_val = 255
    model.data_preprocessor.size = (72, 72)
    ds = runner.train_dataloader.dataset
    model.eval()
    cache = _extract(model, [_loader(ds), _loader(ds)], tmp_path / 'c')
    assert not model.training  # eval before: eval after
    feats, labels = _reference(model, ds)
    assert feats.shape == (8, 32, 9, 9) and labels.shape == (8, 72, 72)
    assert cache.feats.shape == (2, 8, 32, 9, 9)
    assert cache.labels.shape == (2, 8, 72, 72)
    assert cache.labels.dtype == np.uint8
    for k in range(2):
        np.testing.assert_allclose(
            cache.feats[k], feats.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(cache.labels[k], labels.numpy())
    assert np.all(cache.labels[:, :, 64:] == 255)
    assert np.all(cache.labels[:, :, :, 64:] == 255)
    assert set(np.unique(cache.labels[:, :, :64, :64])) > {0, 255}
    meta = cache.meta
    assert (meta['views'], meta['num_samples']) == (2, 8)
    assert meta['labels_per_view'] is True
    assert meta['pixels_per_image'] is None
    assert meta['class_balanced'] is False
    assert meta['ignore_index'] == 255
    model.train()
    _extract(model, [_loader(ds)], tmp_path / 'd')
    assert model.training  # train before: train after


def test_pixels_follow_the_runner_seed_and_view(tmp_path):
    runner = _runner(
        tmp_path / 'a',
        seed=3,
        views=2,
        pixels_per_image=4,
        class_balanced=True)
    runner.train()
    cache = runner.train_loop.cache
    # the default storage: float16, rounding error <= 2**-11 relative
    # (2**-25 absolute below float16's smallest normal, 2**-14), plus the
    # float32 summation-order differences of other batches (< 1e-6
    # absolute; atol 1e-5 is far below a wrong pixel's difference, ~0.1)
    assert cache.feats.dtype == np.float16
    assert cache.meta['dtype'] == 'float16'
    assert cache.meta['pixels_per_image'] == 4
    assert cache.meta['class_balanced'] is True
    feats, labels = _reference(
        unwrap_model(runner.model), runner.train_dataloader.dataset)
    for k in range(2):  # the generator of view k: seed 3 * 1000 + k
        f, lab = _expected_pixels(feats, labels, 4, 255, True, 3000 + k)
        np.testing.assert_array_equal(cache.labels[k], lab)
        np.testing.assert_allclose(
            np.asarray(cache.feats[k], np.float32),
            f,
            rtol=2.0**-11,
            atol=1e-5)
    # the two views hold other pixels; uniform draws would be others again
    assert not np.array_equal(cache.labels[0], cache.labels[1])
    assert not np.array_equal(
        cache.labels[0],
        _expected_pixels(feats, labels, 4, 255, False, 3000)[1])


def test_pixels_skip_the_heads_ignore_index(tmp_path):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model)
    model.decode_head.ignore_index = 0  # class 0 counts as unlabelled
    ds = runner.train_dataloader.dataset
    cache = _extract(model, [_loader(ds)], tmp_path / 'c', pixels=4, seed=5)
    assert cache.meta['ignore_index'] == 0
    feats, labels = _reference(model, ds)
    f, lab = _expected_pixels(feats, labels, 4, 0, False, 5000)
    np.testing.assert_array_equal(cache.labels[0], lab)
    np.testing.assert_allclose(cache.feats[0], f, rtol=1e-5, atol=1e-6)
    assert not np.any(lab == 0)  # > 4 other pixels (255 too) per image
    # class 0 is frequent: with ignore_index 255 some would be drawn
    assert np.any(_expected_pixels(feats, labels, 4, 255, False, 5000)[1] == 0)


def test_extraction_refusals(tmp_path):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model)
    ds = runner.train_dataloader.dataset
    root = tmp_path / 'c'
    with pytest.raises(ValueError, match='yields more samples'):
        _extract(model, [_loader(ds, list(range(8)) + [0])], root)
    with pytest.raises(ValueError, match='view 0 yielded 7 samples'):
        _extract(model, [_loader(ds, range(7))], root)
    # view 1 resizes the images to 63 x 63: the same 8 x 8 feature maps
    # (stride 8, rounded up) but 63 x 63 label maps (size (8, 8) pads none)
    cfg = copy.deepcopy(runner.cfg.train_dataloader.dataset)
    cfg.pipeline.insert(2,
                        dict(type='Resize', scale=(63, 63), keep_ratio=False))
    resized = DATASETS.build(cfg)
    model.data_preprocessor.size = (8, 8)
    with pytest.raises(ValueError, match=r'\(64, 64\) vs \(63, 63\)'):
        _extract(model, [_loader(ds), _loader(resized)], root)
    # no fixed size: fine while all images have one size (63 = 7 x 9)
    model.data_preprocessor.size = None
    model.data_preprocessor.size_divisor = 9
    assert _extract(model, [_loader(resized)],
                    root).labels.shape == (1, 8, 63, 63)
    # a padding value that the uint8 label storage cannot hold
    model.data_preprocessor.size = (72, 72)
    model.data_preprocessor.size_divisor = None  # mmseg: one of the two
    model.data_preprocessor.seg_pad_val = 300
    with pytest.raises(ValueError, match=r'outside \[0, 255\]'):
        _extract(model, [_loader(ds)], root)
    # ignore_index -1 (and padding -1): int32 labels, -1 kept
    model.decode_head.ignore_index = -1
    model.data_preprocessor.seg_pad_val = -1
    cache = _extract(model, [_loader(ds)], root)
    assert cache.labels.dtype == np.int32
    assert np.all(cache.labels[:, :, 64:] == -1)
    assert set(np.unique(cache.labels[:, :, :64, :64])) > {0, 255}


class _HalvedFCNHead(FCNHead):
    """A user's head with a temperature after its classifier."""

    def forward(self, inputs):
        return super().forward(inputs) / 2


@pytest.mark.parametrize(
    'head_type, extra, message',
    [
        (_HalvedFCNHead, {}, r'is not cls_seg\(<conv_seg input>\)'),
        ('DAHead', dict(pam_channels=8), r'is not cls_seg\(<conv_seg inp'),
        # masks from class embeddings: conv_seg is never called
        ('SegmenterMaskTransformerHead',
         dict(
             num_layers=1,
             num_heads=2,
             embed_dims=32,
             norm_cfg=dict(type='LN')),
         f'^{LOOP}: LTSegmenterMaskTransformerHead.forward '
         'did not call conv_seg'),
    ],
    ids=['temperature', 'DAHead', 'Segmenter'])
def test_refuses_heads_not_ending_in_cls_seg(tmp_path, head_type, extra,
                                             message):
    runner = _runner(tmp_path / 'a')
    model = unwrap_model(runner.model)
    cfg = copy.deepcopy(runner.cfg.model.decode_head)
    if extra:  # no FCN arguments for another head type
        cfg.pop('num_convs')
        cfg.pop('concat_input')
    model.decode_head = MODELS.build(dict(cfg, head_type=head_type, **extra))
    with pytest.raises(ValueError, match=message):
        _extract(model, [_loader(runner.train_dataloader.dataset)],
                 tmp_path / 'c')


def test_structural_refusals(tmp_path):
    model = unwrap_model(_runner(tmp_path / 'a').model)
    check_cacheable_segmentor(model, 4)  # the 1x1 DisAlign classifier
    classifier = ImageClassifier(
        backbone=dict(type='mmpretrain.LeNet5'),
        data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor'))
    with pytest.raises(ValueError, match='got ImageClassifier'):
        check_cacheable_segmentor(classifier)
    head = model.decode_head
    one_by_one = head.conv_seg
    # a spatial classifier: fine on whole maps, refused on pixels
    head.conv_seg = nn.Conv2d(32, 10, 3, padding=1)
    check_cacheable_segmentor(model)
    with pytest.raises(ValueError, match=r'\(decode_head.conv_seg.<self>\)'):
        check_cacheable_segmentor(model, 4)
    head.conv_seg = nn.Sequential(one_by_one, nn.Conv2d(10, 10, 3))
    with pytest.raises(ValueError, match=r'\(decode_head.conv_seg.1\)'):
        check_cacheable_segmentor(model, 4)
    del head.conv_seg
    with pytest.raises(ValueError, match='the decode head has no conv_seg'):
        check_cacheable_segmentor(model)
    head.conv_seg = one_by_one
    model.data_preprocessor.batch_augments = [dict(type='CutMix')]
    with pytest.raises(ValueError, match='applies batch augmentation'):
        check_cacheable_segmentor(model)


def test_pixel_option_types():
    opts = check_seg_cache_options(
        dict(pixels_per_image=np.int64(4), class_balanced=True))
    assert type(opts['pixels_per_image']) is int  # JSON-serialisable meta
    assert opts['pixels_per_image'] == 4 and opts['class_balanced'] is True
    for bad, msg in ((dict(pixels_per_image=True), 'pixels_per_image=True'),
                     (dict(class_balanced=1), 'class_balanced=1 must')):
        with pytest.raises(ValueError, match=msg):
            check_seg_cache_options(bad)
