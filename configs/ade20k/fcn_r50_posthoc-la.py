# Post-hoc logit adjustment z_c - tau * log N_c per pixel, tau = 1 (DisAlign
# Table 1 "Logit Adjust (post)"), test only, FCN-R50-D8, ADE20K.
_base_ = './fcn_r50_posthoc-nctau.py'

model = dict(decode_head=dict(posthoc=dict(type='logit_adjust', tau=1.0)))
