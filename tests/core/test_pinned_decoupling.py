"""Pinned bad inputs of the NCM pieces of lt_mm.core.decoupling
(Decoupling Sec. 4), found by a mutation audit."""
import pytest
import torch

from lt_mm.core._utils import OptionalBuffersMixin
from lt_mm.core.decoupling import (ClassMeansMixin, CosineClassifier,
                                   LearnableWeightScaling, WeightCache,
                                   centroids_from_sums, class_centroids,
                                   class_feature_sums, cosine_logits,
                                   ncm_logits, reinit_classifier_from_stage1,
                                   tau_norm_logits)


def test_one_label_per_sample_names_both_shapes():
    feats, labels = torch.ones(4, 2), torch.tensor([0, 1, 1])
    with pytest.raises(
            ValueError,
            match=r'labels have shape \(3,\) but '
            r'feats have shape \(4, 2\)'):
        class_centroids(feats, labels, 2)
    with pytest.raises(ValueError, match=r'labels have shape \(3,\)'):
        class_feature_sums(feats, labels, 2)


def test_centroids_from_sums_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'got shapes \(2, 3\) and \(3,\)'):
        centroids_from_sums(torch.ones(2, 3), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r'got shapes \(6,\) and \(6,\)'):
        centroids_from_sums(torch.ones(6), torch.ones(6, dtype=torch.long))


def test_centroids_from_sums_missing_class_named_or_zero_row():
    sums = torch.tensor([[2.0, 4.0], [0.0, 0.0], [3.0, 3.0]])
    counts = torch.tensor([2, 0, 3])
    with pytest.raises(ValueError, match=r'classes \[1\] have no sample'):
        centroids_from_sums(sums, counts)
    # allow_missing: [2, 4] / 2 = [1, 2]; zero row; [3, 3] / 3 = [1, 1]
    out = centroids_from_sums(sums, counts, allow_missing=True)
    assert out.tolist() == [[1.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    # every class seen: plain means, no error
    out = centroids_from_sums(sums[[0, 2]], counts[[0, 2]])
    assert out.dtype == torch.float32
    assert out.tolist() == [[1.0, 2.0], [1.0, 1.0]]


@pytest.mark.parametrize('labels,lo,hi', [([0, 2, 1], 0, 2),
                                          ([-1, 0, 1], -1, 1)])
def test_labels_outside_the_classes_are_named(labels, lo, hi):
    feats = torch.ones(3, 2)
    with pytest.raises(
            ValueError,
            match=rf'labels must lie in \[0, 2\) .*'
            rf'got values in \[{lo}, {hi}\]'):
        class_centroids(feats, torch.tensor(labels), 2)
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 2\)'):
        class_feature_sums(feats, torch.tensor(labels), 2)


def test_the_ignore_label_is_dropped_before_the_label_check():
    sums, counts = class_feature_sums(
        torch.ones(4, 2), torch.tensor([0, 1, 255, 1]), 2, ignore_index=255)
    assert counts.tolist() == [1, 2]
    assert sums.tolist() == [[1.0, 1.0], [2.0, 2.0]]


def test_lws_bias_of_another_size_is_refused():
    lws = LearnableWeightScaling(3)
    with pytest.raises(ValueError, match='bias has 2 entries; expected 3'):
        lws(torch.ones(2, 3), torch.ones(2))


def test_ncm_logits_refuses_centroids_that_are_not_a_matrix():
    with pytest.raises(
            ValueError, match=r'centroids must be \(C, D\), got '
            r'shape \(4,\)'):
        ncm_logits(torch.ones(2, 4), torch.ones(4), feat_type='un')


@pytest.mark.parametrize('feat_shape', [(2, 5), (5, )])
def test_feature_dim_mismatch_names_the_shape(feat_shape):
    shape = ', '.join(str(s) for s in feat_shape)
    with pytest.raises(
            ValueError,
            match=rf'feats have shape \({shape},?\) '
            r'but the weight expects D=4'):
        tau_norm_logits(torch.ones(feat_shape), torch.ones(3, 4), 1.0)
    with pytest.raises(ValueError, match=r'the centroids expects D=4'):
        ncm_logits(torch.ones(feat_shape), torch.ones(3, 4), feat_type='un')


def test_cosine_logits_hand_example():
    # x = [3, 4] / 5 = [0.6, 0.8]; rows [3, 4] and [0, 5] normalise to
    # [0.6, 0.8] and [0, 1]: cos = [1.0, 0.8], times s = 10 -> [10, 8]
    # (the columns have other norms, 3 and sqrt(41): rows, not columns)
    feats = torch.tensor([[3.0, 4.0]])
    weight = torch.tensor([[3.0, 4.0], [0.0, 5.0]])
    torch.testing.assert_close(
        cosine_logits(feats, weight, 10.0), torch.tensor([[10.0, 8.0]]))
    # per-pixel features with a 1x1 conv weight: the same numbers per pixel
    out = cosine_logits(feats[:, :, None, None].expand(1, 2, 2, 3),
                        weight[:, :, None, None], torch.tensor(10.0))
    assert out.shape == (1, 2, 2, 3)
    torch.testing.assert_close(out[0, :, 1, 2], torch.tensor([10.0, 8.0]))


class _NCMHead(ClassMeansMixin, OptionalBuffersMixin, torch.nn.Module):
    # as the box classifier: the mixin's buffers are _optional_buffers

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)
        self.init_class_means(2, 2, 'un', 'l2')


def test_stage1_checkpoint_without_class_means_loads_and_keeps_them():
    model = torch.nn.Sequential(_NCMHead())  # buffers under prefix '0.'
    model[0].store_class_means(
        torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([0.5, 0.5]))
    stage1 = {k: v for k, v in model.state_dict().items() if '.fc.' in k}
    result = model.load_state_dict(stage1)  # strict: no missing key
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert model[0].ready
    assert model[0].centroids.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    # a checkpoint that has them overrides them
    full = dict(
        stage1, **{
            '0.centroids': torch.zeros(2, 2),
            '0.global_mean': torch.zeros(2),
            '0.ncm_ready': torch.tensor(0)
        })
    model.load_state_dict(full)
    assert not model[0].ready and model[0].centroids.abs().sum() == 0


def test_reinit_classifier_from_stage1_replaces_the_checkpoint_entries():
    fc = torch.nn.Linear(3, 2)
    stage1 = {
        'head.fc.weight': torch.full((2, 3), 7.0),
        'head.fc.bias': torch.full((2, ), 7.0),
        'head.other': torch.ones(1)
    }
    assert reinit_classifier_from_stage1(fc, stage1, 'head.fc.',
                                         'head.fc.crt_retrained')
    # fresh default init (|w| <= 1/sqrt(3)) in the module and in the dict
    assert torch.equal(stage1['head.fc.weight'], fc.weight.detach())
    assert torch.equal(stage1['head.fc.bias'], fc.bias.detach())
    assert fc.weight.abs().max() <= 3**-0.5
    assert stage1['head.fc.crt_retrained'].item() == 0
    assert stage1['head.other'].tolist() == [1.0]
    # flag 1 (a stage-2 checkpoint): nothing changes
    stage2 = {
        'head.fc.weight': torch.full((2, 3), 7.0),
        'head.fc.crt_retrained': torch.tensor(1)
    }
    assert not reinit_classifier_from_stage1(fc, stage2, 'head.fc.',
                                             'head.fc.crt_retrained')
    assert stage2['head.fc.weight'].unique().tolist() == [7.0]


def test_cosine_classifier_init_bound_is_one_over_sqrt_d():
    # weight ~ U(+-1/sqrt(D)); D = 100 -> |w| <= 0.1
    torch.manual_seed(0)
    w = CosineClassifier(100, 50).weight
    assert w.abs().max() <= 0.1 and w.abs().max() > 0.099


@pytest.mark.parametrize('learn_scale', [False, True])
def test_cosine_classifier_eval_cached_path_hand_example(learn_scale):
    # cos = [0.6, 0.8] (see test_cosine_logits_hand_example), s = 4:
    # [2.4, 3.2] in training, in eval and again from the cache
    m = CosineClassifier(2, 2, scale=4.0, learn_scale=learn_scale)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    feats = torch.tensor([[3.0, 4.0]])
    want = torch.tensor([[2.4, 3.2]])
    torch.testing.assert_close(m(feats), want)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(feats), want)
        torch.testing.assert_close(m(feats), want)


def test_ncm_cos_normalises_each_centroid_row():
    # centroids [3, 4] and [0, 5]: unit rows [0.6, 0.8] and [0, 1];
    # x = [3, 4] -> unit [0.6, 0.8]: cos = [1.0, 0.8]
    # (column norms 3 and sqrt(41) would give other numbers)
    x = torch.tensor([[3.0, 4.0]])
    c = torch.tensor([[3.0, 4.0], [0.0, 5.0]])
    torch.testing.assert_close(
        ncm_logits(x, c, feat_type='un', dist='cos'), torch.tensor([[1.0,
                                                                     0.8]]))
    # two samples: each feature row is normalised on its own
    x2 = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(
        ncm_logits(x2, c, feat_type='un', dist='cos'),
        torch.tensor([[1.0, 0.8], [0.8, 1.0]]))


def test_weight_cache_hit_miss_and_invalidation():
    cache, w, calls = WeightCache(), torch.ones(2), []

    def fn():
        calls.append(1)
        return w * 2

    first = cache.get('w', (w, ), 1.0, fn)
    assert cache.get('w', (w, ), 1.0, fn) is first and len(calls) == 1
    w.add_(1)  # in-place update: new version -> recomputed, [2, 2] * 2
    assert cache.get('w', (w, ), 1.0, fn).tolist() == [4.0, 4.0]
    assert len(calls) == 2
    cache.get('w', (w, ), 2.0, fn)  # other hyper-parameters
    assert len(calls) == 3 and len(cache) == 1


def test_class_feature_sums_cl2n_uses_the_given_global_mean():
    # x - mu with mu = [1, 1]: [1, -1] and [-1, 1], unit length
    # [1, -1] / sqrt2 and [-1, 1] / sqrt2; one sample per class
    feats = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    sums, counts = class_feature_sums(feats, torch.tensor([0, 1]), 2, 'cl2n',
                                      torch.tensor([1.0, 1.0]))
    r = 0.5**0.5
    torch.testing.assert_close(
        sums, torch.tensor([[r, -r], [-r, r]], dtype=torch.float64))
    assert counts.tolist() == [1, 1]
    with pytest.raises(
            ValueError, match="feat_type='cl2n' needs "
            'global_mean'):
        class_feature_sums(feats, torch.tensor([0, 1]), 2, 'cl2n')
