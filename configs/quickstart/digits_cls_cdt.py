# Class-dependent temperatures (Ye et al., CDT, Eq. 3), one stage: softmax
# cross-entropy on z_c / a_c with a_c = (N_max / N_c) ** gamma during
# training, raw logits at test. gamma = 0.2 (CDT's CIFAR-10-LT setting);
# start_epoch defers the temperatures (CDT trains the first half with
# gamma = 0 on iNaturalist, App. A.4); the epoch is read from the
# MessageHub, so no extra hook is needed.
_base_ = './digits_cls_resnet_stage1.py'

data_root = '{{$LT_MM_DATA_ROOT:data/quickstart}}/cls'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        loss=dict(
            _delete_=True,
            type='CDTLoss',
            gamma=0.2,
            start_epoch=0,
            train_ann_file=data_root + '/ImageNet_LT_train.txt')))
