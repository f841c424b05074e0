"""The environment report: runtimes and the auto choice per device, model files, `dwpose-render --env`."""

from __future__ import annotations

import hashlib

import huggingface_hub.constants
import pytest

from dwpose_ctrl.env import runtime_lines, weight_lines
from dwpose_ctrl.placement import Machine
from dwpose_ctrl.weights import HOME_ENV, REGISTRY, ModelFile

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
CLASH = (
    "onnxruntime and onnxruntime-gpu are installed side by side: they share one 'onnxruntime' package, so "
    "the last one installed overwrote the other's files (providers now: CPUExecutionProvider). Repair: "
    "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
)
TO_CPU = (
    "To run on the CPU instead pass device='cpu' (dwpose-render --device cpu), or allow_cpu_fallback=True"
)


def test_runtime_lines_of_a_clashing_install_with_a_cuda_torch():
    machine = Machine(("onnxruntime", "onnxruntime-gpu"), (CPU,), False, "2.13.0+cu128", True, False)
    lines = runtime_lines(machine, "; GPUs: H200")
    assert lines[1:] == [
        "onnxruntime providers: CPUExecutionProvider",
        f"onnxruntime clash: {CLASH}",
        "torch: 2.13.0+cu128; CUDA available: yes; MPS available: no; GPUs: H200",
        "backend='auto' on cpu: onnxruntime [CPUExecutionProvider] (device='cpu': onnxruntime)",
        f"backend='auto' on cuda: torch (onnxruntime cannot use CUDA here ({CLASH}); "
        "the torch backend runs the same ONNX weights on CUDA)",
        "backend='auto' on mps: cannot run (device='mps' cannot be used: torch 2.13.0+cu128 has no MPS "
        f"device (Apple silicon and macOS 12.3+ only). {TO_CPU})",
    ]
    assert lines[0].startswith("onnxruntime distributions: onnxruntime ")


def test_runtime_lines_of_a_working_gpu_install_and_of_nothing():
    gpu = runtime_lines(Machine(("onnxruntime-gpu",), (CUDA, CPU), True))
    assert "onnxruntime CUDA session works: yes" in gpu and "onnxruntime clash: none" in gpu
    assert "torch: not installed" in gpu
    assert (
        "backend='auto' on cuda: onnxruntime [CUDAExecutionProvider, CPUExecutionProvider] "
        "(device='cuda': onnxruntime CUDA)"
    ) in gpu
    nothing = runtime_lines(Machine())
    assert nothing[:2] == ["onnxruntime distributions: none installed", "onnxruntime providers: -"]
    assert nothing[4] == (
        "backend='auto' on cpu: cannot run (running the networks (neither onnxruntime nor torch is "
        "installed; on an NVIDIA GPU use the '[gpu]' extra instead) needs the '[cpu]' extra: pip install "
        "'dwpose-ctrl[cpu]' (onnxruntime is not installed))"
    )


def test_weight_lines_say_present_verified_missing_or_corrupt(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    good, bad = b"good weights", b"bad weights!"
    digest = hashlib.sha256(good).hexdigest()
    monkeypatch.setattr(
        "dwpose_ctrl.weights.REGISTRY",
        {
            name: ModelFile(name, "pose", "org/repo", f"{name}.onnx", len(good), digest)
            for name in ("good", "corrupt", "absent")
        },
    )
    (tmp_path / "good.onnx").write_bytes(good)
    (tmp_path / "corrupt.onnx").write_bytes(bad)
    lines = weight_lines()
    assert lines[0] == f"{HOME_ENV}: {tmp_path}"
    endpoint = huggingface_hub.constants.ENDPOINT
    assert lines[1] == f"Hugging Face cache: {tmp_path / 'cache'} (HF_HUB_OFFLINE: yes, endpoint {endpoint})"
    assert lines[2] == f"model good.onnx (org/repo): sha256 verified at {tmp_path / 'good.onnx'}"
    assert lines[3].startswith("model corrupt.onnx (org/repo): FAILS its check: model file ")
    assert "does not have the sha256 of corrupt.onnx" in lines[3]
    assert lines[4] == "model absent.onnx (org/repo): missing"
    assert REGISTRY  # the real registry is untouched


def test_dwpose_render_env_prints_the_report_without_inputs(capsys):
    from dwpose_ctrl.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["--env"])
    assert caught.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "dwpose-ctrl environment (paste all of it into bug reports)"
    for key in ("dwpose-ctrl", "python", "numpy", "onnxruntime providers", "torch", "backend='auto' on cpu"):
        assert any(line.startswith(f"- {key}: ") for line in out), key
    assert any(line.startswith("- model yolox_l.onnx (yzd-v/DWPose): ") for line in out)
