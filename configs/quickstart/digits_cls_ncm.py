# Nearest class mean classifier (Kang et al., ICLR 2020, Sec. 4): no
# training; the class means (cl2n features, squared-L2 distance) are
# computed from the training set by NCMCentroidHook before testing and
# saved with the model as <work_dir>/ncm_centroids.pth.
#   python tools/test.py configs/quickstart/digits_cls_ncm.py STAGE1.pth
_base_ = './digits_cls_resnet_stage1.py'

model = dict(head=dict(type='NCMClsHead', feat_type='cl2n', dist='l2'))

custom_hooks = [dict(type='NCMCentroidHook')]
