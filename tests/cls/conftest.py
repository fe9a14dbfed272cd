"""Every classification test builds in mmpretrain's scope, whatever ran
before (another test module may have made a different scope current)."""
import pytest
from mmengine.registry import DefaultScope

import lt_mm.cls  # noqa: F401  (registers lt_mm's mmpretrain modules)


@pytest.fixture(autouse=True)
def _mmpretrain_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield
