# DisAlign stage 2, UPerNet-R50, ADE20K (not in DisAlign Table 6; Table 16
# split): the recipe of fcn_r50_disalign.py with mmseg's UPerNet.
_base_ = './fcn_r50_disalign.py'

model = dict(
    backbone=dict(dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2)),
    decode_head=dict(
        _delete_=True,
        **{
            k: v
            for k, v in _base_.model.decode_head.items()
            if k not in ('head_type', 'num_convs', 'concat_input',
                         'in_channels', 'in_index')
        },
        head_type='UPerHead',
        in_channels=[256, 512, 1024, 2048],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6)))
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/upernet/upernet_r50_512x512_160k_ade20k/upernet_r50_512x512_160k_ade20k_20200615_184328-8534de8d.pth'  # noqa: E501
