# Quickstart classification baseline: CIFAR ResNet-20 on scikit-learn's
# real handwritten digits (see _base_/classification/digits_quickstart.py).
_base_ = ['../_base_/classification/digits_quickstart.py']
