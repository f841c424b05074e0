"""Datasets (COCO-WholeBody, UBody, synthetic), augmentations and the top-down training dataset."""
