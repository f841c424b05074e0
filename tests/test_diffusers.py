"""diffusers integration: sizing/tensor helpers, and tiny random ControlNet pipelines fed control maps."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dwpose_ctrl.diffusers_utils import control_tensor, fit_control_image, pipeline_size
from dwpose_ctrl.openpose import read_json
from dwpose_ctrl.render import draw_openpose

ROOT = Path(__file__).resolve().parents[1]
WAVING_POSE = ROOT / "examples" / "poses" / "waving.json"


def _pattern(height: int, width: int) -> np.ndarray:
    """An RGB uint8 image whose every pixel is distinct enough to track where it moved."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 7 % 256, cols * 5 % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)


# ---------------------------------------------------------------- pipeline_size


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        ((512, 768), None, (512, 768)),
        ((500, 333), None, (504, 336)),
        ((683, 512), 512, (680, 512)),  # short side to 512, long side 682.7 -> 680
        ((1000, 1500), 1024, (1024, 1536)),
        ((3, 3), None, (8, 8)),  # never below one multiple
        ((640, 480), 512, (680, 512)),
    ],
)
def test_pipeline_size_rounds_each_side_to_multiples_of_8(size, resolution, expected):
    assert pipeline_size(size, resolution=resolution) == expected


def test_pipeline_size_reads_pil_and_array_sizes():
    assert pipeline_size(Image.new("RGB", (100, 60))) == (104, 64)
    assert pipeline_size(np.zeros((60, 100, 3), np.uint8)) == (104, 64)
    assert pipeline_size((100, 60), multiple_of=64) == (128, 64)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (((0, 10),), ValueError),
        (((10, 10, 3),), ValueError),
        (((10, 10), -5), ValueError),
        (("image.png",), TypeError),
    ],
)
def test_pipeline_size_rejects_bad_input(args, error):
    with pytest.raises(error):
        pipeline_size(*args)


# ---------------------------------------------------------------- fit_control_image


def test_fit_pad_keeps_aspect_and_centres_on_black():
    source = np.full((40, 80, 3), 200, np.uint8)  # 2:1 map into a square
    fitted = fit_control_image(source, 64, 64)
    assert fitted.shape == (64, 64, 3)
    # scaled to 64 x 32, pasted at rows 16..47; black above and below
    assert (fitted[16:48] == 200).all()
    assert (fitted[:16] == 0).all() and (fitted[48:] == 0).all()


def test_fit_pad_odd_margin_puts_the_extra_pixel_below_and_right():
    source = np.full((7, 24, 3), 255, np.uint8)  # same width: 9 rows of margin, 4 above, 5 below
    fitted = fit_control_image(source, 24, 16)
    assert (fitted[4:11] == 255).all()
    assert not fitted[:4].any() and not fitted[11:].any()
    source = np.full((16, 13, 3), 255, np.uint8)  # same height: 3 columns of margin, 1 left, 2 right
    fitted = fit_control_image(source, 16, 16)
    assert (fitted[:, 1:14] == 255).all()
    assert not fitted[:, :1].any() and not fitted[:, 14:].any()


def test_fit_crop_fills_and_centre_crops():
    source = _pattern(32, 64)
    fitted = fit_control_image(source, 32, 32, mode="crop")
    # same scale (1.0): the middle 32 columns, untouched
    np.testing.assert_array_equal(fitted, source[:, 16:48])


def test_fit_crop_with_enlarging():
    source = np.zeros((20, 40, 3), np.uint8)
    source[:, 10:30] = 255  # a white centre band half as wide as the image
    fitted = fit_control_image(source, 40, 40, mode="crop")  # scaled x2 to 80 x 40, cropped to 40
    assert fitted.shape == (40, 40, 3)
    assert (fitted[:, 2:38] == 255).all()


def test_fit_stretch_ignores_aspect():
    source = _pattern(16, 32)
    fitted = fit_control_image(source, 64, 64, mode="stretch")
    assert fitted.shape == (64, 64, 3)
    np.testing.assert_array_equal(fitted, cv2.resize(source, (64, 64), interpolation=cv2.INTER_LINEAR))


def test_fit_same_size_is_an_unchanged_copy():
    source = _pattern(24, 16)
    for mode in ("pad", "crop", "stretch"):
        fitted = fit_control_image(source, 16, 24, mode=mode)
        np.testing.assert_array_equal(fitted, source)
        assert fitted is not source


def test_fit_shrinks_by_area_average():
    source = np.zeros((16, 16, 3), np.uint8)
    source[::2, ::2] = 255  # one lit pixel per 2x2 block averages to 64 (255/4 rounded)
    fitted = fit_control_image(source, 8, 8)
    assert (fitted == 64).all()


def test_fit_keeps_the_type_and_lists_give_lists():
    pil = Image.fromarray(_pattern(40, 80))
    fitted = fit_control_image(pil, 64, 64)
    assert isinstance(fitted, Image.Image) and fitted.size == (64, 64) and fitted.mode == "RGB"
    batch = fit_control_image([pil, _pattern(80, 40)], 64, 64)
    assert isinstance(batch, list) and len(batch) == 2
    assert isinstance(batch[0], Image.Image) and isinstance(batch[1], np.ndarray)
    assert batch[1].shape == (64, 64, 3)
    palette = pil.convert("P")
    assert fit_control_image(palette, 64, 64).mode == "RGB"


@pytest.mark.parametrize(
    ("width", "height", "mode", "error", "message"),
    [
        (500, 512, "pad", ValueError, "use 504"),
        (512, 0, "pad", ValueError, "positive"),
        (512.0, 512, "pad", TypeError, "int"),
        (512, 512, "fill", ValueError, "unknown mode"),
    ],
)
def test_fit_rejects_bad_sizes_and_modes(width, height, mode, error, message):
    with pytest.raises(error, match=message):
        fit_control_image(np.zeros((8, 8, 3), np.uint8), width, height, mode=mode)


def test_fit_rejects_non_images():
    with pytest.raises(TypeError, match="PIL image or a numpy"):
        fit_control_image("pose.png", 64, 64)


# ---------------------------------------------------------------- control_tensor


def test_control_tensor_layout_and_values():
    first, second = _pattern(24, 16), _pattern(24, 16)[::-1].copy()
    tensor = control_tensor([Image.fromarray(first), second])
    assert tensor.shape == (2, 3, 24, 16) and tensor.dtype == torch.float32
    assert tensor.device.type == "cpu"
    np.testing.assert_allclose(tensor[0].permute(1, 2, 0).numpy(), first / 255.0, atol=1e-7)
    np.testing.assert_allclose(tensor[1].permute(1, 2, 0).numpy(), second / 255.0, atol=1e-7)
    assert control_tensor(first).shape == (1, 3, 24, 16)
    assert control_tensor(np.stack([first, second])).shape == (2, 3, 24, 16)


def test_control_tensor_grey_and_rgba_become_rgb():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tensor = control_tensor(grey)
    assert tensor.shape == (1, 3, 8, 8)
    assert torch.equal(tensor[0, 0], tensor[0, 2])
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    assert control_tensor(rgba)[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]


class _FakePipeline:
    """Stands in for a pipeline: diffusers pipelines expose .device, .dtype and .controlnet."""

    device = torch.device("cpu")
    dtype = torch.float32
    controlnet = SimpleNamespace(dtype=torch.bfloat16)


def test_control_tensor_follows_the_pipeline_and_explicit_overrides():
    image = _pattern(8, 8)
    assert control_tensor(image, pipeline=_FakePipeline()).dtype == torch.bfloat16
    assert control_tensor(image, pipeline=_FakePipeline(), dtype=torch.float64).dtype == torch.float64
    assert control_tensor(image, dtype=torch.float16).dtype == torch.float16


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        ([], ValueError, "no control images"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((16, 8, 3), np.uint8)], ValueError, "fit_control_image"),
        (np.zeros((8, 8, 3), np.float32), TypeError, "uint8"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, "3 channels"),
        (torch.zeros(1, 3, 8, 8), TypeError, "PIL images or numpy"),
    ],
)
def test_control_tensor_rejects_bad_input(images, error, message):
    with pytest.raises(error, match=message):
        control_tensor(images)


# ---------------------------------------------------------------- tiny pipelines


@pytest.fixture(scope="module")
def sd_pipeline(tmp_path_factory):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from tiny_pipelines import save_tiny_sd_controlnet

    path = save_tiny_sd_controlnet(tmp_path_factory.mktemp("tiny") / "sd")
    controlnet = ControlNetModel.from_pretrained(path / "controlnet")
    pipe = StableDiffusionControlNetPipeline.from_pretrained(path, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl_pipeline(tmp_path_factory):
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline
    from tiny_pipelines import save_tiny_sdxl_controlnet

    path = save_tiny_sdxl_controlnet(tmp_path_factory.mktemp("tiny") / "sdxl")
    controlnet = ControlNetModel.from_pretrained(path / "controlnet")
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(path, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pose_maps() -> list[Image.Image]:
    """Two different 64 x 96 OpenPose maps drawn from the example pose (one mirrored)."""
    frame = dataclasses.replace(read_json(WAVING_POSE), width=64, height=96)
    drawn = draw_openpose(frame)
    return [Image.fromarray(drawn), Image.fromarray(drawn[:, ::-1].copy())]


def _generate(pipe, image, prompt="a person dancing", output_type="latent", **kwargs):
    return pipe(
        prompt,
        image=image,
        num_inference_steps=2,
        output_type=output_type,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    ).images


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_pipeline_takes_a_pose_map_as_pil_and_generates_at_its_size(which, request, pose_maps):
    pipe = request.getfixturevalue(f"{which}_pipeline")
    images = _generate(pipe, pose_maps[0], output_type="pil")
    assert len(images) == 1 and images[0].size == (64, 96)


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_pipeline_result_depends_on_the_pose_and_tensor_path_equals_pil_path(which, request, pose_maps):
    pipe = request.getfixturevalue(f"{which}_pipeline")
    from_pil = _generate(pipe, pose_maps[0])
    from_tensor = _generate(pipe, control_tensor(pose_maps[0], pipeline=pipe))
    other_pose = _generate(pipe, pose_maps[1])
    # control_tensor follows diffusers' convention ([0, 1], NCHW, RGB): the same latents exactly
    torch.testing.assert_close(from_tensor, from_pil, rtol=0, atol=1e-5)
    assert (other_pose - from_pil).abs().max() > 1e-3


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_pipeline_batch_of_pose_maps_fitted_to_a_size(which, request, pose_maps):
    pipe = request.getfixturevalue(f"{which}_pipeline")
    width, height = 64, 64
    maps = fit_control_image(pose_maps, width, height)
    prompts = ["a person dancing", "an astronaut standing"]
    as_list = _generate(pipe, maps, prompt=prompts, output_type="np", width=width, height=height)
    as_tensor = _generate(
        pipe,
        control_tensor(maps, pipeline=pipe),
        prompt=prompts,
        output_type="np",
        width=width,
        height=height,
    )
    assert as_list.shape == (2, height, width, 3)
    np.testing.assert_allclose(as_tensor, as_list, atol=1e-5)
    # each prompt got its own map: the two results differ
    assert np.abs(as_list[0] - as_list[1]).max() > 0


# ---------------------------------------------------------------- DWposeDetector as the control-map source

PORTRAITS = ROOT / "examples" / "images"


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from tiny_pipelines import save_posing_detector

    from dwpose_ctrl.detector import DWposeDetector

    det_model, pose_model = save_posing_detector(tmp_path_factory.mktemp("posing"))
    return DWposeDetector(det_model=det_model, pose_model=pose_model)


@pytest.fixture(scope="module")
def portraits() -> list[Image.Image]:
    return [Image.open(PORTRAITS / "astronaut.png"), Image.open(PORTRAITS / "grace_hopper.jpg")]


def test_detector_output_type_np_is_the_pil_map_as_an_array(detector, portraits):
    as_pil = detector(portraits[1], detect_resolution=128, image_resolution=128)
    as_np = detector(portraits[1], detect_resolution=128, image_resolution=128, output_type="np")
    assert isinstance(as_pil, Image.Image) and as_pil.mode == "RGB"
    assert isinstance(as_np, np.ndarray) and as_np.dtype == np.uint8 and as_np.shape[2] == 3
    np.testing.assert_array_equal(as_np, np.asarray(as_pil))
    assert as_np.any()


@pytest.mark.parametrize(
    ("image_resolution", "expected_size"),
    [
        # grace_hopper is 512 x 600: short side to the resolution, each side rounded to 64
        (512, (512, 576)),
        (256, (256, 320)),
        (1024, (1024, 1216)),
        (None, (512, 600)),  # None keeps the input size
    ],
)
def test_detector_output_size_follows_image_resolution(detector, portraits, image_resolution, expected_size):
    control = detector(portraits[1], detect_resolution=128, image_resolution=image_resolution)
    assert control.size == expected_size


def _drawn(image: np.ndarray) -> np.ndarray:
    return image.any(axis=2)


@pytest.mark.parametrize("part", ["hand", "face", "body"])
def test_detector_include_flags_remove_exactly_that_part(detector, portraits, part):
    # detect_resolution == image_resolution: no final resize, so pixels compare exactly
    def control(**include):
        return detector(
            portraits[0], detect_resolution=256, image_resolution=256, output_type="np", **include
        )

    everything = control()
    without_part = control(**{f"include_{part}": False})
    only_part = control(**{f"include_{name}": name == part for name in ("body", "hand", "face")})
    changed = (everything != without_part).any(axis=2)
    assert changed.sum() > 50  # the part was drawn and is gone
    # nothing changes where the part alone draws nothing
    assert not changed[~_drawn(only_part)].any()
    assert _drawn(only_part).sum() > 50


@pytest.mark.parametrize("hand_and_face", [True, False])
def test_detector_hand_and_face_is_controlnet_aux_shorthand(detector, portraits, hand_and_face):
    def control(**kwargs):
        return detector(portraits[0], detect_resolution=256, image_resolution=256, output_type="np", **kwargs)

    expected = control(include_hand=hand_and_face, include_face=hand_and_face)
    shorthand = control(
        include_hand=not hand_and_face, include_face=not hand_and_face, hand_and_face=hand_and_face
    )
    assert np.array_equal(shorthand, expected)
    assert not np.array_equal(
        shorthand, control(include_hand=not hand_and_face, include_face=not hand_and_face)
    )


def test_detector_include_foot_adds_feet(detector, portraits):
    plain = detector(portraits[0], detect_resolution=256, image_resolution=256, output_type="np")
    with_feet = detector(
        portraits[0], detect_resolution=256, image_resolution=256, output_type="np", include_foot=True
    )
    assert _drawn(with_feet).sum() > _drawn(plain).sum()


def test_detector_lists_in_give_lists_out_equal_to_single_calls(detector, portraits):
    maps = detector(portraits, detect_resolution=128, image_resolution=64)
    assert isinstance(maps, list) and len(maps) == 2
    for portrait, control in zip(portraits, maps, strict=True):
        np.testing.assert_array_equal(np.asarray(control), np.asarray(detector(portrait, 128, 64)))


def test_detector_stick_scaling_thickens_limbs_on_large_maps(detector, portraits):
    plain = detector(portraits[0], detect_resolution=1024, image_resolution=1024, output_type="np")
    scaled = detector(
        portraits[0], detect_resolution=1024, image_resolution=1024, output_type="np", stick_scaling=True
    )
    assert _drawn(scaled).sum() > 1.5 * _drawn(plain).sum()


@pytest.fixture(scope="module")
def tall_portrait(portraits) -> Image.Image:
    """Grace Hopper stretched to 400 x 640: at image_resolution 64 its map is 64 x 128."""
    return portraits[1].resize((400, 640))


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_pipeline_with_a_detector_map_as_image(which, request, detector, tall_portrait):
    pipe = request.getfixturevalue(f"{which}_pipeline")
    control = detector(tall_portrait, detect_resolution=128, image_resolution=64)
    images = _generate(pipe, control, output_type="pil")
    assert control.size == (64, 128)
    assert images[0].size == control.size


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_pipeline_with_a_batch_of_detector_maps_via_helpers(
    which, request, detector, portraits, tall_portrait
):
    pipe = request.getfixturevalue(f"{which}_pipeline")
    maps = detector([portraits[0], tall_portrait], detect_resolution=128, image_resolution=64)
    assert [control.size for control in maps] == [(64, 64), (64, 128)]
    width, height = 64, 96
    fitted = fit_control_image(maps, width, height)
    prompts = ["a photo of an astronaut", "a portrait"]
    as_list = _generate(pipe, fitted, prompt=prompts, output_type="np", width=width, height=height)
    tensor = control_tensor(fitted, pipeline=pipe)
    as_tensor = _generate(pipe, tensor, prompt=prompts, output_type="np", width=width, height=height)
    assert as_list.shape == (2, height, width, 3)
    np.testing.assert_allclose(as_tensor, as_list, atol=1e-5)


def test_numpy_maps_go_in_through_control_tensor(sd_pipeline, detector, portraits):
    """diffusers reads a uint8 array as values already in [0, 1] (and an HWC array as a batch of
    H images), so a map made with output_type="np" must go through control_tensor (or PIL)."""
    as_pil = detector(portraits[0], detect_resolution=128, image_resolution=64)
    as_np = detector(portraits[0], detect_resolution=128, image_resolution=64, output_type="np")
    from_pil = _generate(sd_pipeline, as_pil)
    from_helper = _generate(sd_pipeline, control_tensor(as_np, pipeline=sd_pipeline))
    torch.testing.assert_close(from_helper, from_pil, rtol=0, atol=1e-5)
    unconverted = _generate(sd_pipeline, as_np[None])
    assert (unconverted - from_pil).abs().max() > 1.0
