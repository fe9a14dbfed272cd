"""Pinned by mutation testing of ``lt_mm.det.feature_cache`` (the RoI
feature extraction ``extract_roi_cache`` and the refusals of
``check_cacheable_detector``), called directly -- no training -- on a real
Runner of the quickstart DisAlign config (its own random initial weights)
over the tiny LVIS-format data, with the loop's own extraction loaders:

* every stored row of both views is the input of ``fc_cls`` for one sampled
  RoI, recomputed here from the preprocessed batch: backbone + neck ->
  ``bbox_roi_extractor`` on the RoIs the head saw -> the shared fcs (eval
  mode); its label is the class of the ground truth it overlaps with IoU >=
  0.5 (background = 8 otherwise), its weight 1; the padding slots are zero;
  ``num_rois`` is the ground truths plus the ``train_cfg.rpn_proposal``
  proposals (not ``test_cfg.rpn``'s);
* ``meta.json`` (views, samples, slots, classes, padding mismatches); the
  model's mode before the extraction (train or eval) is restored, the
  capture hook removed and the state of ``fc_cls`` (BatchNorm statistics
  of a DisAlign confidence layer) put back; padding mismatches are counted
  and warned about; batches are preprocessed in training mode;
* refusals of the extraction: loaders that yield more or fewer samples
  than the dataset or views of other lengths, a sampler that returns more
  RoIs than its ``num``, a box head that runs ``fc_cls`` twice or not at
  all or changes its output;
* refusals of ``check_cacheable_detector`` on detectors built from the
  quickstart configs: no RPN, no standard RoI head / box head, overridden
  RoI-head or box-head methods, a box head without classifier, OHEM, a
  sampler without a positive int ``num``, batch augmentation, cascades;
* a classifier with dropout is cached (the check of the first batch
  replays ``fc_cls`` from the random state of the head's own call).
"""
import copy

import numpy as np
import pytest
import torch
from mmcv.transforms import RandomChoiceResize
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.task_modules.samplers import PseudoSampler
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_overlaps
from mmengine.dataset import pseudo_collate
from torch import nn
from torch.utils.data import DataLoader, Subset

from lt_mm.det.feature_cache import check_cacheable_detector, extract_roi_cache
from lt_mm.engine.feature_cache import unwrap_model
from ..cls.test_pinned_feature_cache import _loader
from .test_feature_cache import _cfg, data_env  # noqa: F401
from .test_pinned_feature_cache import _runner

pytestmark = pytest.mark.usefixtures('data_env')

PROPOSALS = 20  # train_cfg.rpn_proposal.max_per_img here (test_cfg: 100)


def _model(runner):
    runner.train_loop  # built (and its model checks run) before any change
    model = unwrap_model(runner.model)
    # fewer proposals than the 64 RoI slots: every image keeps all of them
    # (and its ground truths), so num_rois is known and padding exists
    model.train_cfg.rpn_proposal.max_per_img = PROPOSALS
    return model


def _extract(runner, root, loaders=None):
    if loaders is None:
        loaders = runner.train_loop._extraction_loaders()
    return extract_roi_cache(
        unwrap_model(runner.model), loaders, str(root), 'float32', 'fp')


def _record(model):
    """Hooks that keep every preprocessed batch and the RoIs of its box-head
    forward, in order."""
    batches, rois = [], []
    hooks = [
        model.data_preprocessor.register_forward_hook(
            lambda mod, args, out: batches.append(out)),
        model.roi_head.bbox_roi_extractor.register_forward_pre_hook(
            lambda mod, args: rois.append(args[1]))
    ]
    return batches, rois, hooks


@torch.no_grad()
def _expected(model, batch, rois):
    """``x_cls`` (M, 64), labels (M, ) of the RoIs of one batch, by hand:
    frozen features in eval mode -> RoIAlign -> relu(fc) twice; label of the
    best-overlapping ground truth if IoU >= 0.5, else background."""
    roi_head = model.roi_head
    head = roi_head.bbox_head
    x = model.extract_feat(batch['inputs'])
    ext = roi_head.bbox_roi_extractor
    t = ext(x[:ext.num_inputs], rois).flatten(1)
    for fc in head.shared_fcs:
        t = head.relu(fc(t))
    labels = []
    for i, sample in enumerate(batch['data_samples']):
        gt = sample.gt_instances
        iou = bbox_overlaps(rois[rois[:, 0] == i, 1:], gt.bboxes)
        best, arg = iou.max(1)
        labels.append(torch.where(best >= 0.5, gt.labels[arg], 8))
    return t, torch.cat(labels)


def test_stored_rows_targets_meta_and_mode(tmp_path):
    runner = _runner(tmp_path / 'a', views=2, batch_size=4)
    model = _model(runner).train()
    n = len(runner.train_dataloader.dataset)  # batches of 4
    batches, rois, hooks = _record(model)
    cache = _extract(runner, tmp_path / 'c')
    for h in hooks:
        h.remove()
    assert model.training  # train before: train after
    assert not model.roi_head.bbox_head.fc_cls._forward_pre_hooks
    assert cache.meta['views'] == 2 and cache.meta['num_samples'] == n
    assert cache.meta['roi_slots'] == 64 and cache.meta['num_classes'] == 8
    assert cache.meta['padding_mismatches'] == 0  # all 64 x 64
    # K x N x R slots (rcnn sampler num) x D (fc_out_channels)
    assert cache.feats.shape == (2, n, 64, 64)
    assert cache.labels.shape == cache.weights.shape == (2, n, 64)
    assert len(batches) == len(rois) == 2 * n // 4
    model.eval()
    feats, labels = np.asarray(cache.feats), np.asarray(cache.labels)
    weights, num = np.asarray(cache.weights), np.asarray(cache.num_rois)
    for b, (batch, r) in enumerate(zip(batches, rois)):
        x_cls, lab = _expected(model, batch, r)
        k, first = divmod(4 * b, n)
        rows = []
        for i, sample in enumerate(batch['data_samples']):
            m = int((r[:, 0] == i).sum())
            # the ground truths (added as proposals) + every proposal
            assert m == len(sample.gt_instances) + PROPOSALS
            assert num[k, first + i] == m
            rows.append(slice(0, m))
            # padding slots stay zero
            assert not feats[k, first + i, m:].any()
            assert not labels[k, first + i, m:].any()
            assert not weights[k, first + i, m:].any()
        got = np.concatenate(
            [feats[k, first + i, s] for i, s in enumerate(rows)])
        np.testing.assert_allclose(got, x_cls.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(
            np.concatenate(
                [labels[k, first + i, s] for i, s in enumerate(rows)]),
            lab.numpy())
        np.testing.assert_array_equal(
            np.concatenate(
                [weights[k, first + i, s] for i, s in enumerate(rows)]), 1.0)
    # foreground and background rows exist; the views drew other flips
    assert (labels[num > 0] < 8).any()
    assert not np.array_equal(feats[0], feats[1])
    # eval before: eval after
    _extract(runner, tmp_path / 'd')
    assert not model.training


def test_padding_mismatches_are_counted_and_warned(tmp_path):
    runner = _runner(tmp_path / 'a', views=1, batch_size=4)
    model = _model(runner)
    pipeline = runner.train_dataloader.dataset.pipeline.transforms
    # images of 64 x 64 or 32 x 32 (padded to 32, divisor 32): a 32 x 32
    # image in a batch with a 64 x 64 one is padded larger than alone
    at = [type(t).__name__ for t in pipeline].index('Resize')
    pipeline[at] = RandomChoiceResize([(64, 64), (32, 32)], keep_ratio=True)
    batches, _, hooks = _record(model)
    with pytest.warns(UserWarning, match=r'(\d+) image\(s\) were padded'):
        cache = _extract(runner, tmp_path / 'c')
    for h in hooks:
        h.remove()
    small = [
        s.metainfo['img_shape'][:2] != s.metainfo['batch_input_shape']
        for b in batches for s in b['data_samples']
    ]
    assert 0 < sum(small) < 16
    assert cache.meta['padding_mismatches'] == sum(small)


@pytest.mark.parametrize('views, match', [
    ([range(16), list(range(16)) + [0]
      ], 'yields more samples than the dataset has'),
    ([range(15)], 'view 0 yielded 15 samples, the dataset has 16'),
    ([range(16), Subset(range(16), range(15))
      ], 'view 1 has 15 samples, view 0 has 16'),
])
def test_loaders_that_do_not_visit_every_index_once(tmp_path, views, match):
    """Loaders (batches of 8) over indices of the 16 images; a ``Subset``:
    a loader over that subset of the dataset."""
    runner = _runner(tmp_path / 'a', views=1)
    _model(runner)
    ds = runner.train_dataloader.dataset
    loaders = [
        DataLoader(Subset(ds, v.indices), 8, collate_fn=pseudo_collate)
        if isinstance(v, Subset) else _loader(runner, v) for v in views
    ]
    with pytest.raises(ValueError, match=match):
        _extract(runner, tmp_path / 'c', loaders)


def test_extraction_preprocesses_in_training_mode(tmp_path):
    # a batch augmentation (refused by check_cacheable_detector, applied
    # only by data_preprocessor(data, training=True)) pads every 64 x 64
    # image of the batch to 96 x 96: 16 images padded larger than alone
    runner = _runner(tmp_path / 'a', views=1, batch_size=4)
    pre = _model(runner).data_preprocessor
    pre.batch_augments = nn.ModuleList(
        [MODELS.build(dict(type='BatchFixedSizePad', size=(96, 96)))])
    with pytest.warns(UserWarning, match='16 image'):
        cache = _extract(runner, tmp_path / 'c')
    assert cache.meta['padding_mismatches'] == 16


def test_sampler_with_more_rois_than_num(tmp_path):
    runner = _runner(tmp_path / 'a', views=1)
    roi_head = _model(runner).roi_head
    # mmdet's PseudoSampler keeps every proposal (20 here): one more than
    # the slots its num promises
    roi_head.bbox_sampler = PseudoSampler()
    roi_head.bbox_sampler.num = PROPOSALS - 1
    with pytest.raises(ValueError, match='returned 20 RoIs .* num=19'):
        _extract(runner, tmp_path / 'c')


def _swap_head(runner, head_type=Shared2FCBBoxHead, **changes):
    """Replace the box head by ``head_type`` built from the config's box-head
    options updated with ``changes``, with the old head's weights."""
    roi_head = _model(runner).roi_head
    cfg = dict(runner.cfg.model.roi_head.bbox_head, **changes)
    cfg.pop('type')
    head = head_type(**cfg)
    if not head.with_cls:  # a classifier that the forward never runs
        head.fc_cls = nn.Linear(64, 9)
    head.load_state_dict(roi_head.bbox_head.state_dict(), strict=False)
    roi_head.bbox_head = head
    return head


class _TwiceHead(Shared2FCBBoxHead):
    """Averages two forward passes (fc_cls runs twice)."""

    def forward(self, x):
        a, b = super().forward(x), super().forward(x)
        return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


class _ScaledHead(Shared2FCBBoxHead):
    """Divides the scores of fc_cls by 2 (does more after fc_cls)."""

    def forward(self, x):
        cls_score, bbox_pred = super().forward(x)
        return cls_score / 2, bbox_pred


@pytest.mark.parametrize('head_type, changes, match', [
    (_TwiceHead, {}, 'fc_cls ran 2 times'),
    (Shared2FCBBoxHead, dict(with_cls=False), 'fc_cls ran 0 times'),
    (_ScaledHead, {}, r'_ScaledHead is not fc_cls\(<its input>\) per RoI'),
])
def test_box_head_whose_classifier_input_cannot_be_captured(
        tmp_path, head_type, changes, match):
    runner = _runner(tmp_path / 'a', views=1)
    _swap_head(runner, head_type, **changes)
    with pytest.raises(ValueError, match=match):
        _extract(runner, tmp_path / 'c')


class _OwnLossHead(Shared2FCBBoxHead):
    """Overrides ``loss`` only (here without changing it)."""

    def loss(self, *args, **kwargs):
        return super().loss(*args, **kwargs)


def test_box_head_with_its_own_loss_is_refused(tmp_path):
    runner = _runner(tmp_path / 'a', views=1)
    _swap_head(runner, _OwnLossHead)
    with pytest.raises(ValueError, match="_OwnLossHead.loss differs"):
        check_cacheable_detector(runner.model)


def test_classifier_with_dropout_is_cached(tmp_path):
    # fc_cls runs in training mode, the check replays it from the random
    # state of the head's call (before: two masks, refused as "does more
    # after its classifier", although the cache holds only its input)
    runner = _runner(tmp_path / 'a', views=1, batch_size=4)
    head = _swap_head(
        runner,
        cls_predictor_cfg=dict(
            type='DisAlignLinear',
            confidence_layer=nn.Sequential(nn.Dropout(0.5), nn.Linear(64, 1))))
    # beta != 0: the confidence sigma(x) (with its dropout) moves the scores
    torch.nn.init.ones_(head.fc_cls.calibration.logit_bias)
    cache = _extract(runner, tmp_path / 'c')
    assert cache.feats.shape == (1, 16, 64, 64)


def test_classifier_state_is_restored(tmp_path):
    # fc_cls runs in training mode: the BatchNorm statistics of a DisAlign
    # confidence layer move during the extraction and are put back
    runner = _runner(tmp_path / 'a', views=1, batch_size=4)
    _model(runner).eval()
    head = _swap_head(
        runner,
        cls_predictor_cfg=dict(
            type='DisAlignLinear',
            confidence_layer=nn.Sequential(
                nn.BatchNorm1d(64), nn.Linear(64, 1))))
    before = copy.deepcopy(head.fc_cls.state_dict())
    _extract(runner, tmp_path / 'c')
    after = head.fc_cls.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert not head.fc_cls.training


# ------------------------------------------------ check_cacheable_detector
def _detector(tmp_path, config='digits_det_mask_rcnn_stage1.py', **changes):
    """The detector of a quickstart config with ``changes`` (dotted keys)
    merged into ``cfg.model``."""
    cfg = _cfg(
        dict(options=[], checkpoint=None), tmp_path, config, exact=False)
    cfg.merge_from_dict({f'model.{k}': v for k, v in changes.items()})
    return MODELS.build(cfg.model)


def test_the_quickstart_detector_is_cacheable(tmp_path):
    check_cacheable_detector(_detector(tmp_path))


@pytest.mark.parametrize('changes, match', [
    (dict(rpn_head=None), 'the detector has no RPN'),
    ({
        'roi_head.type': 'PISARoIHead'
    }, "PISARoIHead.loss differs from mmdet's StandardRoIHead"),
    (dict(roi_head=None), 'RoI head NoneType is not an mmdet StandardRoIHead'),
    ({
        'roi_head.bbox_head': None
    }, 'RoI head StandardRoIHead is not an mmdet StandardRoIHead with a box'),
    ({
        'roi_head.type': 'DoubleHeadRoIHead',
        'roi_head.reg_roi_scale_factor': 1.3
    }, r"DoubleHeadRoIHead._bbox_forward differs from mmdet's "
     'StandardRoIHead'),
    ({
        'roi_head.bbox_head.with_cls': False
    }, 'the box head Shared2FCBBoxHead has no classifier fc_cls'),
    ({
        'train_cfg.rcnn.sampler':
        dict(type='OHEMSampler', num=64, pos_fraction=0.25)
    }, 'RoI sampler OHEMSampler reads the box head'),
    ({
        'train_cfg.rcnn.sampler.num': 0
    }, 'RandomSampler has no positive'),
    ({
        'train_cfg.rcnn.sampler.num': 64.0
    }, 'RandomSampler has no positive'),
    ({
        'train_cfg.rcnn.sampler': dict(type='PseudoSampler')
    }, 'PseudoSampler has no positive'),
    ({
        'data_preprocessor.batch_augments':
        [dict(type='BatchFixedSizePad', size=(64, 64))]
    }, 'applies batch augmentation'),
])
def test_refused_detectors(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        check_cacheable_detector(_detector(tmp_path, **changes))


@pytest.mark.parametrize('config, match', [
    ('digits_det_tde.py', 'CausalNormShared2FCBBoxHead.loss_and_target '
     "differs from mmdet's BBoxHead"),
    ('digits_det_cascade_tde.py', 'cascade RoI heads .* not supported'),
])
def test_refused_quickstart_detectors(tmp_path, config, match):
    with pytest.raises(ValueError, match=match):
        check_cacheable_detector(_detector(tmp_path, config))


def test_extraction_batches_one_image_under_a_batch_sampler(tmp_path):
    # mmdet batches through AspectRatioBatchSampler (the DataLoader's own
    # batch_size is None): dataset-order extraction batches would mix
    # aspect ratios, so the default is one image per batch; a given
    # cache batch_size wins
    runner = _runner(tmp_path / 'a', views=1)
    train = runner.train_loop.dataloader
    assert train.batch_size is None and train.batch_sampler.batch_size > 1
    loader, = runner.train_loop._extraction_loaders()
    assert loader.batch_size == 1
    runner = _runner(tmp_path / 'b', views=1, batch_size=3)
    loader, = runner.train_loop._extraction_loaders()
    assert loader.batch_size == 3
