"""lt_mm classification heads (registered in mmpretrain's MODELS)."""
from .base import CosineClsHead, LongTailHeadMixin, LTLinearClsHead, head_of
from .decoupling import CRTClsHead, LWSClsHead, NCMClsHead, TauNormClsHead
from .disalign import DisAlignCosineClsHead, DisAlignLinearClsHead
from .tde import CausalNormClsHead

__all__ = [
    'LongTailHeadMixin', 'LTLinearClsHead', 'CosineClsHead', 'head_of',
    'DisAlignLinearClsHead', 'DisAlignCosineClsHead', 'CausalNormClsHead',
    'TauNormClsHead', 'LWSClsHead', 'CRTClsHead', 'NCMClsHead'
]
