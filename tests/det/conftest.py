"""Every detection test builds in mmdet's scope, whatever ran before."""
import pytest
from mmengine.registry import DefaultScope

import lt_mm.det  # noqa: F401  (registers lt_mm's mmdet modules)


@pytest.fixture(autouse=True)
def _mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield
