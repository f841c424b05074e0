"""Turn every accepted image input into one RGB uint8 HWC array, or refuse it clearly.

Accepted (one image):

- ``PIL.Image.Image`` of any mode. RGBA, LA, PA and palette images with transparency are
  composited over white as the reference annotator does (``rgb*a + 255*(1-a)`` in float32,
  clipped, truncated to uint8). Grey (L, 1) is repeated to 3 channels. CMYK, YCbCr, LAB, HSV
  are converted by PIL. 16-bit and 32-bit integer modes (I;16*, I) are read as 16-bit values and
  mapped to 8 bits with ``round(v / 257)`` (0 -> 0, 65535 -> 255), values outside 0..65535 are
  clipped. Float mode (F) follows the float-array rule below. PIL images are used as they are:
  apply ``PIL.ImageOps.exif_transpose`` yourself if you opened a photo with ``Image.open``.
- ``numpy.ndarray`` HW or HWC (C = 1, 3 or 4; RGB(A) order) of dtype uint8, uint16 (mapped
  with ``round(v / 257)``) or float16/32/64 with values in [0, 1] (mapped with
  ``round(v * 255)``, half to even). An NHWC array is a batch.
- ``torch.Tensor`` CHW or BCHW (C = 1, 3 or 4) in [0, 1] (the diffusers convention), or uint8;
  BCHW is a batch. torch is imported only when such an object is given.
- A file path (``str`` or ``os.PathLike``): opened with PIL, EXIF orientation applied.

A ``list`` or ``tuple`` of these is a batch. Refused with ``TypeError``/``ValueError``: other
types and dtypes, empty images, NaN/inf, floats outside [0, 1], more than :data:`MAX_PIXELS`
pixels, and an aspect ratio beyond :data:`MAX_ASPECT_RATIO` (checked before any large
allocation of ours).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dwpose_ctrl.heif import HEIF_EXTENSIONS, HEIF_MISSING, enable_heif

MAX_PIXELS = 128 * 1024 * 1024
"""Largest accepted image (and largest resize target): 134,217,728 pixels (128 MiP)."""

MAX_ASPECT_RATIO = 32.0
"""Largest accepted ratio of the long side to the short side."""

ACCEPTED = (
    "a PIL image, a numpy array (HW or HWC uint8/uint16, or float in [0, 1]), a torch tensor "
    "(CHW/BCHW in [0, 1]), a file path, or a list of these"
)


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` when given, else :data:`MAX_PIXELS` as it is now.

    :data:`MAX_PIXELS` is read at call time, so assigning ``dwpose_ctrl.inputs.MAX_PIXELS`` raises
    (or lowers) the default limit everywhere (inputs, resize targets, map canvases).
    """
    return MAX_PIXELS if max_pixels is None else max_pixels


def allow_in_pillow(max_pixels: int) -> None:
    """Let Pillow open images up to ``max_pixels``: raise ``PIL.Image.MAX_IMAGE_PIXELS`` if it is lower.

    Pillow refuses images over twice its own limit before we see their size; our own check (the
    limit given here) is the one that decides. Never lowers Pillow's limit.
    """
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def check_image_size(height: int, width: int, what: str = "image", max_pixels: int | None = None) -> None:
    """Refuse empty images, images over the pixel limit (:func:`pixel_limit`) and extreme aspect ratios."""
    if height < 1 or width < 1:
        raise ValueError(f"the {what} is empty ({width}x{height} pixels); give an image with pixels")
    limit = pixel_limit(max_pixels)
    if height * width > limit:
        raise ValueError(
            f"the {what} has {width}x{height} = {width * height} pixels, more than the limit of "
            f"{limit} (dwpose_ctrl.inputs.MAX_PIXELS; dwpose-render: --max-pixels); downscale it first, "
            "or raise the limit for files you trust"
        )
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(
            f"the {what} is {width}x{height} pixels, an aspect ratio of {ratio:.1f}:1, beyond the limit "
            f"of {MAX_ASPECT_RATIO:g}:1 (dwpose_ctrl.inputs.MAX_ASPECT_RATIO); crop or pad it first"
        )


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """The reference's alpha handling: ``rgb*a + 255*(1-a)`` in float32, clipped, truncated."""
    color = rgba[:, :, :3].astype(np.float32)
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    blended = color * alpha + 255.0 * (1.0 - alpha)
    return blended.clip(0, 255).astype(np.uint8)


def _channels_to_rgb(array: np.ndarray) -> np.ndarray:
    """uint8 HW / HW1 / HW3 / HW4 -> contiguous RGB uint8 HW3."""
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if channels == 3:
        return np.ascontiguousarray(array)
    return _composite_over_white(array)


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit values -> 8 bits with ``round(v / 257)`` (exact: 0 -> 0, 65535 -> 255)."""
    clipped = np.clip(values.astype(np.int64), 0, 65535)
    return ((clipped + 128) // 257).astype(np.uint8)


def _float_to_uint8(values: np.ndarray, what: str) -> np.ndarray:
    """Floats in [0, 1] -> ``round(v * 255)`` (half to even) as uint8."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"the {what} contains NaN or infinite values; give finite values in [0, 1]")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"the float {what} has values in [{low:g}, {high:g}]; float images must lie in [0, 1] "
            "(divide 0-255 data by 255, or convert it to uint8)"
        )
    return np.rint(values * 255.0).astype(np.uint8)


def _array_to_rgb(array: np.ndarray, what: str = "numpy array", max_pixels: int | None = None) -> np.ndarray:
    """One HW/HWC numpy image -> RGB uint8 HWC."""
    if array.ndim not in (2, 3):
        raise ValueError(f"the {what} has shape {array.shape}; expected HW or HWC (or NHWC for a batch)")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        hint = " (for CHW data use array.transpose(1, 2, 0))" if array.shape[0] in (1, 3, 4) else ""
        raise ValueError(f"the {what} has shape {array.shape}; expected 1, 3 or 4 channels last{hint}")
    check_image_size(int(array.shape[0]), int(array.shape[1]), what, max_pixels)
    if array.dtype == np.uint8:
        converted = array
    elif array.dtype == np.uint16:
        converted = _sixteen_bit_to_uint8(array)
    elif array.dtype.kind == "f":
        converted = _float_to_uint8(array, what)
    else:
        raise TypeError(
            f"the {what} has dtype {array.dtype}; accepted dtypes are uint8, uint16 and float in [0, 1] "
            "(convert with array.astype(np.uint8) if the values are 0-255)"
        )
    return _channels_to_rgb(converted)


def _pil_to_rgb(image: Image.Image, max_pixels: int | None = None) -> np.ndarray:
    """One PIL image of any mode -> RGB uint8 HWC."""
    width, height = image.size
    check_image_size(height, width, f"PIL image ({image.mode})", max_pixels)
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _composite_over_white(np.asarray(image.convert("RGBA"), dtype=np.uint8))
    if mode in ("L", "1"):
        return _channels_to_rgb(np.asarray(image.convert("L"), dtype=np.uint8))
    if mode.startswith("I"):
        return _channels_to_rgb(_sixteen_bit_to_uint8(np.asarray(image)))
    if mode == "F":
        return _channels_to_rgb(_float_to_uint8(np.asarray(image, dtype=np.float32), "PIL image (F)"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _path_to_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file -> RGB uint8 HWC, with its EXIF orientation applied."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        raise TypeError("give file paths as str or pathlib.Path, not bytes")
    if "://" in text:
        raise ValueError(f"{text!r} looks like a URL; dwpose_ctrl reads local files only, download it first")
    file = Path(text)
    if not file.is_file():
        raise FileNotFoundError(f"image file {text!r} does not exist (or is not a file)")
    allow_in_pillow(pixel_limit())
    if file.suffix.lower() in HEIF_EXTENSIONS and not enable_heif():
        raise ValueError(f"cannot read {text!r}: {HEIF_MISSING}")
    try:
        with Image.open(file) as opened:
            width, height = opened.size
            check_image_size(height, width, f"image file {file.name}")
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read {text!r} as an image: {error}") from error
    except PermissionError:
        raise
    except (OSError, SyntaxError) as error:  # a truncated or corrupt file; PIL's message lacks the name
        raise ValueError(f"cannot read {text!r}: the image is truncated or corrupt ({error})") from error
    return _pil_to_rgb(image)


def _is_torch_tensor(obj: object) -> bool:
    """True for torch tensors, without importing torch for anything else."""
    if not type(obj).__module__.startswith("torch"):
        return False
    import torch

    return isinstance(obj, torch.Tensor)


def _tensor_to_arrays(tensor) -> list[np.ndarray] | np.ndarray:
    """CHW -> one HWC array; BCHW -> a list of HWC arrays (float [0, 1] or uint8 kept as such)."""
    import torch

    if tensor.ndim not in (3, 4):
        raise ValueError(f"torch tensors must be CHW or BCHW, got shape {tuple(tensor.shape)}")
    if tensor.shape[-3] not in (1, 3, 4):
        raise ValueError(
            f"torch tensor of shape {tuple(tensor.shape)} has {tensor.shape[-3]} channels at dim -3; "
            "expected CHW/BCHW with 1, 3 or 4 channels"
        )
    tensor = tensor.detach().cpu()
    if tensor.dtype.is_floating_point:
        tensor = tensor.to(torch.float32)
    elif tensor.dtype != torch.uint8:
        raise TypeError(f"torch tensors must be float (values in [0, 1]) or uint8, got {tensor.dtype}")
    array = tensor.numpy()
    if array.ndim == 3:
        return array.transpose(1, 2, 0)
    return [item.transpose(1, 2, 0) for item in array]


def to_rgb(image: object, max_pixels: int | None = None) -> np.ndarray:
    """Convert one image (see the module docstring) to a contiguous RGB uint8 (H, W, 3) array.

    ``max_pixels`` replaces :data:`MAX_PIXELS` for PIL images and arrays.
    """
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, max_pixels)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, max_pixels=max_pixels)
    if isinstance(image, (str, os.PathLike)):
        return _path_to_rgb(image)
    if _is_torch_tensor(image):
        arrays = _tensor_to_arrays(image)
        if isinstance(arrays, list):
            raise ValueError(
                "a BCHW tensor is a batch; pass it where a batch is accepted, or index one image"
            )
        return _array_to_rgb(arrays, "torch tensor")
    raise TypeError(
        f"cannot use a {type(image).__module__}.{type(image).__qualname__} as an image; give {ACCEPTED}"
    )


def to_rgb_list(images: object) -> tuple[list[np.ndarray], bool]:
    """Convert one image or a batch to RGB uint8 arrays; also say whether the input was a batch.

    Batches are lists/tuples of images, NHWC numpy arrays and BCHW torch tensors.
    """
    if isinstance(images, (list, tuple)):
        for item in images:
            if isinstance(item, (list, tuple)):
                raise TypeError(
                    f"a batch must hold images, not nested {type(item).__name__}s; give {ACCEPTED}"
                )
        return [to_rgb(item) for item in images], True
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_array_to_rgb(item, "numpy array (batch item)") for item in images], True
    if _is_torch_tensor(images) and images.ndim == 4:
        return [_array_to_rgb(item, "torch tensor (batch item)") for item in _tensor_to_arrays(images)], True
    return [to_rgb(images)], False


__all__ = ["MAX_ASPECT_RATIO", "MAX_PIXELS", "check_image_size", "pixel_limit", "to_rgb", "to_rgb_list"]
