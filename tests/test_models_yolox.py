"""YOLOX in PyTorch: official names for every size, parameter counts, output layout, real weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dwpose_ctrl.models import build_from_onnx, build_yolox, infer_yolox_config, load_torch_backend
from dwpose_ctrl.runtime import OnnxBackend

# Official YOLOX exps, written out independently: (depth, width, depthwise) per variant.
VARIANTS = {
    "nano": (0.33, 0.25, True),
    "tiny": (0.33, 0.375, False),
    "s": (0.33, 0.50, False),
    "m": (0.67, 0.75, False),
    "l": (1.0, 1.0, False),
    "x": (1.33, 1.25, False),
}
# Published parameter counts (millions) of the official models.
PUBLISHED_MILLIONS = {"nano": "0.91", "tiny": "5.06", "s": "9.0", "m": "25.3", "l": "54.2", "x": "99.1"}


def _base_conv(prefix: str, out_channels: int, in_per_group: int, kernel: int) -> dict[str, tuple]:
    return {
        f"{prefix}.conv.weight": (out_channels, in_per_group, kernel, kernel),
        f"{prefix}.bn.weight": (out_channels,),
        f"{prefix}.bn.bias": (out_channels,),
        f"{prefix}.bn.running_mean": (out_channels,),
        f"{prefix}.bn.running_var": (out_channels,),
        f"{prefix}.bn.num_batches_tracked": (),
    }


def _conv(prefix: str, c_in: int, c_out: int, kernel: int, depthwise: bool) -> dict[str, tuple]:
    if depthwise:
        return {
            **_base_conv(f"{prefix}.dconv", c_in, 1, kernel),
            **_base_conv(f"{prefix}.pconv", c_out, c_in, 1),
        }
    return _base_conv(prefix, c_out, c_in, kernel)


def _csp(prefix: str, c_in: int, c_out: int, n: int, depthwise: bool) -> dict[str, tuple]:
    hidden = c_out // 2
    shapes = {
        **_base_conv(f"{prefix}.conv1", hidden, c_in, 1),
        **_base_conv(f"{prefix}.conv2", hidden, c_in, 1),
        **_base_conv(f"{prefix}.conv3", c_out, 2 * hidden, 1),
    }
    for i in range(n):
        shapes.update(_base_conv(f"{prefix}.m.{i}.conv1", hidden, hidden, 1))
        shapes.update(_conv(f"{prefix}.m.{i}.conv2", hidden, hidden, 3, depthwise))
    return shapes


def expected_yolox_shapes(variant: str, classes: int = 80) -> dict[str, tuple]:
    depth, width, dw = VARIANTS[variant]
    base = int(64 * width)
    base_depth = max(round(3 * depth), 1)
    b = "backbone.backbone"
    shapes = _base_conv(f"{b}.stem.conv", base, 12, 3)
    channels = [base, base * 2, base * 4, base * 8, base * 16]
    for index, stage in enumerate(("dark2", "dark3", "dark4", "dark5")):
        c_in, c_out = channels[index], channels[index + 1]
        shapes.update(_conv(f"{b}.{stage}.0", c_in, c_out, 3, dw))
        if stage == "dark5":
            shapes.update(_base_conv(f"{b}.dark5.1.conv1", c_out // 2, c_out, 1))
            shapes.update(_base_conv(f"{b}.dark5.1.conv2", c_out, c_out // 2 * 4, 1))
            shapes.update(_csp(f"{b}.dark5.2", c_out, c_out, base_depth, dw))
        else:
            n = base_depth * (1 if stage == "dark2" else 3)
            shapes.update(_csp(f"{b}.{stage}.1", c_out, c_out, n, dw))
    c3, c4, c5 = int(256 * width), int(512 * width), int(1024 * width)
    n = round(3 * depth)
    shapes.update(_base_conv("backbone.lateral_conv0", c4, c5, 1))
    shapes.update(_csp("backbone.C3_p4", 2 * c4, c4, n, dw))
    shapes.update(_base_conv("backbone.reduce_conv1", c3, c4, 1))
    shapes.update(_csp("backbone.C3_p3", 2 * c3, c3, n, dw))
    shapes.update(_conv("backbone.bu_conv2", c3, c3, 3, dw))
    shapes.update(_csp("backbone.C3_n3", 2 * c3, c4, n, dw))
    shapes.update(_conv("backbone.bu_conv1", c4, c4, 3, dw))
    shapes.update(_csp("backbone.C3_n4", 2 * c4, c5, n, dw))
    hidden = int(256 * width)
    for level, c_in in enumerate((c3, c4, c5)):
        shapes.update(_base_conv(f"head.stems.{level}", hidden, c_in, 1))
        for branch in ("cls_convs", "reg_convs"):
            for i in range(2):
                shapes.update(_conv(f"head.{branch}.{level}.{i}", hidden, hidden, 3, dw))
        for name, out in (("cls_preds", classes), ("reg_preds", 4), ("obj_preds", 1)):
            shapes[f"head.{name}.{level}.weight"] = (out, hidden, 1, 1)
            shapes[f"head.{name}.{level}.bias"] = (out,)
    return shapes


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_has_official_names_and_loads_strictly(variant):
    expected = expected_yolox_shapes(variant)
    model = build_yolox(variant)
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == expected
    generator = torch.Generator().manual_seed(1)
    state = {key: torch.rand(shape, generator=generator) for key, shape in expected.items()}
    state.update({key: torch.tensor(3) for key in expected if key.endswith("num_batches_tracked")})
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.head.obj_preds[2].bias, state["head.obj_preds.2.bias"])
    config = infer_yolox_config(state)
    assert (config.size, config.num_classes) == (variant, 80)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    published = PUBLISHED_MILLIONS[variant]
    assert f"{millions:.{len(published.split('.')[1])}f}" == published


def test_output_layout_is_the_official_onnx_layout():
    model = build_yolox("nano", num_classes=3).eval()
    with torch.no_grad():
        output = model(torch.rand(2, 3, 96, 128) * 255)
    anchors = sum((96 // s) * (128 // s) for s in (8, 16, 32))
    assert output.shape == (2, anchors, 5 + 3)
    scores = output[..., 4:]
    assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0  # sigmoid applied
    # row-major grid per stride, strides concatenated: anchor 12*16 is the first stride-16 cell
    with torch.no_grad():
        features = model.backbone(torch.rand(1, 3, 96, 128))
    assert [f.shape[-2:] for f in features] == [(12, 16), (6, 8), (3, 4)]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown YOLOX size"):
        build_yolox("huge")
    with pytest.raises(ValueError, match="num_classes"):
        build_yolox("s", num_classes=0)


def _letterboxed_val5(val5_dir):
    from PIL import Image

    from dwpose_ctrl.person_detection import letterbox

    images = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(val5_dir.glob("*.jpg"))]
    return images, [letterbox(np.ascontiguousarray(image[:, :, ::-1]), (416, 416))[0] for image in images]


def test_real_yolox_nano_onnx_weights_import_and_match_onnxruntime(yolox_nano_path, val5_dir):
    import onnxruntime as ort

    model = build_from_onnx(yolox_nano_path)
    assert (model.size, model.num_classes) == ("nano", 80)
    session = ort.InferenceSession(str(yolox_nano_path), providers=["CPUExecutionProvider"])
    _, batches = _letterboxed_val5(val5_dir)
    worst = 0.0
    for batch in batches:
        reference = session.run(None, {"images": batch})[0]
        with torch.no_grad():
            ours = model(torch.from_numpy(batch)).numpy()
        assert ours.shape == reference.shape == (1, 3549, 85)
        worst = max(worst, float(np.abs(ours - reference).max()))
    assert worst <= 1e-3


def test_real_yolox_nano_imports_by_execution_order_without_scope_names(yolox_nano_path, tmp_path):
    import onnx

    graph = onnx.load(str(yolox_nano_path))
    for index, node in enumerate(graph.graph.node):  # as older torch versions name nodes
        node.name = f"{node.op_type}_{index}"
    anonymous = tmp_path / "yolox_nano_anonymous.onnx"
    onnx.save(graph, str(anonymous))
    named, ordered = build_from_onnx(yolox_nano_path), build_from_onnx(anonymous)
    for key, value in named.state_dict().items():
        assert torch.equal(ordered.state_dict()[key], value), key


def test_real_yolox_nano_gives_the_same_person_boxes_on_the_torch_backend(yolox_nano_path, val5_dir):
    from dwpose_ctrl.person_detection import detect_persons

    onnx_backend = OnnxBackend(yolox_nano_path)
    torch_backend = load_torch_backend(yolox_nano_path, role="detector")
    assert torch_backend.input_size == (416, 416) and torch_backend.dynamic_batch
    images, _ = _letterboxed_val5(val5_dir)
    found = 0
    for image in images:
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        reference = detect_persons(onnx_backend, bgr)
        ours = detect_persons(torch_backend, bgr)
        assert len(ours) == len(reference)
        np.testing.assert_allclose(ours.boxes, reference.boxes, atol=0.05)
        np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-4)
        found += len(ours)
    assert found >= 20  # the assets README measures 22 of 24 persons with BGR input
