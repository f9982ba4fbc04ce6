# Quickstart segmentation baseline: configs/deeplabv2_r101_baseline_voc12aug.py
# (DeepLab-v2, output stride 8, stages 1-3 frozen) shrunk to a ResNet-50 of
# base width 8 on the synthetic VOC 2012 shapes (see the base file). Run by
# tools/quickstart.sh with tools/dist_train.sh CFG 2 / tools/dist_test.sh.
_base_ = '../_base_/deeplabv2_quickstart_synthetic.py'
