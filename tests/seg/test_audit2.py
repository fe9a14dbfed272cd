"""Audit 2: the feature-cache key (lt_mm.engine.feature_cache.
preprocessor_fingerprint, part of every cached loop's key) follows mmseg's
and mmdet's data preprocessors: normalisation (non-persistent ``mean`` /
``std`` buffers), channel order and padding."""
import pytest
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmseg.models.data_preprocessor import SegDataPreProcessor

from lt_mm.engine.feature_cache import (preprocessor_fingerprint,
                                        state_fingerprint)

BASE = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])


@pytest.mark.parametrize('cls, changes', [
    (SegDataPreProcessor, [
        dict(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]),
        dict(bgr_to_rgb=True),
        dict(seg_pad_val=0),
        dict(size=(64, 64))
    ]),
    (DetDataPreprocessor, [
        dict(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]),
        dict(bgr_to_rgb=True),
        dict(pad_size_divisor=32)
    ]),
])
def test_preprocessor_key_follows_settings(cls, changes):
    base = preprocessor_fingerprint(cls(**BASE))
    assert preprocessor_fingerprint(cls(**BASE)) == base
    for change in changes:
        assert preprocessor_fingerprint(cls(**dict(BASE, **change))) != base, \
            change


def test_state_key_includes_non_persistent_buffers():
    a = SegDataPreProcessor(**BASE)
    b = SegDataPreProcessor(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    assert 'mean' not in a.state_dict()  # why the state dict alone missed it
    assert state_fingerprint(a) != state_fingerprint(b)
    assert state_fingerprint(a) == state_fingerprint(
        SegDataPreProcessor(**BASE))


def test_seg_cache_key_follows_label_decoding(tmp_path):
    """A class subset's label_map (or reduce_zero_label) changes the
    decoded labels of the same files, so it must change the key."""
    from mmseg.datasets import BaseSegDataset

    from lt_mm.engine.feature_cache import dataset_fingerprint
    from lt_mm.seg.feature_cache import SEG_FINGERPRINT_KEYS

    def dataset(**info):
        ds = BaseSegDataset(
            data_root=str(tmp_path), lazy_init=True, serialize_data=False)
        ds._fully_initialized = True  # the data list is given below
        ds.data_list = [
            dict(
                img_path='a.jpg',
                seg_map_path='a.png',
                label_map=None,
                reduce_zero_label=True,
                **info)
        ]
        return ds

    base = dataset_fingerprint(dataset(), SEG_FINGERPRINT_KEYS)
    assert dataset_fingerprint(dataset(), SEG_FINGERPRINT_KEYS) == base
    remapped = dataset()
    remapped.data_list[0]['label_map'] = {0: 1, 1: 0}
    assert dataset_fingerprint(remapped, SEG_FINGERPRINT_KEYS) != base
    plain = dataset()
    plain.data_list[0]['reduce_zero_label'] = False
    assert dataset_fingerprint(plain, SEG_FINGERPRINT_KEYS) != base
