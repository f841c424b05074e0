"""The top-down training dataset, its seeded sampler and batches.

Every sample is a pure function of ``(seed, epoch, index)``: the sampler hands the dataset a
:class:`SampleKey` and the dataset seeds a fresh ``numpy`` generator from it. Results therefore
do not depend on the number of workers or processes, and a resumed run sees the same data.
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dwpose_ctrl.codec import encode_simcc
from dwpose_ctrl.keypoints import KeypointMetadata
from training.data.checks import SKIP_FLAG, image_problem
from training.data.instances import PersonInstance
from training.data.transforms import AugmentationConfig, augment_instance


@dataclass(frozen=True)
class SampleKey:
    """Which instance to load and with which epoch's augmentation."""

    index: int
    epoch: int


@dataclass
class Batch:
    """A training batch: uint8 crops (N, 3, h, w), SimCC targets and keypoint weights."""

    images: torch.Tensor
    target_x: torch.Tensor
    target_y: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.images, self.target_x, self.target_y, self.weights, self.indices)

    def pin_memory(self) -> Batch:
        return Batch(*(t.pin_memory() for t in self.tensors()))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def collate_samples(samples: Sequence[tuple]) -> Batch:
    """Stack dataset items (image, target_x, target_y, weights, index) into a :class:`Batch`."""
    images, target_x, target_y, weights, indices = zip(*samples, strict=False)
    return Batch(
        images=torch.from_numpy(np.stack(images)),
        target_x=torch.from_numpy(np.stack(target_x)),
        target_y=torch.from_numpy(np.stack(target_y)),
        weights=torch.from_numpy(np.stack(weights)),
        indices=torch.tensor(indices, dtype=torch.int64),
    )


def read_rgb(path: str) -> np.ndarray:
    """An image file as RGB uint8 HWC; a clear error saying why when it cannot be read.

    A missing file raises ``FileNotFoundError``, one that exists but cannot be decoded (corrupt,
    not an image, unreadable) ``ValueError``; both name the file and the reason.
    """
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        problem = image_problem(path) or "the image file is corrupt (OpenCV cannot decode it)"
        error_type = FileNotFoundError if problem == "the image file is missing" else ValueError
        raise error_type(f"cannot read image {path}: {problem}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class TopDownDataset(Dataset):
    """Augmented crops of person instances with their SimCC labels.

    ``augmentation`` applies before ``final_stage_epoch``, ``final_augmentation`` from then on
    (the recipe's pipeline switch); ``None`` for both gives plain padded-box crops. An image that
    cannot be decoded stops the run with its name and the reason, or, with ``skip_bad_samples``,
    gives a warning and the next readable sample in its place.
    """

    def __init__(
        self,
        instances: Sequence[PersonInstance],
        metadata: KeypointMetadata,
        input_size: tuple[int, int],
        sigma: tuple[float, float],
        augmentation: AugmentationConfig | None = None,
        final_augmentation: AugmentationConfig | None = None,
        final_stage_epoch: int | None = None,
        seed: int = 0,
        skip_bad_samples: bool = False,
    ):
        if not instances:
            raise ValueError("the dataset has no instances (check the annotation files and filters)")
        self.instances = list(instances)
        self.metadata = metadata
        self.input_size = input_size
        self.sigma = sigma
        self.augmentation = augmentation or AugmentationConfig.none()
        self.final_augmentation = final_augmentation or self.augmentation
        self.final_stage_epoch = final_stage_epoch
        self.seed = seed
        self.flip_indices = metadata.flip_indices
        self.skip_bad_samples = skip_bad_samples

    def __len__(self) -> int:
        return len(self.instances)

    def augmentation_for(self, epoch: int) -> AugmentationConfig:
        if self.final_stage_epoch is not None and epoch >= self.final_stage_epoch:
            return self.final_augmentation
        return self.augmentation

    def __getitem__(self, key: SampleKey | int) -> tuple:
        if isinstance(key, (int, np.integer)):
            key = SampleKey(int(key), 0)
        index, image = self._read_image(key.index)
        instance = self.instances[index]
        rng = np.random.default_rng([self.seed, key.epoch, key.index])
        crop = augment_instance(
            image,
            instance.box,
            instance.keypoints,
            instance.visibility,
            self.input_size,
            self.augmentation_for(key.epoch),
            rng,
            self.flip_indices,
            self.metadata.upper_body_ids,
            self.metadata.lower_body_ids,
        )
        labels = encode_simcc(crop.keypoints, crop.visibility, self.input_size, self.sigma)
        image = np.ascontiguousarray(crop.image.transpose(2, 0, 1))
        return image, labels.target_x, labels.target_y, labels.weights, key.index

    def _read_image(self, index: int) -> tuple[int, np.ndarray]:
        """(index, image) of the instance; with ``skip_bad_samples`` an unreadable image is replaced
        by the next instance whose image can be read (deterministic, so resumed runs agree)."""
        for offset in range(len(self.instances)):
            candidate = (index + offset) % len(self.instances)
            try:
                return candidate, read_rgb(self.instances[candidate].image_path)
            except (FileNotFoundError, ValueError) as error:
                if not self.skip_bad_samples:
                    raise ValueError(
                        f"{error}; fix it, or pass {SKIP_FLAG} to leave such samples out"
                    ) from error
                warnings.warn(f"{error}; {SKIP_FLAG}: the next sample is used instead", stacklevel=2)
        raise ValueError("no image of the training data can be read")


class EpochSampler(Sampler):
    """Shuffled (or ordered) indices of one process's share of an epoch, as :class:`SampleKey`.

    The permutation depends only on ``(seed, epoch)``; with ``world_size`` processes each takes
    every ``world_size``-th index of it (padded by wrapping so all get the same count).
    """

    def __init__(
        self, num_samples: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ):
        if num_samples <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.per_rank = math.ceil(num_samples / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[SampleKey]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 7919]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        total = self.per_rank * self.world_size
        order = np.resize(order, total)
        for index in order[self.rank : total : self.world_size]:
            yield SampleKey(int(index), self.epoch)


def worker_start_method(num_workers: int) -> str | None:
    """How DataLoader workers start: from a fork server rather than a fork of this process.

    A plain fork copies the locks of the threads running at that moment (OpenCV's and OpenMP's
    pools, a render engine's loader threads); a worker can then hang for ever on the first such
    lock it takes. The fork server is a clean single-threaded process.
    """
    if num_workers > 0 and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return None


def worker_init(_worker_id: int) -> None:
    """DataLoader workers: one OpenCV thread each (the workers are the parallelism)."""
    cv2.setNumThreads(1)
