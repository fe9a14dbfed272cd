# LWS, learnable weight scaling (Kang et al., ICLR 2020, Eq. 4): the
# stage-1 classifier is frozen and only the per-class scales
# `head.lws.scales` are learned with class-balanced sampling (Decoupling:
# 5 epochs, as here).
# Stage-1 checkpoint on the command line: --cfg-options load_from=...
_base_ = './digits_cls_crt.py'

model = dict(head=dict(type='LWSClsHead'))
train_cfg = dict(max_epochs=5)
