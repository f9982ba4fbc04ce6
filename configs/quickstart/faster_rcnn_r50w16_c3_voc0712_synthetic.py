# Quickstart C3: the quickstart baseline plus C3 blocks (7x7 grid, k = 8)
# after conv3 of every stage-4 bottleneck, the same fragment as
# configs/faster_rcnn_r101_c3_voc0712.py. Run by tools/quickstart.sh:
#   tools/dist_train.sh configs/quickstart/faster_rcnn_r50w16_c3_voc0712_synthetic.py 2
_base_ = [
    './faster_rcnn_r50w16_baseline_voc0712_synthetic.py',
    '../_base_/blocks/c3.py'
]

model = dict(
    roi_head=dict(shared_head=dict(plugins=_base_.c3_stage4_plugins)))
