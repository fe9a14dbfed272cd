# DisAlign stage 2, DeepLabV3+-R50-D8, ADE20K (DisAlign Table 6 / 15): the
# recipe of fcn_r50_disalign.py with mmseg's DeepLabV3+ head.
_base_ = './fcn_r50_disalign.py'

model = dict(
    decode_head=dict(
        _delete_=True,
        **{
            k: v
            for k, v in _base_.model.decode_head.items()
            if k not in ('head_type', 'num_convs', 'concat_input')
        },
        head_type='DepthwiseSeparableASPPHead',
        dilations=(1, 12, 24, 36),
        c1_in_channels=256,
        c1_channels=48))
load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3plus/deeplabv3plus_r50-d8_512x512_160k_ade20k/deeplabv3plus_r50-d8_512x512_160k_ade20k_20200615_124504-6135c7e0.pth'  # noqa: E501
