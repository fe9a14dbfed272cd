# Quickstart cRT stage 2 for segmentation (Decoupling, ICLR 2020, Sec. 4 /
# Table 2 "cRT", per pixel): the stage-1 tiny FCN is frozen, `conv_seg` is
# re-initialised when the stage-1 checkpoint loads and re-trained with plain
# cross-entropy on class-balanced image sampling (ClassBalancedSampler:
# classes present in each label map, 4 images per class visit).
#
#   python tools/train.py configs/quickstart/digits_seg_crt.py \
#       --cfg-options load_from=work_dirs/digits_seg_fcn_stage1/iter_1500.pth
_base_ = './digits_seg_disalign.py'

model = dict(
    decode_head=dict(
        classifier=dict(_delete_=True, type='CRTConvSeg'),
        loss_decode=dict(
            _delete_=True,
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            avg_non_ignore=True)))

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='ClassBalancedSampler', samples_per_class=4))

# a freshly initialised classifier: weight decay as Decoupling's cRT
optim_wrapper = dict(
    optimizer=dict(lr=0.1, weight_decay=5e-4),
    paramwise_cfg=dict(_delete_=True))
