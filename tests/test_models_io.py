"""Weights in and out: safe loading, checkpoint unwrapping, safetensors, ONNX export/import, convert CLI."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dwpose_ctrl.convert import export_model, main
from dwpose_ctrl.models import (
    UnsafeCheckpointError,
    build_from_onnx,
    build_rtmpose,
    build_yolox,
    export_onnx,
    export_safetensors,
    load_model,
    load_onnx_weights,
    load_state_dict,
    read_weight_file,
    unwrap_state_dict,
)


class NotATensor:
    """A custom class: unpickling it needs arbitrary code, which weights_only refuses."""

    def __init__(self, value: int):
        self.value = value


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, including BatchNorm statistics and the head's scalars (not 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            noise = torch.rand(tensor.shape, generator=generator)
            if name.endswith(("running_var", "bn.weight", ".g", "res_scale.scale")):
                tensor.copy_(0.5 + noise)
            else:
                tensor.copy_((noise - 0.5) * 0.2)
    return model.eval()


def _run(model: torch.nn.Module, batch: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = model(torch.from_numpy(batch))
    return [o.numpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]


def _max_diff(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    assert [a.shape for a in first] == [b.shape for b in second]
    return max(float(np.abs(a - b).max()) for a, b in zip(first, second, strict=True))


@pytest.fixture(scope="module")
def rtmpose_t() -> torch.nn.Module:
    return _randomised(build_rtmpose("t", (256, 192)))


@pytest.fixture(scope="module")
def rtmpose_t_onnx(rtmpose_t, tmp_path_factory):
    return export_onnx(rtmpose_t, tmp_path_factory.mktemp("onnx") / "rtmpose-t.onnx")


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((3, 3, 256, 192)).astype(np.float32)


# ----------------------------------------------------------------- safe loading


def test_a_pickle_needing_code_is_refused_unless_the_caller_opts_in(tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": NotATensor(3)}, path)
    with pytest.raises(UnsafeCheckpointError, match="allow_unsafe_pickle=True") as refused:
        read_weight_file(path)
    assert "NotATensor" in str(refused.value)
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path)
    checkpoint = read_weight_file(path, allow_unsafe_pickle=True)
    assert checkpoint["extra"].value == 3
    assert torch.equal(load_state_dict(path, allow_unsafe_pickle=True)["w"], torch.ones(2))


def test_numpy_metadata_of_mmengine_checkpoints_loads_without_opting_in(tmp_path):
    import zipfile

    path = tmp_path / "numpy_meta.pth"
    meta = {"dataset_meta": {"sigmas": np.array([0.026, 0.025]), "epoch": np.int64(270)}}
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": meta}, path)
    loaded = read_weight_file(path)
    assert loaded["meta"]["dataset_meta"]["sigmas"].tolist() == [0.026, 0.025]
    # the same file as numpy 1 writes it (numpy.core instead of numpy._core)
    legacy = tmp_path / "numpy1_meta.pth"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(legacy, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            target.writestr(info, data)
    assert read_weight_file(legacy)["meta"]["dataset_meta"]["epoch"] == 270


def test_plain_checkpoints_load_without_opting_in(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"epoch": 3, "name": "x"}}, path)
    assert list(load_state_dict(path)) == ["w"]
    text = tmp_path / "plain.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match="unsupported weight file type"):
        read_weight_file(text)
    with pytest.raises(FileNotFoundError):
        read_weight_file(tmp_path / "missing.pth")


def test_checkpoint_containers_and_distiller_prefixes_are_unwrapped():
    w, h = torch.zeros(1), torch.ones(1)
    assert list(unwrap_state_dict({"state_dict": {"backbone.a": w}})) == ["backbone.a"]
    assert list(unwrap_state_dict({"model": {"head.b": h}, "optimizer": {}})) == ["head.b"]
    assert list(unwrap_state_dict({"module.backbone.a": w})) == ["backbone.a"]
    distiller = {
        "teacher.backbone.a": torch.full((1,), 1.0),
        "teacher.head.b": torch.full((1,), 2.0),
        "student.backbone.a": torch.full((1,), 3.0),
        "student.head.b": torch.full((1,), 4.0),
    }
    assert unwrap_state_dict(distiller)["backbone.a"].item() == 3.0  # auto = student
    assert unwrap_state_dict(distiller, "teacher")["head.b"].item() == 2.0
    stage2 = unwrap_state_dict({"state_dict": distiller}, "stage2")
    assert (stage2["backbone.a"].item(), stage2["head.b"].item()) == (1.0, 4.0)
    # a stage-2 checkpoint whose student has only a head composes automatically
    head_only = {k: v for k, v in distiller.items() if k != "student.backbone.a"}
    auto = unwrap_state_dict(head_only)
    assert (auto["backbone.a"].item(), auto["head.b"].item()) == (1.0, 4.0)
    with pytest.raises(ValueError, match="not a distiller checkpoint"):
        unwrap_state_dict({"backbone.a": w}, "teacher")
    with pytest.raises(TypeError):
        unwrap_state_dict([w])
    assert list(unwrap_state_dict(torch.nn.Linear(2, 1, bias=False))) == ["weight"]


# ----------------------------------------------------------------- safetensors


def test_safetensors_round_trip_keeps_names_and_architecture(rtmpose_t, tmp_path):
    from safetensors import safe_open

    path = export_safetensors(rtmpose_t, tmp_path / "t.safetensors")
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {
            "family": "rtmpose",
            "size": "t",
            "input_size": "256x192",
            "num_keypoints": "133",
        }
    loaded = load_model(path)
    for key, value in rtmpose_t.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# ----------------------------------------------------------------- ONNX out and back in


def test_rtmpose_onnx_export_matches_pytorch_with_a_dynamic_batch(rtmpose_t, rtmpose_t_onnx, crops):
    session = ort.InferenceSession(str(rtmpose_t_onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["simcc_x", "simcc_y"]
    assert session.get_inputs()[0].shape[1:] == [3, 256, 192]
    assert not isinstance(session.get_inputs()[0].shape[0], int)
    graph = onnx.load(str(rtmpose_t_onnx))
    assert graph.opset_import[0].version >= 11
    assert "BatchNormalization" not in {node.op_type for node in graph.graph.node}  # fused like real exports
    assert _max_diff(session.run(None, {"input": crops}), _run(rtmpose_t, crops)) <= 1e-4


def _strip_scope_names(source, target):
    graph = onnx.load(str(source))
    for index, node in enumerate(graph.graph.node):
        node.name = f"node_{index}"
    onnx.save(graph, str(target))
    return target


def _ort_optimised(source, target):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return target


def _unfolded_export(model, target):
    """An export without constant folding: BatchNormalization nodes, weights behind Transpose/Unsqueeze."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 256, 192),),
            str(target),
            input_names=["input"],
            output_names=["simcc_x", "simcc_y"],
            opset_version=11,
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            dynamo=False,
        )
    assert "BatchNormalization" in {node.op_type for node in onnx.load(str(target)).graph.node}
    return _strip_scope_names(target, target)


@pytest.mark.parametrize(
    "variant",
    ["as exported", "without scope names", "onnxruntime-optimised", "unfolded, without scope names"],
)
def test_rtmpose_onnx_weights_import_back(rtmpose_t, rtmpose_t_onnx, crops, tmp_path, variant):
    path = rtmpose_t_onnx
    if variant == "without scope names":  # forces matching by execution order
        path = _strip_scope_names(rtmpose_t_onnx, tmp_path / "anonymous.onnx")
    elif variant == "onnxruntime-optimised":  # node order changed by the optimiser
        path = _ort_optimised(rtmpose_t_onnx, tmp_path / "optimised.onnx")
    elif variant == "unfolded, without scope names":
        path = _unfolded_export(rtmpose_t, tmp_path / "unfolded.onnx")
    imported = build_from_onnx(path)
    assert (imported.size, imported.input_size, imported.num_keypoints) == ("t", (256, 192), 133)
    assert _max_diff(_run(imported, crops), _run(rtmpose_t, crops)) <= 1e-4
    assert torch.allclose(imported.head.gau.gamma, rtmpose_t.head.gau.gamma)


def test_onnx_import_refuses_another_architecture(rtmpose_t_onnx):
    with pytest.raises(ValueError, match="takes 256x192 inputs"):
        load_onnx_weights(build_rtmpose("t", (384, 288)), rtmpose_t_onnx)
    with pytest.raises(ValueError, match="different architecture or size"):
        load_onnx_weights(build_rtmpose("s", (256, 192)), rtmpose_t_onnx)
    with pytest.raises(ValueError, match=r"does not fit head\.final_layer"):
        load_onnx_weights(build_rtmpose("t", (256, 192), num_keypoints=17), rtmpose_t_onnx)
    with pytest.raises(TypeError):
        load_onnx_weights(torch.nn.Linear(2, 2), rtmpose_t_onnx)


def test_yolox_export_model_matches_pytorch_and_imports_back(tmp_path):
    model = _randomised(build_yolox("nano", num_classes=4), seed=2)
    result = export_model(model, tmp_path, "nano", input_size=(128, 160))
    assert result.onnx_path == tmp_path / "nano.onnx" and result.safetensors_path.exists()
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    batch = np.random.default_rng(1).uniform(0, 255, (2, 3, 128, 160)).astype(np.float32)
    reference = _run(model, batch)
    assert _max_diff(session.run(None, {"images": batch}), reference) <= 1e-4
    imported = build_from_onnx(result.onnx_path)
    assert (imported.size, imported.num_classes) == ("nano", 4)
    assert _max_diff(_run(imported, batch), reference) <= 1e-4
    with pytest.raises(ValueError, match="plain file stem"):
        export_model(model, tmp_path, "../escape")


def test_dynamic_batch_yolox_export_declares_static_output_dims_and_passes_the_model_check(tmp_path):
    from dwpose_ctrl.weights import check_signature

    model = _randomised(build_yolox("nano", num_classes=1), seed=3)
    path = export_onnx(model, tmp_path / "nano.onnx", input_size=(64, 96))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    anchors = (64 // 8) * (96 // 8) + (64 // 16) * (96 // 16) + (64 // 32) * (96 // 32)
    output_shape = session.get_outputs()[0].shape
    assert not isinstance(output_shape[0], int)  # the batch stays dynamic
    assert output_shape[1:] == [anchors, 6]
    check_signature(
        path,
        "detector",
        [(i.name, i.shape) for i in session.get_inputs()],
        [(o.name, o.shape) for o in session.get_outputs()],
    )
    batch = np.random.default_rng(4).uniform(0, 255, (3, 3, 64, 96)).astype(np.float32)
    assert session.run(None, {"images": batch})[0].shape == (3, anchors, 6)


# ----------------------------------------------------------------- convert CLI


def test_convert_cli_turns_an_mmpose_checkpoint_into_safetensors_and_onnx(rtmpose_t, crops, tmp_path, capsys):
    checkpoint = tmp_path / "rtmpose-t_mmpose.pth"
    torch.save(
        {"meta": {"epoch": 270}, "state_dict": collections.OrderedDict(rtmpose_t.state_dict())}, checkpoint
    )
    out = tmp_path / "converted"
    assert main([str(checkpoint), "--out", str(out), "--size", "t", "--input-size", "256", "192"]) == 0
    assert "max abs diff" in capsys.readouterr().out
    onnx_path, safetensors_path = out / "rtmpose-t_mmpose.onnx", out / "rtmpose-t_mmpose.safetensors"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert _max_diff(session.run(None, {"input": crops}), _run(rtmpose_t, crops)) <= 1e-4
    reloaded = build_rtmpose("t", (256, 192))
    reloaded.load_state_dict(load_state_dict(safetensors_path), strict=True)
    assert torch.equal(reloaded.head.cls_y.weight, rtmpose_t.head.cls_y.weight)


def test_convert_cli_composes_a_stage2_distiller_checkpoint(tmp_path):
    teacher, student = _randomised(build_rtmpose("t"), seed=3), _randomised(build_rtmpose("t"), seed=4)
    state = {f"teacher.{k}": v for k, v in teacher.state_dict().items()}
    state.update({f"student.{k}": v for k, v in student.state_dict().items()})
    checkpoint = tmp_path / "distill.pth"
    torch.save({"state_dict": state}, checkpoint)
    assert (
        main([str(checkpoint), "--out", str(tmp_path), "--name", "shipped", "--part", "stage2", "--no-onnx"])
        == 0
    )
    shipped = load_state_dict(tmp_path / "shipped.safetensors")
    assert torch.equal(shipped["backbone.stem.0.conv.weight"], teacher.backbone.stem[0].conv.weight)
    assert torch.equal(shipped["head.gau.uv.weight"], student.head.gau.uv.weight)
    assert not (tmp_path / "shipped.onnx").exists()


def test_convert_cli_reports_bad_input_clearly(tmp_path, capsys):
    checkpoint = tmp_path / "t.pth"
    torch.save({"state_dict": build_rtmpose("t").state_dict()}, checkpoint)
    assert main([str(checkpoint), "--out", str(tmp_path), "--size", "l"]) == 2
    assert "size 't', not 'l'" in capsys.readouterr().err
    assert main([str(checkpoint), "--out", str(tmp_path), "--input-size", "384", "288"]) == 2
    assert "256x192" in capsys.readouterr().err
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "x": NotATensor(1)}, unsafe)
    assert main([str(unsafe), "--out", str(tmp_path)]) == 2
    assert "--allow-unsafe-pickle" in capsys.readouterr().err


def test_convert_runs_as_a_module():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [sys.executable, "-m", "dwpose_ctrl.convert", "--help"], cwd=root, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    assert "--input-size H W" in completed.stdout and "--allow-unsafe-pickle" in completed.stdout
