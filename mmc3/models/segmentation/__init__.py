"""Segmentation hosts and heads, registered in mmseg's MODELS."""
