# cRT (Decoupling, Kang et al., ICLR 2020, Table 2 "cRT"): classifier
# re-trained 10 epochs, class-balanced sampling, on a frozen stage 1.
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(head=dict(type='CRTClsHead'))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))

custom_hooks = [dict(type='Stage2FreezeHook')]
# frozen parameters get no gradient: required under DDP (multi-GPU)
find_unused_parameters = True
load_from = None  # required: --cfg-options load_from=<stage-1 checkpoint>

train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2))
