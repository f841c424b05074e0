"""Top-down predictions of a torch pose model on dataset instances (validation and ``eval``).

Crops, normalisation, SimCC decoding and the way back to image pixels are the inference
library's (``dwpose_ctrl.topdown``, ``dwpose_ctrl.codec``); only batching through a DataLoader
and the optional flip test live here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dwpose_ctrl import topdown
from dwpose_ctrl.codec import decode_simcc
from dwpose_ctrl.keypoints import KeypointMetadata
from training.data.dataset import read_rgb, worker_init, worker_start_method
from training.data.instances import PersonInstance
from training.evaluate import TopDownPrediction


class TopDownCropDataset(Dataset):
    """Normalised inference crops (3, h, w) float32 of instance boxes, with centre and scale."""

    def __init__(self, instances: Sequence[PersonInstance], input_size: tuple[int, int]):
        self.instances = list(instances)
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        instance = self.instances[index]
        crops = topdown.build_crops(
            read_rgb(instance.image_path), instance.box.reshape(1, 4), self.input_size
        )
        return crops.inputs[0], crops.centers[0], crops.scales[0], index


def flip_simcc(
    simcc_x: torch.Tensor, simcc_y: torch.Tensor, flip_indices: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a horizontally flipped input back in the original frame (mmpose's convention:
    keypoints swapped, x bins reversed)."""
    index = torch.as_tensor(flip_indices, device=simcc_x.device)
    return simcc_x[:, index].flip(-1), simcc_y[:, index]


@torch.no_grad()
def predict_topdown(
    model: nn.Module,
    instances: Sequence[PersonInstance],
    metadata: KeypointMetadata,
    input_size: tuple[int, int],
    batch_size: int = 32,
    flip_test: bool = False,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    channels_last: bool = False,
) -> list[TopDownPrediction]:
    """Predict every instance's keypoints on its box; the model returns ``(simcc_x, simcc_y)``."""
    was_training = model.training
    model.eval()
    loader = DataLoader(
        TopDownCropDataset(instances, input_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers else None,
        multiprocessing_context=worker_start_method(num_workers),
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    predictions: list[TopDownPrediction] = []
    try:
        for inputs, centers, scales, indices in loader:
            inputs = inputs.to(device).contiguous(memory_format=memory_format)
            simcc_x, simcc_y = model(inputs)
            if flip_test:
                flipped_x, flipped_y = model(inputs.flip(-1))
                flipped_x, flipped_y = flip_simcc(flipped_x, flipped_y, metadata.flip_indices)
                simcc_x, simcc_y = (simcc_x + flipped_x) * 0.5, (simcc_y + flipped_y) * 0.5
            locations, scores = decode_simcc(simcc_x.float().cpu().numpy(), simcc_y.float().cpu().numpy())
            centers_np, scales_np = centers.numpy(), scales.numpy()
            keypoints = topdown.to_image_pixels(locations, input_size, centers_np, scales_np)
            for row, index in enumerate(indices.tolist()):
                instance = instances[index]
                predictions.append(
                    TopDownPrediction(
                        image_id=instance.image_id,
                        keypoints=keypoints[row],
                        scores=scores[row],
                        box_score=instance.box_score,
                        area=float(np.prod(scales_np[row])),
                    )
                )
    finally:
        model.train(was_training)
    return predictions
