# The matched control of digits_cls_cdt.py: the same one-stage model,
# data, 60-epoch schedule and CDTLoss with gamma = 0 (a_c = 1: plain
# softmax cross-entropy, CDT Eq. 3 without temperatures). CDT's own effect
# is digits_cls_cdt.py minus this run; the 30-epoch joint baseline
# (digits_cls_resnet_stage1.py) also differs in schedule length.
_base_ = './digits_cls_cdt.py'

model = dict(head=dict(loss=dict(gamma=0.0)))
