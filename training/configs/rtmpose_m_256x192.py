"""RTMPose-m whole-body, 256x192, COCO-WholeBody + UBody, the published 270-epoch recipe."""

from training.config import wholebody_recipe

CONFIG = wholebody_recipe(size="m", input_size=(256, 192))
