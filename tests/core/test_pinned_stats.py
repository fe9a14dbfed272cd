"""Pinned count sources of lt_mm.core.stats.resolve_counts (mutation
audit: the ``dataset=`` / ``reader=`` path had no test)."""
import pytest

from lt_mm.core.stats import check_one_source, resolve_counts


def test_resolve_counts_reads_the_dataset_through_the_reader():
    calls = []

    def reader(dataset, unit, num_classes):
        calls.append((dataset, unit, num_classes))
        return [5, 1, 2]

    out = resolve_counts(
        dataset='train.txt', reader=reader, num_classes=3, unit='images')
    assert out == [5.0, 1.0, 2.0]
    assert calls == [('train.txt', 'images', 3)]
    # the reader's counts are validated like explicit ones
    with pytest.raises(ValueError, match='num_classes=4'):
        resolve_counts(dataset='train.txt', reader=reader, num_classes=4)


def test_resolve_counts_dataset_without_reader_names_the_dataset():
    with pytest.raises(
            ValueError, match=r"dataset='train.txt' needs a toolbox reader"):
        resolve_counts(dataset='train.txt')


def test_check_one_source_names_the_component_and_the_hint():
    assert check_one_source(
        'head', 'counts=[...]', counts=None,
        stats_file='s.json') == 'stats_file'
    with pytest.raises(
            ValueError,
            match=r'head needs per-class training '
            r'counts: pass counts=\[...\]'):
        check_one_source('head', 'counts=[...]', counts=None, stats_file=None)
    with pytest.raises(
            ValueError,
            match=r"head: give the class counts from "
            r"one source only, got \['counts', 'stats_file'\]"):
        check_one_source('head', 'x', counts=[1], stats_file='s.json')


def test_resolve_counts_two_sources_are_named():
    with pytest.raises(
            ValueError,
            match=r"either as counts=\[...\] or as "
            r"stats_file='s.json', not both"):
        resolve_counts(counts=[1, 2], stats_file='s.json')
    with pytest.raises(
            ValueError,
            match=r"exactly one source; got "
            r"\['counts', 'dataset'\]"):
        resolve_counts(counts=[1, 2], dataset='train.txt')
