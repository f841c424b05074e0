"""Feed a pose map to any diffusers pipeline that takes one, with the conventions of each model.

diffusers' pose-capable pipelines differ in details that are easy to get wrong and fail
silently: the argument (``image=`` or ``control_image=``), the value range of a tensor map
(``[0, 1]`` for UNet ControlNets and T2I-Adapters, ``[-1, 1]`` for the transformer pipelines,
which pass tensors straight to the VAE), the size multiple, and the ControlNet-Union mode index
(openpose is 0 for xinsir's SDXL Union models and 4 for the Flux Union models; Union Pro 2.0 has
no mode). :func:`pose_inputs` knows them::

    kwargs = pose_inputs(pipe, control, width=1024, height=1024)
    image = pipe(prompt, **kwargs).images[0]

The facts come from diffusers' pipeline sources (``__call__`` and ``prepare_image``) and the model
cards; ``docs/diffusers.md`` cites them per row of :data:`POSE_MODELS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dwpose_ctrl.diffusers_utils import FitMode, control_tensor, fit_control_image, pipeline_size
from dwpose_ctrl.render import RenderOptions

if TYPE_CHECKING:
    import torch

__all__ = [
    "PIPELINE_FAMILIES",
    "POSE_MODELS",
    "Condition",
    "PipelineFamily",
    "PoseModel",
    "UnknownPipelineError",
    "from_pretrained_dtype",
    "openpose_mode",
    "pipeline_family",
    "pose_inputs",
    "pose_model",
    "recommended_detector_options",
]


@dataclass(frozen=True)
class PipelineFamily:
    """How one group of diffusers pipelines takes a control map.

    ``argument``: the keyword of ``__call__``; ``value_range``: what a tensor map must hold
    (the PIL path converts to it); ``multiple_of``: the size multiple the pipeline needs
    (``None``: the adapter's own downscale factor); ``mode``: ``"sdxl-union"`` (a list of maps
    with a list of modes), ``"flux"`` (an int mode for a union model) or ``None``.
    """

    name: str
    pipelines: tuple[str, ...]
    argument: str
    value_range: tuple[float, float]
    multiple_of: int | None
    module: str
    mode: str | None = None
    standard_sizes: bool = False


PIPELINE_FAMILIES: tuple[PipelineFamily, ...] = (
    PipelineFamily(
        "sd15",
        ("StableDiffusionControlNetPipeline",),
        "image",
        (0.0, 1.0),
        8,
        "controlnet",
    ),
    PipelineFamily(
        "sd15-img2img",
        ("StableDiffusionControlNetImg2ImgPipeline", "StableDiffusionControlNetInpaintPipeline"),
        "control_image",
        (0.0, 1.0),
        8,
        "controlnet",
    ),
    PipelineFamily("sdxl", ("StableDiffusionXLControlNetPipeline",), "image", (0.0, 1.0), 8, "controlnet"),
    PipelineFamily(
        "sdxl-img2img",
        ("StableDiffusionXLControlNetImg2ImgPipeline", "StableDiffusionXLControlNetInpaintPipeline"),
        "control_image",
        (0.0, 1.0),
        8,
        "controlnet",
    ),
    PipelineFamily(
        "sdxl-union",
        (
            "StableDiffusionXLControlNetUnionPipeline",
            "StableDiffusionXLControlNetUnionImg2ImgPipeline",
            "StableDiffusionXLControlNetUnionInpaintPipeline",
        ),
        "control_image",
        (0.0, 1.0),
        8,
        "controlnet",
        mode="sdxl-union",
    ),
    PipelineFamily(
        "sd3", ("StableDiffusion3ControlNetPipeline",), "control_image", (-1.0, 1.0), 16, "controlnet"
    ),
    PipelineFamily(
        "flux",
        ("FluxControlNetPipeline", "FluxControlNetImg2ImgPipeline", "FluxControlNetInpaintPipeline"),
        "control_image",
        (-1.0, 1.0),
        16,
        "controlnet",
        mode="flux",
    ),
    PipelineFamily(
        "t2i-adapter",
        ("StableDiffusionAdapterPipeline", "StableDiffusionXLAdapterPipeline"),
        "image",
        (0.0, 1.0),
        None,
        "adapter",
    ),
    PipelineFamily(
        "qwen-image", ("QwenImageControlNetPipeline",), "control_image", (-1.0, 1.0), 16, "controlnet"
    ),
    PipelineFamily(
        "hunyuandit",
        ("HunyuanDiTControlNetPipeline",),
        "control_image",
        (-1.0, 1.0),
        16,
        "controlnet",
        standard_sizes=True,
    ),
)


@dataclass(frozen=True)
class PoseModel:
    """A pose-capable ControlNet or adapter: its family, openpose mode and recommended drawing."""

    model_id: str
    family: str
    mode: int | None = None
    render: RenderOptions = field(default_factory=RenderOptions)
    source: str = ""


_THICK = RenderOptions(stick_scaling=True)
_BODY_ONLY = RenderOptions(include_hand=False, include_face=False)

POSE_MODELS: tuple[PoseModel, ...] = (
    PoseModel(
        "lllyasviel/control_v11p_sd15_openpose",
        "sd15",
        source="https://huggingface.co/lllyasviel/control_v11p_sd15_openpose",
    ),
    PoseModel(
        "xinsir/controlnet-openpose-sdxl-1.0",
        "sdxl",
        render=_THICK,
        source="https://huggingface.co/xinsir/controlnet-openpose-sdxl-1.0",
    ),
    PoseModel(
        "thibaud/controlnet-openpose-sdxl-1.0",
        "sdxl",
        source="https://huggingface.co/thibaud/controlnet-openpose-sdxl-1.0",
    ),
    PoseModel(
        "xinsir/controlnet-union-sdxl-1.0",
        "sdxl-union",
        mode=0,
        render=_THICK,
        source="https://github.com/comfyanonymous/ComfyUI/blob/master/comfy/cldm/control_types.py",
    ),
    PoseModel(
        "brad-twinkl/controlnet-union-sdxl-1.0-promax",
        "sdxl-union",
        mode=0,
        render=_THICK,
        source="https://github.com/comfyanonymous/ComfyUI/blob/master/comfy/cldm/control_types.py",
    ),
    PoseModel(
        "InstantX/SD3-Controlnet-Pose", "sd3", source="https://huggingface.co/InstantX/SD3-Controlnet-Pose"
    ),
    PoseModel(
        "InstantX/FLUX.1-dev-Controlnet-Union",
        "flux",
        mode=4,
        source="https://huggingface.co/InstantX/FLUX.1-dev-Controlnet-Union",
    ),
    PoseModel(
        "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro",
        "flux",
        mode=4,
        source="https://huggingface.co/Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro",
    ),
    PoseModel(
        "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0",
        "flux",
        mode=None,
        source="https://huggingface.co/Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0",
    ),
    PoseModel(
        "TencentARC/t2iadapter_openpose_sd14v1",
        "t2i-adapter",
        render=_BODY_ONLY,
        source="https://huggingface.co/TencentARC/t2iadapter_openpose_sd14v1",
    ),
    PoseModel(
        "TencentARC/t2i-adapter-openpose-sdxl-1.0",
        "t2i-adapter",
        render=_BODY_ONLY,
        source="https://huggingface.co/TencentARC/t2i-adapter-openpose-sdxl-1.0",
    ),
    PoseModel(
        "InstantX/Qwen-Image-ControlNet-Union",
        "qwen-image",
        source="https://huggingface.co/InstantX/Qwen-Image-ControlNet-Union",
    ),
    PoseModel(
        "Tencent-Hunyuan/HunyuanDiT-v1.2-ControlNet-Diffusers-Pose",
        "hunyuandit",
        source="https://huggingface.co/Tencent-Hunyuan/HunyuanDiT-v1.2-ControlNet-Diffusers-Pose",
    ),
    PoseModel(
        "Tencent-Hunyuan/HunyuanDiT-v1.1-ControlNet-Diffusers-Pose",
        "hunyuandit",
        source="https://huggingface.co/Tencent-Hunyuan/HunyuanDiT-v1.1-ControlNet-Diffusers-Pose",
    ),
)

# Used when a Union model's id is not in POSE_MODELS (e.g. a local folder): every SDXL Union
# checkpoint diffusers loads follows xinsir's ControlNet++ table, every Flux Union checkpoint with
# a mode embedding the InstantX table.
DEFAULT_OPENPOSE_MODE = {"sdxl-union": 0, "flux": 4}


class UnknownPipelineError(TypeError):
    """The pipeline is not one this module knows how to feed a pose map."""


@dataclass(frozen=True)
class Condition:
    """Another control map for a multi-ControlNet pipeline, with its Union mode if it has one."""

    image: Any
    mode: int | None = None


def pipeline_family(pipeline: object) -> PipelineFamily:
    """The :class:`PipelineFamily` of a diffusers pipeline object (or class)."""
    cls = pipeline if isinstance(pipeline, type) else type(pipeline)
    names = [klass.__name__ for klass in cls.__mro__]
    for name in names:
        for family in PIPELINE_FAMILIES:
            if name in family.pipelines:
                return family
    known = ", ".join(name for family in PIPELINE_FAMILIES for name in family.pipelines)
    raise UnknownPipelineError(
        f"{cls.__name__} is not a pipeline that pose_inputs knows; known pipelines: {known}. "
        "For another pipeline pass control_tensor(maps) under the argument its __call__ documents"
    )


def pose_model(model_id: str | None) -> PoseModel | None:
    """The :data:`POSE_MODELS` entry of a Hub id (case-insensitive), or ``None``."""
    if not model_id:
        return None
    wanted = str(model_id).strip().lower()
    for entry in POSE_MODELS:
        if entry.model_id.lower() == wanted:
            return entry
    return None


def _name_or_path(module: object) -> str | None:
    config = getattr(module, "config", None)
    name = getattr(config, "_name_or_path", None) if config is not None else None
    return str(name) if name else None


def _is_union(module: object, family: PipelineFamily) -> bool:
    if family.mode == "sdxl-union":
        return True
    if family.mode == "flux":
        return getattr(getattr(module, "config", None), "num_mode", None) is not None
    return False


def openpose_mode(
    model: object, family: PipelineFamily | str | None = None, model_id: str | None = None
) -> int | None:
    """The ``control_mode`` index that means "openpose" for a ControlNet, or ``None`` if it has none.

    ``model`` is the ControlNet module (or ``None`` with ``model_id`` and ``family``). A model id in
    :data:`POSE_MODELS` decides; otherwise a union model gets the family's table value
    (:data:`DEFAULT_OPENPOSE_MODE`) and a model without a mode embedding gets ``None``.
    """
    if isinstance(family, str):
        names = {item.name: item for item in PIPELINE_FAMILIES}
        if family not in names:
            raise ValueError(f"unknown family {family!r}; expected one of {sorted(names)}")
        family = names[family]
    entry = pose_model(model_id or _name_or_path(model))
    if entry is not None and (family is None or entry.family == family.name):
        return entry.mode
    if family is None or family.mode is None:
        return None
    if model is not None and not _is_union(model, family):
        return None
    return DEFAULT_OPENPOSE_MODE[family.name]


def recommended_detector_options(model: object | str | None) -> dict[str, bool]:
    """``DWposeDetector`` drawing options recommended for a model (a Hub id or a pipeline).

    Unknown models get the annotator's default drawing (body, hands and face, thin sticks).
    """
    if isinstance(model, str) or model is None:
        entry = pose_model(model)
    else:
        family = pipeline_family(model)
        entry = pose_model(_name_or_path(_pose_module(model, family, 0)))
    render = entry.render if entry is not None else RenderOptions()
    return {
        "include_body": render.include_body,
        "include_hand": render.include_hand,
        "include_face": render.include_face,
        "include_foot": render.include_foot,
        "stick_scaling": render.stick_scaling,
    }


def _nets(pipeline: object, family: PipelineFamily) -> list[object] | None:
    """The list of ControlNets/adapters of a multi-model pipeline, or ``None`` for a single one."""
    module = getattr(pipeline, family.module, None)
    if module is None:
        raise ValueError(f"the pipeline has no {family.module}; load it with {family.module}=...")
    if isinstance(module, (list, tuple)):
        return list(module)
    nets = getattr(module, "nets", None)
    if nets is None:
        nets = getattr(module, "adapters", None)
    return list(nets) if nets is not None else None


def _pose_module(pipeline: object, family: PipelineFamily, pose_index: int) -> object:
    nets = _nets(pipeline, family)
    if nets is None:
        return getattr(pipeline, family.module)
    if not 0 <= pose_index < len(nets):
        raise ValueError(f"pose_index={pose_index} is out of range for {len(nets)} {family.module}s")
    return nets[pose_index]


def _multiple_of(pipeline: object, family: PipelineFamily) -> int:
    if family.multiple_of is not None:
        return family.multiple_of
    adapter = getattr(pipeline, "adapter", None)
    return int(getattr(adapter, "downscale_factor", 8))


def _is_standard_size(size: tuple[int, int]) -> bool:
    from diffusers.pipelines.controlnet_hunyuandit.pipeline_hunyuandit_controlnet import SUPPORTED_SHAPE

    return tuple(size) in {tuple(shape) for shape in SUPPORTED_SHAPE}


def _size_of(image) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray) and image.ndim in (2, 3):
        return image.shape[1], image.shape[0]
    raise TypeError(
        f"expected PIL images or numpy HWC uint8 arrays, got {type(image).__name__}; "
        "pass the detector's output (output_type='pil' or 'np')"
    )


def _target_size(
    pipeline: object, family: PipelineFamily, size: tuple[int, int], width: int | None, height: int | None
) -> tuple[int, int]:
    """``(width, height)`` as given, else ``size`` brought to what the pipeline accepts."""
    if (width is None) != (height is None):
        raise ValueError("give both width and height, or neither (then the map's size is used)")
    if width is not None:
        return width, height
    if family.standard_sizes:
        from diffusers.pipelines.controlnet_hunyuandit.pipeline_hunyuandit_controlnet import (
            map_to_standard_shapes,
        )

        return tuple(int(side) for side in map_to_standard_shapes(*size))
    return pipeline_size(size, multiple_of=_multiple_of(pipeline, family))


def _as_list(images) -> list:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no pose maps given")
        return list(images)
    return [images]


def _execution_device(pipeline: object) -> torch.device | None:
    """Where the pipeline runs its models (the GPU also with CPU offload enabled)."""
    device = getattr(pipeline, "_execution_device", None)
    return device if device is not None else getattr(pipeline, "device", None)


def _tensor(maps: list, pipeline: object, family: PipelineFamily, module: object, size, fit: FitMode):
    width, height = size
    fitted = fit_control_image(maps, width, height, mode=fit, multiple_of=_multiple_of(pipeline, family))
    dtype = getattr(module, "dtype", None) if family.value_range[0] >= 0 else None
    if dtype is None:
        vae = getattr(pipeline, "vae", None)
        dtype = getattr(vae, "dtype", None) or getattr(pipeline, "dtype", None)
    tensor = control_tensor(fitted, device=_execution_device(pipeline), dtype=dtype)
    low, high = family.value_range
    return tensor * (high - low) + low if (low, high) != (0.0, 1.0) else tensor


def pose_inputs(
    pipeline: object,
    pose,
    *,
    width: int | None = None,
    height: int | None = None,
    fit: FitMode = "pad",
    model_id: str | None = None,
    control_mode: int | None = None,
    others: Sequence[Condition] = (),
    pose_index: int = 0,
    detector: object | None = None,
    detect_resolution: int = 512,
) -> dict[str, Any]:
    """The keyword arguments that feed ``pose`` to ``pipeline``: ``pipe(prompt, **pose_inputs(...))``.

    ``pose`` is one map or a list of maps (one per prompt; PIL or HWC uint8 arrays). They are
    fitted to ``width`` x ``height`` (default: the first map's size rounded to the pipeline's
    multiple; HunyuanDiT: its nearest standard size) with ``fit`` and stacked into one tensor of
    the value range, device and dtype the pipeline expects. The result holds that tensor under the
    pipeline's argument, ``width`` and ``height``, and ``control_mode`` for Union models
    (``control_mode=`` overrides the table; ``model_id`` overrides the id read from the model's
    config, which is a local path when loaded from a folder).

    Multi-ControlNet pipelines (``MultiControlNetModel``, ``FluxMultiControlNetModel``,
    ``MultiAdapter``, a list of ControlNets ...) and SDXL Union models take ``others``: further
    :class:`Condition` maps; the pose goes to position ``pose_index``, the others fill the rest
    in order.

    With a ``detector`` (:class:`~dwpose_ctrl.detector.DWposeDetector`), ``pose`` holds photos
    instead, and the maps are drawn with :func:`recommended_detector_options` for the model at the
    target size.
    """
    family = pipeline_family(pipeline)
    module = _pose_module(pipeline, family, pose_index)
    model_id = model_id or _name_or_path(module)
    if detector is not None:
        photos = _as_list(pose)
        width, height = _target_size(pipeline, family, _size_of(photos[0]), width, height)
        options = recommended_detector_options(model_id)
        pose = detector(
            photos, detect_resolution=detect_resolution, image_resolution=min(width, height), **options
        )
    maps = _as_list(pose)
    size = _target_size(pipeline, family, _size_of(maps[0]), width, height)
    pose_tensor = _tensor(maps, pipeline, family, module, size, fit)
    mode = control_mode if control_mode is not None else openpose_mode(module, family, model_id)

    nets = _nets(pipeline, family)
    if not 0 <= pose_index <= len(others):
        raise ValueError(f"pose_index={pose_index} is out of range for the pose and {len(others)} other(s)")
    if nets is None and family.mode != "sdxl-union" and others:
        raise ValueError(
            f"{type(pipeline).__name__} has one {family.module}; other conditions need a multi-"
            f"{family.module} pipeline (pass a list of {family.module}s when loading it)"
        )
    if nets is not None and len(others) + 1 != len(nets):
        raise ValueError(
            f"the pipeline has {len(nets)} {family.module}s: give the pose and {len(nets) - 1} "
            f"other condition(s), got {len(others)}"
        )
    other_tensors = [
        _tensor(_as_list(condition.image), pipeline, family, module, size, fit) for condition in others
    ]
    images = list(other_tensors)
    images.insert(pose_index, pose_tensor)
    modes = [condition.mode for condition in others]
    modes.insert(pose_index, mode)

    kwargs: dict[str, Any] = {"width": size[0], "height": size[1]}
    if family.standard_sizes and not _is_standard_size(size):
        # HunyuanDiT would otherwise move a non-standard size to a standard one, and the map with it
        kwargs["use_resolution_binning"] = False
    if family.mode == "sdxl-union":
        if any(item is None for item in modes):
            raise ValueError(
                "every condition of an SDXL Union model needs its mode (Condition(image, mode=...))"
            )
        kwargs[family.argument] = images
        kwargs["control_mode"] = modes
        return kwargs
    kwargs[family.argument] = images if nets is not None else pose_tensor
    if family.name == "flux" and nets is not None:
        # FluxControlNetPipeline zips the scales with the nets: a plain float fails there
        kwargs["controlnet_conditioning_scale"] = [1.0] * len(nets)
    if family.mode == "flux":
        if nets is not None:
            if any(_is_union(net, family) for net in nets):
                kwargs["control_mode"] = modes
        elif _is_union(module, family):
            kwargs["control_mode"] = mode
    return kwargs


def from_pretrained_dtype(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``from_pretrained``'s dtype keyword: ``{"dtype": dtype}`` in diffusers versions that renamed
    it (``torch_dtype`` is deprecated there), ``{"torch_dtype": dtype}`` before."""
    from diffusers.utils import deprecation_utils

    renamed = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    return {"dtype": dtype} if renamed else {"torch_dtype": dtype}
