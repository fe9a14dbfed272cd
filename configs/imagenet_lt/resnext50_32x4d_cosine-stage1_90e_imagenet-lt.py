# Stage 1 with a cosine classifier, scale 16 (DisAlign Table 1 "Baseline*";
# the stage 1 of DisAlign*).
_base_ = './resnext50_32x4d_stage1_90e_imagenet-lt.py'

model = dict(
    head=dict(
        _delete_=True,
        type='CosineClsHead',
        num_classes=1000,
        in_channels=2048,
        scale=16.0,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
