# Post-hoc logit adjustment (Menon et al.; the "Logit Adjust (post)" row of
# DisAlign Table 1) on the stage-1 model: z_c - tau * log N_c, tau = 1.
# No training:
#   python tools/test.py \
#       configs/quickstart/digits_cls_posthoc_logit_adjust.py STAGE1.pth
_base_ = './digits_cls_resnet_stage1.py'

data_root = '{{$LT_MM_DATA_ROOT:data/quickstart}}/cls'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        posthoc=dict(
            type='logit_adjust',
            tau=1.0,
            train_ann_file=data_root + '/ImageNet_LT_train.txt')))
