# Nearest class mean box classifier (Decoupling, Kang et al. ICLR 2020,
# Sec. 4): no training; NCMCentroidHook computes the class means of the
# box-head features of the training ground-truth boxes (cl2n, squared L2)
# before testing and saves them with the model as
# <work_dir>/ncm_centroids.pth; the background probability of the stock
# classifier is kept.
#   python tools/test.py configs/quickstart/digits_det_ncm.py STAGE1.pth
_base_ = './digits_det_mask_rcnn_stage1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(
                type='NCMLinear', feat_type='cl2n', dist='l2', scale=1.0))))

custom_hooks = [dict(type='NCMCentroidHook')]
