"""Detection hosts, registered in mmdet's MODELS."""
