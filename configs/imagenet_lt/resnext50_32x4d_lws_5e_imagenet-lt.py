# LWS (Decoupling, Kang et al., ICLR 2020, Eq. 4, Table 2 "LWS"): the cRT
# recipe with per-class scales learned for 5 epochs instead.
_base_ = './resnext50_32x4d_crt_10e_imagenet-lt.py'

model = dict(head=dict(type='LWSClsHead'))

train_cfg = dict(max_epochs=5, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1))
