"""pose_inputs: the conventions table against diffusers' sources and the model cards, and every
family that builds tiny on the CPU run one or two steps with a DWposeDetector map."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from dwpose_ctrl.diffusers_utils import control_tensor, fit_control_image
from dwpose_ctrl.pipelines import (
    PIPELINE_FAMILIES,
    POSE_MODELS,
    Condition,
    UnknownPipelineError,
    openpose_mode,
    pipeline_family,
    pose_inputs,
    recommended_detector_options,
)

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = ROOT / "examples" / "images"

# The Union mode tables as their authors publish them.
# xinsir/controlnet-union-sdxl-1.0 (and its ProMax weights): ComfyUI comfy/cldm/control_types.py
SDXL_UNION_TYPES = {
    "openpose": 0,
    "depth": 1,
    "hed/pidi/scribble/ted": 2,
    "canny/lineart/anime_lineart/mlsd": 3,
    "normal": 4,
    "segment": 5,
    "tile": 6,
    "repaint": 7,
}
# InstantX/FLUX.1-dev-Controlnet-Union and Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro model cards
FLUX_UNION_TYPES = {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "pose": 4, "gray": 5, "low quality": 6}
DOCUMENTED_POSE_MODE = {
    "xinsir/controlnet-union-sdxl-1.0": SDXL_UNION_TYPES["openpose"],
    "brad-twinkl/controlnet-union-sdxl-1.0-promax": SDXL_UNION_TYPES["openpose"],
    "InstantX/FLUX.1-dev-Controlnet-Union": FLUX_UNION_TYPES["pose"],
    "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro": FLUX_UNION_TYPES["pose"],
    "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0": None,  # mode embedding removed
}


@pytest.mark.parametrize(("model_id", "mode"), DOCUMENTED_POSE_MODE.items())
def test_union_mode_matches_the_models_documented_table(model_id, mode):
    family = next(entry.family for entry in POSE_MODELS if entry.model_id == model_id)
    assert openpose_mode(None, family, model_id) == mode


def test_docs_table_states_the_helpers_modes():
    text = (ROOT / "docs" / "diffusers.md").read_text(encoding="utf-8")
    for entry in POSE_MODELS:
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()]
        row = next((cells for cells in rows if len(cells) > 3 and cells[2] == f"`{entry.model_id}`"), None)
        assert row is not None, f"{entry.model_id} missing from the docs table"
        assert row[3] == ("none" if entry.mode is None else f"`{entry.mode}`"), (entry.model_id, row)


@pytest.mark.parametrize("family", PIPELINE_FAMILIES, ids=lambda family: family.name)
def test_families_match_diffusers_call_signatures(family):
    for name in family.pipelines:
        parameters = inspect.signature(getattr(diffusers, name).__call__).parameters
        assert family.argument in parameters, name
        assert ("control_mode" in parameters) == (family.mode is not None), name
        assert pipeline_family(getattr(diffusers, name)) is family


def test_from_pretrained_dtype_follows_the_diffusers_version(monkeypatch):
    from diffusers.utils import deprecation_utils

    from dwpose_ctrl.pipelines import from_pretrained_dtype

    assert from_pretrained_dtype(torch.float16) == {"dtype": torch.float16}  # diffusers 0.42 renamed it
    monkeypatch.delattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    assert from_pretrained_dtype(torch.float16) == {"torch_dtype": torch.float16}


def test_unknown_pipeline_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown family 'sd2'"):
        openpose_mode(None, "sd2")
    with pytest.raises(UnknownPipelineError, match="StableDiffusionPipeline is not a pipeline") as error:
        pipeline_family(diffusers.StableDiffusionPipeline)
    for family in PIPELINE_FAMILIES:
        for name in family.pipelines:
            assert name in str(error.value)


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("xinsir/controlnet-openpose-sdxl-1.0", {"stick_scaling": True, "include_hand": True}),
        ("XINSIR/controlnet-union-sdxl-1.0", {"stick_scaling": True}),
        ("TencentARC/t2i-adapter-openpose-sdxl-1.0", {"include_hand": False, "include_face": False}),
        ("lllyasviel/control_v11p_sd15_openpose", {"stick_scaling": False, "include_face": True}),
        ("/models/my-finetune", {"stick_scaling": False, "include_hand": True, "include_foot": False}),
    ],
)
def test_recommended_detector_options(model_id, expected):
    options = recommended_detector_options(model_id)
    assert {key: options[key] for key in expected} == expected


# ---------------------------------------------------------------- tiny pipelines

FAMILIES = [
    "sd15",
    "sdxl",
    "sdxl-union",
    "sd3",
    "flux",
    "flux-no-mode",
    "t2i-adapter",
    "t2i-adapter-sdxl",
    "qwen-image",
    "hunyuandit",
]


def _build(family: str, seed: int = 0):
    import tempfile

    from tiny_control_pipelines import build_tiny
    from tiny_pipelines import build_tiny_sd_controlnet, build_tiny_sdxl_controlnet

    if family in ("sd15", "sdxl"):
        builder = build_tiny_sd_controlnet if family == "sd15" else build_tiny_sdxl_controlnet
        with tempfile.TemporaryDirectory() as folder:
            pipe = builder(Path(folder), seed)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    return build_tiny(family, seed)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from tiny_pipelines import save_posing_detector

    from dwpose_ctrl.detector import DWposeDetector

    return DWposeDetector(*save_posing_detector(tmp_path_factory.mktemp("posing")))


@pytest.fixture(scope="module")
def pose_maps(detector) -> list[Image.Image]:
    """Two DWposeDetector maps of different photos and sizes (64 x 64 and 64 x 80)."""
    photos = [Image.open(PORTRAITS / "astronaut.png"), Image.open(PORTRAITS / "grace_hopper.jpg")]
    maps = detector(photos, detect_resolution=128, image_resolution=64)
    assert [image.size for image in maps] == [(64, 64), (64, 64)]
    return [maps[0], maps[1].resize((64, 80))]


class _Recorder:
    """Forward pre-hooks that keep what a module was called with."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[dict] = []
        self.handle = module.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.calls.append({"args": args, **kwargs})

    def remove(self):
        self.handle.remove()


def _run(pipe, prompts, output_type="np", **kwargs):
    extra = {"max_sequence_length": 16} if type(pipe).__name__.startswith(("Flux", "Qwen")) else {}
    torch.manual_seed(0)  # SD3 samples the control image's VAE latents without the generator
    return pipe(
        prompts,
        num_inference_steps=2,
        output_type=output_type,
        generator=torch.Generator().manual_seed(0),
        **extra,
        **kwargs,
    ).images


def _expected(maps, size, value_range) -> torch.Tensor:
    tensor = control_tensor(fit_control_image(maps, *size))
    low, high = value_range
    return tensor * (high - low) + low


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_pose_inputs_feed_a_detector_map_to_the_pipeline(family, pose_maps):
    pipe = _build(family)
    convention = pipeline_family(pipe)
    module = getattr(pipe, convention.module)
    vae_recorder = _Recorder(pipe.vae.encoder)
    recorder = _Recorder(module)
    for maps, prompts in (([pose_maps[0]], ["a person dancing"]), (pose_maps, ["a portrait", "a person"])):
        kwargs = pose_inputs(pipe, maps if len(maps) > 1 else maps[0], width=64, height=64)
        assert (kwargs["width"], kwargs["height"]) == (64, 64)
        recorder.calls.clear()
        vae_recorder.calls.clear()
        images = _run(pipe, prompts, **kwargs)
        assert images.shape == (len(prompts), 64, 64, 3)
        expected = _expected(maps, (64, 64), convention.value_range)
        assert recorder.calls, "the ControlNet/adapter was never called"
        call = recorder.calls[0]
        if convention.module == "adapter":
            torch.testing.assert_close(call["args"][0], expected)
        elif convention.value_range == (0.0, 1.0):
            condition = call["controlnet_cond"]
            condition = condition[0] if isinstance(condition, list) else condition
            # classifier-free guidance doubles the batch: unconditional half, then conditional
            torch.testing.assert_close(condition, torch.cat([expected, expected]))
        else:
            # transformer pipelines encode the [-1, 1] map with the VAE before the ControlNet (SD3
            # and HunyuanDiT with classifier-free guidance encode it twice over, the others once;
            # Qwen-Image's 3-D VAE sees it as one frame)
            encoded = vae_recorder.calls[0]["args"][0]
            copies = 2 if family in ("sd3", "hunyuandit") else 1
            if family == "qwen-image":
                encoded = encoded[:, :, 0]
            torch.testing.assert_close(encoded, torch.cat([expected] * copies))
            assert call["controlnet_cond"].shape[0] == copies * len(prompts)
        if family == "sdxl-union":
            assert call["control_type"][0].tolist() == [1.0] + [0.0] * 7  # openpose: index 0
        if family == "flux":
            assert call["controlnet_mode"].flatten().tolist() == [4] * len(prompts)
        if family == "flux-no-mode":
            assert "control_mode" not in kwargs
    recorder.remove()
    vae_recorder.remove()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd15", "sd3", "flux", "t2i-adapter", "qwen-image", "hunyuandit"])
def test_pose_inputs_tensor_equals_diffusers_own_pil_path(family, pose_maps):
    """The value range per family: the tensor gives what diffusers makes of the PIL maps."""
    pipe = _build(family)
    convention = pipeline_family(pipe)
    fitted = fit_control_image(pose_maps, 64, 64)
    prompts = ["a portrait", "a person"]
    kwargs = pose_inputs(pipe, pose_maps, width=64, height=64)
    from_helper = _run(pipe, prompts, output_type="latent", **kwargs)
    from_pil = _run(pipe, prompts, output_type="latent", **{**kwargs, convention.argument: fitted})
    torch.testing.assert_close(from_helper, from_pil, rtol=0, atol=1e-5)
    tensor = kwargs[convention.argument]
    wrong_range = (tensor + 1) / 2 if convention.value_range[0] < 0 else tensor * 2 - 1
    from_wrong_range = _run(
        pipe, prompts, output_type="latent", **{**kwargs, convention.argument: wrong_range}
    )
    assert (from_wrong_range - from_pil).abs().max() > 1e-3


@pytest.mark.slow
def test_multi_controlnet_gets_the_pose_and_the_other_condition(pose_maps):
    from diffusers import StableDiffusionControlNetPipeline

    single = _build("sd15")
    second = _build("sd15", seed=1).controlnet
    pipe = StableDiffusionControlNetPipeline(
        **{**single.components, "controlnet": [second, single.controlnet]}, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    other = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    kwargs = pose_inputs(pipe, pose_maps[0], others=[Condition(other)], pose_index=1)
    assert len(kwargs["image"]) == 2
    recorders = [_Recorder(net) for net in pipe.controlnet.nets]
    _run(pipe, ["a person"], **kwargs)
    expected_pose = _expected([pose_maps[0]], (64, 64), (0.0, 1.0))
    expected_other = _expected([other], (64, 64), (0.0, 1.0))
    torch.testing.assert_close(recorders[0].calls[0]["controlnet_cond"][1:], expected_other)
    torch.testing.assert_close(recorders[1].calls[0]["controlnet_cond"][1:], expected_pose)
    with pytest.raises(ValueError, match="give the pose and 1 other"):
        pose_inputs(pipe, pose_maps[0])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["Img2Img", "Inpaint"])
def test_sd15_img2img_and_inpaint_take_the_map_as_control_image(variant, pose_maps):
    single = _build("sd15")
    pipe = getattr(diffusers, f"StableDiffusionControlNet{variant}Pipeline")(**single.components)
    pipe.set_progress_bar_config(disable=True)
    kwargs = pose_inputs(pipe, pose_maps[0])
    assert "control_image" in kwargs and "image" not in kwargs
    photo = Image.open(PORTRAITS / "astronaut.png").convert("RGB").resize((64, 64))
    extra = {"mask_image": Image.new("L", (64, 64), 255)} if variant == "Inpaint" else {}
    recorder = _Recorder(pipe.controlnet)
    images = _run(pipe, ["a person"], image=photo, strength=1.0, **extra, **kwargs)
    assert images.shape == (1, 64, 64, 3)
    expected = _expected([pose_maps[0]], (64, 64), (0.0, 1.0))
    torch.testing.assert_close(recorder.calls[0]["controlnet_cond"], torch.cat([expected, expected]))


@pytest.mark.slow
def test_flux_multi_controlnet_modes_and_sdxl_union_two_conditions(pose_maps):
    from diffusers import FluxControlNetPipeline

    flux = _build("flux")
    pipe = FluxControlNetPipeline(**{**flux.components, "controlnet": [flux.controlnet, flux.controlnet]})
    depth = Image.fromarray(np.full((64, 64, 3), 200, np.uint8))
    kwargs = pose_inputs(pipe, pose_maps[0], others=[Condition(depth, mode=FLUX_UNION_TYPES["depth"])])
    assert kwargs["control_mode"] == [4, 2] and len(kwargs["control_image"]) == 2
    recorder = _Recorder(flux.controlnet)
    pipe.set_progress_bar_config(disable=True)
    _run(pipe, ["a person"], **kwargs)
    assert [call["controlnet_mode"].flatten().tolist() for call in recorder.calls[:2]] == [[4], [2]]

    union = _build("sdxl-union")
    kwargs = pose_inputs(union, pose_maps[0], others=[Condition(depth, mode=SDXL_UNION_TYPES["depth"])])
    assert kwargs["control_mode"] == [0, 1] and len(kwargs["control_image"]) == 2
    recorder = _Recorder(union.controlnet)
    _run(union, ["a person"], **kwargs)
    assert recorder.calls[0]["control_type"][0].tolist() == [1.0, 1.0] + [0.0] * 6


def _fake_pipeline(class_name: str, **modules):
    """A stand-in with the class name, device and model attributes pose_inputs reads."""
    controlnet = SimpleNamespace(dtype=torch.float32, config=SimpleNamespace(_name_or_path="local/folder"))
    attributes = {"device": torch.device("cpu"), "dtype": torch.float32, "controlnet": controlnet}
    attributes["vae"] = SimpleNamespace(dtype=torch.float32)
    return type(class_name, (), {**attributes, **modules})()


def test_pose_inputs_errors_name_the_fix(pose_maps):
    pipe = _fake_pipeline("StableDiffusionControlNetPipeline")
    with pytest.raises(ValueError, match="give both width and height"):
        pose_inputs(pipe, pose_maps[0], width=64)
    with pytest.raises(ValueError, match="multi-controlnet pipeline"):
        pose_inputs(pipe, pose_maps[0], others=[Condition(pose_maps[1])])
    with pytest.raises(TypeError, match="PIL images or numpy"):
        pose_inputs(pipe, "pose.png")
    with pytest.raises(ValueError, match="has no controlnet"):
        pose_inputs(_fake_pipeline("StableDiffusionControlNetPipeline", controlnet=None), pose_maps[0])


@pytest.mark.parametrize(
    ("class_name", "size", "expected"),
    [
        ("StableDiffusionControlNetPipeline", (72, 100), (72, 104)),
        ("StableDiffusion3ControlNetPipeline", (72, 100), (80, 96)),
        ("FluxControlNetPipeline", (1000, 1500), (1008, 1504)),
        ("HunyuanDiTControlNetPipeline", (700, 1000), (768, 1024)),  # nearest standard 3:4 size
    ],
)
def test_pose_inputs_sizes_to_what_the_pipeline_accepts(class_name, size, expected):
    kwargs = pose_inputs(_fake_pipeline(class_name), Image.new("RGB", size))
    assert (kwargs["width"], kwargs["height"]) == expected
    assert kwargs[pipeline_family(type(_fake_pipeline(class_name))).argument].shape[-2:] == expected[::-1]


def test_pose_inputs_turns_hunyuandit_size_binning_off_for_other_sizes():
    hunyuan = _fake_pipeline("HunyuanDiTControlNetPipeline")
    assert (
        pose_inputs(hunyuan, Image.new("RGB", (64, 64)), width=64, height=64)["use_resolution_binning"]
        is False
    )
    assert "use_resolution_binning" not in pose_inputs(
        hunyuan, Image.new("RGB", (64, 64)), width=768, height=1024
    )


@pytest.mark.parametrize(
    ("name_or_path", "num_mode", "expected"),
    [
        ("InstantX/FLUX.1-dev-Controlnet-Union", 10, 4),
        ("Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0", None, None),
        ("/local/flux-union", 10, 4),  # not in the table: the architecture's (InstantX) table
        ("/local/flux-canny", None, None),  # no mode embedding: no control_mode
    ],
)
def test_pose_inputs_reads_the_model_id_from_the_controlnet_config(name_or_path, num_mode, expected):
    controlnet = SimpleNamespace(
        dtype=torch.float32, config=SimpleNamespace(_name_or_path=name_or_path, num_mode=num_mode)
    )
    kwargs = pose_inputs(
        _fake_pipeline("FluxControlNetPipeline", controlnet=controlnet), Image.new("RGB", (64, 64))
    )
    assert kwargs.get("control_mode") == expected


def test_pose_inputs_value_range_and_union_mode_without_a_known_id():
    black = Image.new("RGB", (64, 64))
    assert pose_inputs(_fake_pipeline("StableDiffusionControlNetPipeline"), black)["image"].min() == 0
    flux_union = SimpleNamespace(dtype=torch.float32, config=SimpleNamespace(num_mode=10))
    flux = pose_inputs(_fake_pipeline("FluxControlNetPipeline", controlnet=flux_union), black)
    assert flux["control_image"].min() == -1 and flux["control_mode"] == 4
    assert pose_inputs(_fake_pipeline("StableDiffusionXLControlNetUnionPipeline"), black)["control_mode"] == [
        0
    ]
    explicit = pose_inputs(
        _fake_pipeline("FluxControlNetPipeline", controlnet=flux_union), black, control_mode=2
    )
    assert explicit["control_mode"] == 2


@pytest.mark.slow
def test_pose_inputs_draws_with_the_models_recommendation(detector):
    pipe = _build("sdxl")
    photo = Image.open(PORTRAITS / "astronaut.png")
    # stick scaling starts at a 500 px drawing canvas (the detect resolution)
    thin = pose_inputs(pipe, photo, width=512, height=512, detector=detector, detect_resolution=512)
    thick = pose_inputs(
        pipe,
        photo,
        width=512,
        height=512,
        detector=detector,
        detect_resolution=512,
        model_id="xinsir/controlnet-openpose-sdxl-1.0",
    )
    expected = detector(photo, detect_resolution=512, image_resolution=512, stick_scaling=True)
    torch.testing.assert_close(thick["image"], control_tensor(expected))
    assert (thick["image"] > 0).sum() > (thin["image"] > 0).sum()
