# CDT's post-hoc rule (Ye et al., Eq. 5) on the stage-1 model: decision
# values z_c / N_c ** tau. No training:
#   python tools/test.py configs/quickstart/digits_cls_posthoc_nc_tau.py \
#       STAGE1.pth
# tau is tuned on val in the paper: tools/analysis/sweep_posthoc.py CONFIG
# STAGE1.pth --select-on val --report test.
_base_ = './digits_cls_resnet_stage1.py'

data_root = '{{$LT_MM_DATA_ROOT:data/quickstart}}/cls'

model = dict(
    head=dict(
        type='LTLinearClsHead',
        posthoc=dict(
            type='nc_tau',
            tau=0.5,
            train_ann_file=data_root + '/ImageNet_LT_train.txt')))
