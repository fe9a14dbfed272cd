# The LVIS v0.5 settings on the v1 data, as mmdet's lvis_v1_instance.py.
_base_ = './lvis_v0.5_uniform.py'

dataset_type = 'LVISV1Dataset'
data_root = 'data/lvis_v1/'
num_classes = 1203

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v1_train.json',
        data_prefix=dict(img='')))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/lvis_v1_val.json',
        data_prefix=dict(img='')))
test_dataloader = val_dataloader

val_evaluator = dict(ann_file=data_root + 'annotations/lvis_v1_val.json')
test_evaluator = val_evaluator
