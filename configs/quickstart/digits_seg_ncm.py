# Quickstart nearest class mean classifier for segmentation (Decoupling,
# ICLR 2020, Sec. 4 "NCM", per pixel): no training; NCMCentroidHook computes
# the per-pixel class means of the pre-classifier features (cl2n, squared
# L2) over the training mosaics before testing and saves the model with them
# as <work_dir>/ncm_centroids.pth.
#
#   python tools/test.py configs/quickstart/digits_seg_ncm.py \
#       work_dirs/digits_seg_fcn_stage1/iter_1500.pth
_base_ = './digits_seg_fcn_stage1.py'

model = dict(
    decode_head=dict(
        type='LTDecodeHead',
        head_type='FCNHead',
        classifier=dict(type='NCMConvSeg', feat_type='cl2n', dist='l2')))

custom_hooks = [dict(type='NCMCentroidHook')]
