# Post-hoc logit adjustment per pixel (Menon et al.; DisAlign Table 1 "Logit
# Adjust (post)") on the stage-1 tiny FCN: z_c - tau * log N_c, tau = 1,
# training pixel counts. No training:
#
#   python tools/test.py \
#       configs/quickstart/digits_seg_posthoc_logit_adjust.py \
#       work_dirs/digits_seg_fcn_stage1/iter_1500.pth
_base_ = './digits_seg_posthoc_nc_tau.py'

model = dict(decode_head=dict(posthoc=dict(type='logit_adjust', tau=1.0)))
