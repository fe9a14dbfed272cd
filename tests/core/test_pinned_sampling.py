"""Pinned bad inputs of lt_mm.core.sampling (Decoupling Eq. 1-2) found by
a mutation audit."""
import pytest

from lt_mm.core.sampling import class_aware_indices, class_weighted_indices


def test_empty_class_list_is_refused():
    with pytest.raises(
            ValueError, match='^class_to_indices is empty; '
            'expected one list'):
        class_aware_indices([], 4)
    with pytest.raises(
            ValueError, match='^class_to_indices is empty; '
            'expected one list'):
        class_weighted_indices([], [], 4)


@pytest.mark.parametrize('bad', ['ab', b'ab', 3])
def test_class_lists_must_be_a_list_of_lists(bad):
    with pytest.raises(ValueError, match='class_to_indices must be a list'):
        class_aware_indices(bad, 4)
