"""Config tests, in one place: every config (loads, resolves, keeps its
stated settings, shrunk model trains), the detection recipes and the
segmentation recipes."""
