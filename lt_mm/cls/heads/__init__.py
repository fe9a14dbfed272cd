"""lt_mm classification heads (registered in mmpretrain's MODELS)."""
from .base import CosineClsHead, LongTailHeadMixin, LTLinearClsHead
from .decoupling import CRTClsHead, LWSClsHead, NCMClsHead, TauNormClsHead
from .disalign import DisAlignCosineClsHead, DisAlignLinearClsHead
from .tde import CausalNormClsHead

__all__ = [
    'LongTailHeadMixin', 'LTLinearClsHead', 'CosineClsHead',
    'DisAlignLinearClsHead', 'DisAlignCosineClsHead', 'CausalNormClsHead',
    'TauNormClsHead', 'LWSClsHead', 'CRTClsHead', 'NCMClsHead'
]
