# NCM, test only, FCN-R50-D8, ADE20K (Decoupling, ICLR 2020, Sec. 4 / Table 2
# "NCM"; per-pixel class means, cl2n, squared L2; README.md).
_base_ = './fcn_r50_taunorm.py'

model = dict(
    decode_head=dict(
        classifier=dict(
            _delete_=True, type='NCMConvSeg', feat_type='cl2n', dist='l2')))

custom_hooks = [dict(type='NCMCentroidHook')]
