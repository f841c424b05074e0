"""RTMPose in PyTorch: mmpose names and shapes for every size, parameter counts, the mmpose fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require_asset

from dwpose_ctrl.models import build_rtmpose, infer_rtmpose_config, load_state_dict

# SPEC section 8, written out independently of dwpose_ctrl.models: (deepen, widen) per size.
SIZE_FACTORS = {"t": (0.167, 0.375), "s": (0.33, 0.5), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}
BASE_STAGES = [(64, 128, 3), (128, 256, 6), (256, 512, 6), (512, 1024, 3)]


def _conv_module(prefix: str, out_channels: int, in_per_group: int, kernel: int) -> dict[str, tuple]:
    return {
        f"{prefix}.conv.weight": (out_channels, in_per_group, kernel, kernel),
        f"{prefix}.bn.weight": (out_channels,),
        f"{prefix}.bn.bias": (out_channels,),
        f"{prefix}.bn.running_mean": (out_channels,),
        f"{prefix}.bn.running_var": (out_channels,),
        f"{prefix}.bn.num_batches_tracked": (),
    }


def expected_rtmpose_shapes(size: str, height: int, width: int, keypoints: int = 133) -> dict[str, tuple]:
    """Every mmpose state-dict key and shape, generated from the architecture description."""
    deepen, widen = SIZE_FACTORS[size]
    stem = int(64 * widen)
    shapes = {}
    shapes.update(_conv_module("backbone.stem.0", stem // 2, 3, 3))
    shapes.update(_conv_module("backbone.stem.1", stem // 2, stem // 2, 3))
    shapes.update(_conv_module("backbone.stem.2", stem, stem // 2, 3))
    for stage, (c_in, c_out, blocks) in enumerate(BASE_STAGES, start=1):
        c_in, c_out = int(c_in * widen), int(c_out * widen)
        n = max(round(blocks * deepen), 1)
        shapes.update(_conv_module(f"backbone.stage{stage}.0", c_out, c_in, 3))
        csp = f"backbone.stage{stage}.1"
        if stage == 4:
            shapes.update(_conv_module("backbone.stage4.1.conv1", c_out // 2, c_out, 1))
            shapes.update(_conv_module("backbone.stage4.1.conv2", c_out, c_out // 2 * 4, 1))
            csp = "backbone.stage4.2"
        half = c_out // 2
        shapes.update(_conv_module(f"{csp}.main_conv", half, c_out, 1))
        shapes.update(_conv_module(f"{csp}.short_conv", half, c_out, 1))
        shapes.update(_conv_module(f"{csp}.final_conv", c_out, c_out, 1))
        for block in range(n):
            shapes.update(_conv_module(f"{csp}.blocks.{block}.conv1", half, half, 3))
            shapes.update(_conv_module(f"{csp}.blocks.{block}.conv2.depthwise_conv", half, 1, 5))
            shapes.update(_conv_module(f"{csp}.blocks.{block}.conv2.pointwise_conv", half, half, 1))
        shapes[f"{csp}.attention.fc.weight"] = (c_out, c_out, 1, 1)
        shapes[f"{csp}.attention.fc.bias"] = (c_out,)
    head_in = int(1024 * widen)
    cells = (height // 32) * (width // 32)
    shapes.update(
        {
            "head.final_layer.weight": (keypoints, head_in, 7, 7),
            "head.final_layer.bias": (keypoints,),
            "head.mlp.0.g": (1,),
            "head.mlp.1.weight": (256, cells),
            "head.gau.uv.weight": (1152, 256),
            "head.gau.o.weight": (256, 512),
            "head.gau.gamma": (2, 128),
            "head.gau.beta": (2, 128),
            "head.gau.ln.g": (1,),
            "head.gau.res_scale.scale": (256,),
            "head.cls_x.weight": (2 * width, 256),
            "head.cls_y.weight": (2 * height, 256),
        }
    )
    return shapes


@pytest.mark.parametrize("size", ["t", "s", "m", "l", "x"])
def test_every_size_has_mmpose_names_and_loads_a_mmpose_state_dict_strictly(size):
    expected = expected_rtmpose_shapes(size, 256, 192)
    model = build_rtmpose(size, (256, 192))
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == expected
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.rand(shape, generator=generator) for key, shape in expected.items()}
    state.update({key: torch.tensor(7) for key in expected if key.endswith("num_batches_tracked")})
    assert not model.load_state_dict(state, strict=True).missing_keys
    assert torch.equal(model.head.cls_x.weight, state["head.cls_x.weight"])
    assert infer_rtmpose_config(state).size == size


def test_384x288_head_shapes_and_the_published_parameter_count():
    model = build_rtmpose("l", (384, 288))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_rtmpose_shapes(
        "l", 384, 288
    )
    assert sum(p.numel() for p in model.parameters()) == 33_610_919
    config = infer_rtmpose_config(model.state_dict())
    assert (config.size, config.input_size, config.num_keypoints) == ("l", (384, 288), 133)


def test_mmpose_fixture_loads_strictly_and_reproduces_mmpose_outputs():
    weights = require_asset("fixtures/rtmpose-t_256x192_mmpose_random.pth")
    outputs = np.load(require_asset("fixtures/rtmpose-t_256x192_mmpose_random_out.npz"))
    state = load_state_dict(weights)
    model = build_rtmpose("t", (256, 192))
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        simcc_x, simcc_y = model(torch.from_numpy(outputs["input"]))
    assert simcc_x.shape == (2, 133, 384) and simcc_y.shape == (2, 133, 512)
    assert np.abs(simcc_x.numpy() - outputs["simcc_x"]).max() <= 1e-4
    assert np.abs(simcc_y.numpy() - outputs["simcc_y"]).max() <= 1e-4
    # the backbone alone gives the stride-32 map the head (and feature distillation) reads
    with torch.no_grad():
        features = model.backbone(torch.from_numpy(outputs["input"]))
        head_x, _ = model.head(features)
    assert features.shape == (2, 384, 8, 6)
    assert torch.equal(head_x, simcc_x)


def test_keypoint_count_and_input_size_are_configurable():
    model = build_rtmpose("t", (384, 288), num_keypoints=17).eval()
    with torch.no_grad():
        simcc_x, simcc_y = model(torch.zeros(3, 3, 384, 288))
    assert simcc_x.shape == (3, 17, 576) and simcc_y.shape == (3, 17, 768)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (("q",), ValueError),
        (("t", (250, 192)), ValueError),
        (("t", (256,)), TypeError),
        (("t", (256, 192), 0), ValueError),
    ],
)
def test_bad_arguments_are_refused(arguments, error):
    with pytest.raises(error):
        build_rtmpose(*arguments)
