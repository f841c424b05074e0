"""Runtime choice under every combination of installed runtimes and devices (faked), and the probe."""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import warnings

import pytest

from dwpose_ctrl import placement
from dwpose_ctrl.extras import MissingExtraError
from dwpose_ctrl.placement import (
    Machine,
    RuntimeUnavailableError,
    choose_runtime,
    onnxruntime_clash,
    probe_machine,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"

ONNXRUNTIMES = {
    "none": {},
    "cpu": {"onnxruntime_distributions": ("onnxruntime",), "onnxruntime_providers": (CPU,)},
    "gpu": {
        "onnxruntime_distributions": ("onnxruntime-gpu",),
        "onnxruntime_providers": (TRT, CUDA, CPU),
        "onnxruntime_cuda_works": True,
    },
    "gpu-without-cuda-libraries": {
        "onnxruntime_distributions": ("onnxruntime-gpu",),
        "onnxruntime_providers": (TRT, CUDA, CPU),
    },
    # `pip install onnxruntime onnxruntime-gpu`: the CPU wheel, installed last, overwrote the GPU one
    "clash": {
        "onnxruntime_distributions": ("onnxruntime", "onnxruntime-gpu"),
        "onnxruntime_providers": (CPU,),
    },
}
TORCHES = {
    "none": {},
    "cpu": {"torch_version": "2.13.0+cpu"},
    "cuda": {"torch_version": "2.13.0+cu128", "torch_cuda": True},
    "mps": {"torch_version": "2.13.0", "torch_mps": True},
}


def machine(onnxruntime: str, torch: str) -> Machine:
    return Machine(**ONNXRUNTIMES[onnxruntime], **TORCHES[torch])


REPAIR_CPU_BUILD = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
REPAIR_CLASH = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
NO_CUDA_LIBRARIES = "onnxruntime-gpu lists the CUDA provider but cannot load it"
NO_TORCH = "torch is not installed (pip install 'dwpose-ctrl[torch]'"
CPU_TORCH = "sees no CUDA device (a CPU build, or no driver)"

# device="cuda", backend="auto": what runs, or the two problems the error names.
AUTO_ON_CUDA = {
    ("none", "none"): ("onnxruntime is not installed", NO_TORCH),
    ("none", "cpu"): ("onnxruntime is not installed", CPU_TORCH),
    ("none", "cuda"): "torch",
    ("none", "mps"): ("onnxruntime is not installed", CPU_TORCH),
    ("cpu", "none"): (REPAIR_CPU_BUILD, NO_TORCH),
    ("cpu", "cpu"): (REPAIR_CPU_BUILD, CPU_TORCH),
    ("cpu", "cuda"): "torch",
    ("cpu", "mps"): (REPAIR_CPU_BUILD, CPU_TORCH),
    ("gpu", "none"): "onnxruntime",
    ("gpu", "cpu"): "onnxruntime",
    ("gpu", "cuda"): "onnxruntime",
    ("gpu", "mps"): "onnxruntime",
    ("gpu-without-cuda-libraries", "none"): (NO_CUDA_LIBRARIES, NO_TORCH),
    ("gpu-without-cuda-libraries", "cpu"): (NO_CUDA_LIBRARIES, CPU_TORCH),
    ("gpu-without-cuda-libraries", "cuda"): "torch",
    ("gpu-without-cuda-libraries", "mps"): (NO_CUDA_LIBRARIES, CPU_TORCH),
    ("clash", "none"): (REPAIR_CLASH, NO_TORCH),
    ("clash", "cpu"): (REPAIR_CLASH, CPU_TORCH),
    ("clash", "cuda"): "torch",
    ("clash", "mps"): (REPAIR_CLASH, CPU_TORCH),
}


def test_the_table_covers_every_combination():
    assert set(AUTO_ON_CUDA) == set(itertools.product(ONNXRUNTIMES, TORCHES))


@pytest.mark.parametrize(("onnxruntime", "torch"), sorted(AUTO_ON_CUDA))
def test_auto_on_cuda(onnxruntime, torch):
    expected = AUTO_ON_CUDA[onnxruntime, torch]
    facts = machine(onnxruntime, torch)
    if isinstance(expected, str):
        choice = choose_runtime(facts, "auto", "cuda:1")
        assert (choice.backend, choice.device, choice.dtype, choice.warning) == (
            expected,
            "cuda:1",
            "float32",
            None,
        )
        assert choice.providers == ((CUDA, CPU) if expected == "onnxruntime" else ())
        if expected == "torch":  # the reason names what is wrong with onnxruntime
            assert expected_reason(onnxruntime) in choice.reason
            assert choice.reason.endswith("the torch backend runs the same ONNX weights on CUDA")
        return
    with pytest.raises(RuntimeUnavailableError) as caught:
        choose_runtime(facts, "auto", "cuda:1")
    message = str(caught.value)
    assert message.startswith("device='cuda:1' cannot be used: ")
    assert all(problem in message for problem in expected)
    assert message.endswith(
        "To run on the CPU instead pass device='cpu' (dwpose-render --device cpu), or allow_cpu_fallback=True"
    )
    if onnxruntime == "none" and torch == "none":
        return  # nothing can run even on the CPU
    fallback = choose_runtime(facts, "auto", "cuda:1", allow_cpu_fallback=True)
    assert fallback.device == "cpu" and fallback.warning.startswith(message.split(". To run")[0])
    assert fallback.warning.endswith("; running on the CPU (allow_cpu_fallback=True)")
    assert fallback.backend == ("torch" if onnxruntime == "none" else "onnxruntime")


def expected_reason(onnxruntime: str) -> str:
    return {
        "none": "onnxruntime is not installed",
        "cpu": REPAIR_CPU_BUILD,
        "gpu-without-cuda-libraries": NO_CUDA_LIBRARIES,
        "clash": REPAIR_CLASH,
    }[onnxruntime]


@pytest.mark.parametrize(("onnxruntime", "torch"), sorted(AUTO_ON_CUDA))
def test_auto_on_cpu_is_onnxruntime_when_installed_else_torch(onnxruntime, torch):
    facts = machine(onnxruntime, torch)
    if onnxruntime == torch == "none":
        with pytest.raises(
            MissingExtraError, match=r"needs the '\[cpu\]' extra: pip install 'dwpose-ctrl\[cpu\]'"
        ):
            choose_runtime(facts)
        return
    choice = choose_runtime(facts)
    assert (choice.backend, choice.device, choice.dtype) == (
        "onnxruntime" if onnxruntime != "none" else "torch",
        "cpu",
        "float32",
    )
    assert choice.providers == ((CPU,) if onnxruntime != "none" else ())
    assert choice.warning == (onnxruntime_clash(facts) if onnxruntime == "clash" else None)
    assert (choice.warning is None) == (onnxruntime != "clash")


@pytest.mark.parametrize("torch", sorted(TORCHES))
def test_mps_runs_on_the_torch_backend_only(torch):
    facts = machine("cpu", torch)
    if torch == "mps":
        choice = choose_runtime(facts, "auto", "mps", dtype="float16")
        assert (choice.backend, choice.device, choice.dtype) == ("torch", "mps", "float16")
        return
    with pytest.raises(RuntimeUnavailableError, match="device='mps' cannot be used: "):
        choose_runtime(facts, "auto", "mps")
    with pytest.raises(ValueError, match="onnxruntime has no MPS device"):
        choose_runtime(facts, "onnxruntime", "mps")


def test_an_explicit_backend_is_never_switched_silently():
    facts = machine("cpu", "cuda")
    with pytest.raises(RuntimeUnavailableError, match=re.escape(REPAIR_CPU_BUILD)):
        choose_runtime(facts, "onnxruntime", "cuda")
    assert choose_runtime(facts, "torch", "cuda").backend == "torch"
    assert choose_runtime(machine("gpu", "cuda"), "torch", "cuda:0").backend == "torch"
    with pytest.raises(RuntimeUnavailableError, match=re.escape(CPU_TORCH)):
        choose_runtime(machine("gpu", "cpu"), "torch", "cuda")
    with pytest.raises(MissingExtraError, match=r"backend='torch' needs the '\[torch\]' extra"):
        choose_runtime(machine("cpu", "none"), "torch")
    with pytest.raises(MissingExtraError, match=r"backend='onnxruntime' needs the '\[cpu\]' extra"):
        choose_runtime(machine("none", "cpu"), "onnxruntime")


def test_half_precision_is_a_torch_gpu_mode():
    cuda_machine = machine("gpu", "cuda")
    for dtype, name in (("float16", "float16"), ("fp16", "float16"), ("bf16", "bfloat16")):
        choice = choose_runtime(cuda_machine, "auto", "cuda", dtype=dtype)
        assert (choice.backend, choice.dtype, choice.reason) == (
            "torch",
            name,
            f"dtype={name!r} runs on the torch backend",
        )
    with pytest.raises(
        ValueError, match=r"dtype='float16' is a faster mode for GPUs .* on the CPU use dtype='float32'"
    ):
        choose_runtime(cuda_machine, "auto", "cpu", dtype="float16")
    with pytest.raises(ValueError, match="dtype='bfloat16' runs only on the torch backend"):
        choose_runtime(cuda_machine, "onnxruntime", "cuda", dtype="bfloat16")
    with pytest.raises(
        RuntimeUnavailableError,
        match=re.escape("dtype='float16' on device='cuda' needs the torch backend on CUDA: torch 2.13.0+cpu"),
    ):
        choose_runtime(machine("gpu", "cpu"), "auto", "cuda", dtype="float16", allow_cpu_fallback=True)
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        choose_runtime(cuda_machine, dtype="int8")


def test_onnxruntime_providers_are_selectable_and_checked():
    openvino = Machine(("onnxruntime-openvino",), ("OpenVINOExecutionProvider", CPU))
    choice = choose_runtime(openvino, providers=["openvino"])
    assert (choice.backend, choice.providers) == ("onnxruntime", ("OpenVINOExecutionProvider", CPU))
    with pytest.raises(RuntimeUnavailableError) as caught:
        choose_runtime(machine("cpu", "none"), providers="CoreMLExecutionProvider")
    assert str(caught.value) == (
        "onnxruntime provider CoreMLExecutionProvider is not available here (available: "
        "CPUExecutionProvider); it comes with onnxruntime (the macOS wheel), installed instead of "
        "(not beside) the onnxruntime installed now"
    )
    with pytest.raises(ValueError, match="device='mps' is the torch backend; for onnxruntime's Core ML"):
        choose_runtime(
            Machine(("onnxruntime",), ("CoreMLExecutionProvider", CPU)), device="mps", providers="coreml"
        )
    with pytest.raises(ValueError, match="does not apply to backend='torch'"):
        choose_runtime(openvino, "torch", providers=["openvino"])
    directml = choose_runtime(
        Machine(("onnxruntime-directml",), ("DmlExecutionProvider", CPU)), providers="dml"
    )
    assert directml.providers == ("DmlExecutionProvider", CPU)


def test_the_clash_detector_names_the_repair():
    assert onnxruntime_clash(machine("cpu", "none")) is None
    assert onnxruntime_clash(machine("gpu", "none")) is None
    assert onnxruntime_clash(machine("clash", "none")) == (
        "onnxruntime and onnxruntime-gpu are installed side by side: they share one 'onnxruntime' package, "
        "so the last one installed overwrote the other's files (providers now: CPUExecutionProvider). "
        f"Repair: {REPAIR_CLASH}"
    )


def test_bad_requests():
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_runtime(machine("cpu", "none"), "tensorrt")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        choose_runtime(machine("cpu", "none"), device="gpu")


def test_the_probe_reads_distributions_providers_and_torch_devices(monkeypatch):
    import onnxruntime
    import torch

    installed = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.32.0", "torch": "2.13.0"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    placement.onnxruntime_cuda_works.cache_clear()
    try:
        facts = probe_machine()
        # CUDA is listed (faked) but a real session cannot get it on this machine's CPU build
        assert facts == Machine(("onnxruntime", "onnxruntime-gpu"), (CUDA, CPU), False, "2.13.0", True, False)
    finally:
        placement.onnxruntime_cuda_works.cache_clear()
    assert probe_machine(accelerators=False).torch_cuda is False


def test_cli_runtime_flags_reach_the_choice(tmp_path, capsys, monkeypatch):
    import numpy as np
    from onnx_graphs import constant_yolox, pose_like, yolox_raw
    from PIL import Image

    from dwpose_ctrl.cli import main

    monkeypatch.setattr("dwpose_ctrl.detector.probe_machine", lambda accelerators: machine("cpu", "cpu"))
    det = constant_yolox(tmp_path / "det.onnx", yolox_raw({}, (64, 64)), (64, 64))
    pose = pose_like(tmp_path / "pose.onnx")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    base = [str(tmp_path / "a.png"), "-q", "--det-model", str(det), "--pose-model", str(pose), "-o"]
    for flags, message in (
        (["--providers", "coreml"], "onnxruntime provider CoreMLExecutionProvider is not available here"),
        (["--dtype", "float16"], "dtype='float16' is a faster mode for GPUs"),
        (
            ["--device", "cuda"],
            f"device='cuda' cannot be used: this onnxruntime has only the providers {CPU}",
        ),
    ):
        assert main([*base, str(tmp_path / "refused"), *flags]) == 2
        assert capsys.readouterr().err.startswith(f"dwpose-render: error: {message}")
    with pytest.warns(RuntimeWarning, match="running on the CPU \\(allow_cpu_fallback=True\\)"):
        assert main([*base, str(tmp_path / "out"), "--device", "cuda", "--allow-cpu-fallback"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_a_session_that_does_not_get_the_provider_asked_for_is_refused(tmp_path):
    """This onnxruntime has no CUDA: the session falls back to the CPU, which is refused, not silent."""
    from onnx_graphs import pose_like

    from dwpose_ctrl.runtime import OnnxBackend

    model = pose_like(tmp_path / "pose.onnx")
    backend = OnnxBackend(model, device="cuda", providers=(CUDA, CPU))
    with warnings.catch_warnings(), pytest.raises(RuntimeUnavailableError) as caught:
        warnings.simplefilter("ignore")  # onnxruntime's own note that CUDA is not available
        _ = backend.session
    assert str(caught.value) == (
        "onnxruntime could not start CUDAExecutionProvider for pose.onnx (it runs on CPUExecutionProvider; "
        "see onnxruntime's log above); `python -m dwpose_ctrl.env` says what is installed"
    )
    assert OnnxBackend(model, providers=(CPU,)).providers == (CPU,)
