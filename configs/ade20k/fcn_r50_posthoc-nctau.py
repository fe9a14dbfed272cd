# CDT post-hoc rule z_c / N_c ** tau per pixel (Ye et al., Eq. 5; CDT Table 3
# "ERM + N_c^tau"), test only, FCN-R50-D8, ADE20K; tau tuned on val.
_base_ = './fcn_r50_taunorm.py'

model = dict(
    decode_head=dict(
        classifier=None,
        posthoc=dict(type='nc_tau', tau=0.3, stats_file='builtin:ade20k')))
