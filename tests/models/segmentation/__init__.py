"""Tests of the segmentation hosts and heads."""
