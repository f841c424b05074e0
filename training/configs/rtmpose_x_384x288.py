"""RTMPose-x whole-body, 384x288, COCO-WholeBody + UBody, the published 270-epoch recipe (batch 256)."""

from training.config import wholebody_recipe

CONFIG = wholebody_recipe(size="x", input_size=(384, 288))
