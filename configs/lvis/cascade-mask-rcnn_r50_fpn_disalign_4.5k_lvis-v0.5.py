# DisAlign stage 2, linear Cascade Mask R-CNN R50-FPN, LVIS v0.5 (DisAlign
# Table 7 / 18 "DisAlign"): the DisAlign* recipe on the ms-2x cascade.
_base_ = './cascade-mask-rcnn_r50_fpn_disalign-cosine_4.5k_lvis-v0.5.py'

model = dict(
    roi_head=dict(bbox_head=[
        dict(head, cls_predictor_cfg=dict(type='DisAlignLinear'))
        for head in _base_.model.roi_head.bbox_head
    ]))

load_from = 'work_dirs/cascade-mask-rcnn_r50_fpn_ms-2x_lvis-v0.5/epoch_24.pth'
