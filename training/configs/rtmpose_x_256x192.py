"""RTMPose-x whole-body, 256x192, COCO-WholeBody + UBody, the published 270-epoch recipe."""

from training.config import wholebody_recipe

CONFIG = wholebody_recipe(size="x", input_size=(256, 192))
