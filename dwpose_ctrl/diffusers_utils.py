"""Helpers for feeding control maps to diffusers ControlNet pipelines.

A map from :class:`~dwpose_ctrl.detector.DWposeDetector` (PIL RGB or HWC uint8 array) can go to
``StableDiffusionControlNetPipeline`` / ``StableDiffusionXLControlNetPipeline`` as ``image=``
directly; the pipeline then generates at the map's size. These helpers cover the rest:

* :func:`pipeline_size` picks a ``(width, height)`` for the pipeline: multiples of 8 (the VAE
  downsamples by 8), the image's aspect kept as closely as that rounding allows.
* :func:`fit_control_image` brings a map to exactly ``(width, height)``. The default policy,
  ``"pad"``, keeps the aspect and pads with black, which in an OpenPose map means "no pose": no
  limb is cut off and nothing is distorted. ``"crop"`` fills the frame and centre-crops the
  overflow; ``"stretch"`` resizes without keeping the aspect (what diffusers itself does when
  ``width``/``height`` differ from the map's size).
* :func:`control_tensor` stacks maps into the tensor diffusers expects for ControlNet images:
  ``(batch, 3, height, width)``, float, values in ``[0, 1]``, RGB, on the pipeline's device and
  in its dtype. Numpy maps (``output_type="np"``) need it: diffusers takes a uint8 array's
  values as already in ``[0, 1]`` and reads one ``(H, W, 3)`` array as a batch of ``H`` images.

Single images in give single images out; lists in give lists out, as with the detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeVar, overload

import cv2
import numpy as np
from PIL import Image

from dwpose_ctrl.extras import require

if TYPE_CHECKING:
    import torch

__all__ = ["FitMode", "control_tensor", "fit_control_image", "pipeline_size"]

FitMode = Literal["pad", "crop", "stretch"]
FIT_MODES: tuple[str, ...] = ("pad", "crop", "stretch")

ControlImage = TypeVar("ControlImage", Image.Image, np.ndarray)


def _image_size(image: Image.Image | np.ndarray) -> tuple[int, int]:
    """(width, height) of a PIL image or an HWC array."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(f"expected an HWC (or HW) image array, got shape {image.shape}")
        return image.shape[1], image.shape[0]
    raise TypeError(
        f"expected a PIL image or a numpy HWC uint8 array, got {type(image).__name__}; "
        "pass the detector's output (output_type='pil' or 'np')"
    )


def _check_multiple(name: str, value: int, multiple_of: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if value % multiple_of:
        nearest = max(multiple_of, int(np.floor(value / multiple_of + 0.5)) * multiple_of)
        raise ValueError(
            f"{name}={value} is not a multiple of {multiple_of}, which Stable Diffusion pipelines need; "
            f"use {nearest}, or let pipeline_size() choose the size"
        )


def pipeline_size(
    image: Image.Image | np.ndarray | tuple[int, int],
    resolution: int | None = None,
    multiple_of: int = 8,
) -> tuple[int, int]:
    """A pipeline ``(width, height)`` for ``image``: multiples of ``multiple_of``, aspect kept.

    ``image`` is a PIL image, an HWC array or a ``(width, height)`` pair. With ``resolution``
    the short side is scaled to ``resolution`` first (the meaning of ``image_resolution`` in the
    detector), e.g. 512 for SD 1.5 or 1024 for SDXL; without it the image's own size is used.
    Each side is then rounded to the nearest multiple (at least one multiple).
    """
    if multiple_of <= 0:
        raise ValueError(f"multiple_of must be positive, got {multiple_of}")
    if isinstance(image, tuple):
        if len(image) != 2 or not all(isinstance(side, (int, np.integer)) and side > 0 for side in image):
            raise ValueError(f"expected a (width, height) pair of positive ints, got {image!r}")
        width, height = int(image[0]), int(image[1])
    else:
        width, height = _image_size(image)
    scale = 1.0 if resolution is None else resolution / min(width, height)
    if resolution is not None and resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")

    def snap(side: int) -> int:
        return max(multiple_of, int(np.floor(side * scale / multiple_of + 0.5)) * multiple_of)

    return snap(width), snap(height)


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an HWC uint8 map: area averaging when shrinking, bilinear when enlarging."""
    if (pixels.shape[1], pixels.shape[0]) == (width, height):
        return pixels.copy()
    shrinking = width * height < pixels.shape[0] * pixels.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(pixels, (width, height), interpolation=interpolation)
    return resized.reshape(height, width, *pixels.shape[2:])


def _fit_pixels(pixels: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    source_height, source_width = pixels.shape[:2]
    if mode == "stretch":
        return _resize(pixels, width, height)
    if mode == "pad":
        scale = min(width / source_width, height / source_height)
    else:
        scale = max(width / source_width, height / source_height)
    scaled_width = max(1, round(source_width * scale))
    scaled_height = max(1, round(source_height * scale))
    if mode == "pad":
        scaled_width, scaled_height = min(scaled_width, width), min(scaled_height, height)
    else:
        scaled_width, scaled_height = max(scaled_width, width), max(scaled_height, height)
    scaled = _resize(pixels, scaled_width, scaled_height)
    if mode == "pad":
        canvas = np.zeros((height, width, *pixels.shape[2:]), dtype=pixels.dtype)
        top, left = (height - scaled_height) // 2, (width - scaled_width) // 2
        canvas[top : top + scaled_height, left : left + scaled_width] = scaled
        return canvas
    top, left = (scaled_height - height) // 2, (scaled_width - width) // 2
    return scaled[top : top + height, left : left + width].copy()


@overload
def fit_control_image(
    image: ControlImage, width: int, height: int, mode: FitMode = "pad", multiple_of: int = 8
) -> ControlImage: ...
@overload
def fit_control_image(
    image: Sequence[ControlImage], width: int, height: int, mode: FitMode = "pad", multiple_of: int = 8
) -> list[ControlImage]: ...
def fit_control_image(image, width, height, mode="pad", multiple_of=8):
    """Bring a control map (or a list of maps) to exactly ``width`` x ``height``.

    ``width`` and ``height`` must be multiples of ``multiple_of`` (8 for Stable Diffusion and
    SDXL). ``mode``: ``"pad"`` (default) scales the map to fit inside and pads the rest with
    black, centred; ``"crop"`` scales it to cover and centre-crops; ``"stretch"`` ignores the
    aspect. Shrinking averages areas (``INTER_AREA``), enlarging is bilinear. A map already of
    the requested size is returned as an unchanged copy. PIL in gives PIL out, arrays give arrays.
    """
    if mode not in FIT_MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {FIT_MODES}")
    _check_multiple("width", width, multiple_of)
    _check_multiple("height", height, multiple_of)
    if isinstance(image, (list, tuple)):
        return [fit_control_image(item, width, height, mode, multiple_of) for item in image]
    _image_size(image)
    if isinstance(image, Image.Image):
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGB")
        return Image.fromarray(_fit_pixels(np.asarray(image), int(width), int(height), mode))
    return _fit_pixels(image, int(width), int(height), mode)


def _to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """One control map as an HWC uint8 RGB array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"expected PIL images or numpy HWC uint8 arrays, got {type(image).__name__}; "
            "pass the detector's output (output_type='pil' or 'np')"
        )
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 array (values 0-255), got dtype {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HWC RGB array with 3 channels, got shape {image.shape}")
    return image


def control_tensor(
    images: Image.Image | np.ndarray | Sequence[Image.Image | np.ndarray],
    pipeline: object | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Control maps as a diffusers ControlNet image tensor: ``(B, 3, H, W)``, values in ``[0, 1]``.

    ``images`` is one map or a list of maps of equal size (PIL or HWC uint8 arrays; a 4-D
    ``(B, H, W, 3)`` uint8 array is a batch). The tensor is put on ``pipeline.device`` in the
    dtype of ``pipeline.controlnet`` (falling back to ``pipeline.dtype``); explicit ``device`` /
    ``dtype`` override those; with neither it stays float32 on the CPU.
    """
    torch = require("torch", "diffusers", "control_tensor")

    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise ValueError("no control images given")
    arrays = [_to_rgb_array(image) for image in images]
    sizes = {array.shape[:2] for array in arrays}
    if len(sizes) > 1:
        raise ValueError(
            f"control images differ in size {sorted(sizes)}; bring them to one size first with "
            "fit_control_image(images, width, height)"
        )
    if pipeline is not None:
        if device is None:
            device = getattr(pipeline, "device", None)
        if dtype is None:
            controlnet = getattr(pipeline, "controlnet", None)
            dtype = getattr(controlnet, "dtype", None) or getattr(pipeline, "dtype", None)
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    tensor = batch.to(dtype=torch.float32) / 255.0
    return tensor.to(device=device or "cpu", dtype=dtype or torch.float32)
