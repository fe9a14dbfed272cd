# cRT, classifier re-training (Kang et al., ICLR 2020, Sec. 4): the stage-1
# backbone is frozen, `head.fc` is re-initialised when the stage-1
# checkpoint is loaded and re-trained with class-balanced sampling
# (Decoupling Sec. 5: 10 epochs, class-aware sampler with 4 samples per
# class; the same on the toy set, whose epochs are a few iterations).
# Stage-1 checkpoint on the command line: --cfg-options load_from=...
_base_ = './digits_cls_disalign.py'

# the stage-2 schedule of DisAlign (10 epochs); a re-initialised `head.fc`
# trained with the stock cross-entropy
model = dict(
    head=dict(
        type='CRTClsHead',
        loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))
