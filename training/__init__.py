"""Pure-PyTorch RTMPose whole-body training: data, augmentation, loss, engine, evaluation.

Run from a checkout as ``python -m training --help``; see docs/training.md.
"""
