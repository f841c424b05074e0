"""``python -m dwpose_ctrl.env`` (or ``dwpose-render --env``): the environment, for bug reports.

Prints versions (Python, dwpose-ctrl, numpy, OpenCV, huggingface_hub), the onnxruntime
distributions installed and their execution providers (a clash of two distributions is named with
its repair), torch with its CUDA and MPS availability, what ``backend="auto"`` would pick for
``cpu``, ``cuda`` and ``mps``, and where model files are looked for, with each registered file
found, missing or failing its sha256 check.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from dwpose_ctrl.placement import (
    CUDA_PROVIDER,
    Machine,
    choose_runtime,
    onnxruntime_clash,
    probe_machine,
)

DEVICES = ("cpu", "cuda", "mps")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def runtime_lines(machine: Machine, torch_details: str = "") -> list[str]:
    """onnxruntime, torch (``torch_details`` appended to its version), and the choice of
    ``backend="auto"`` for each device."""
    installed = machine.onnxruntime_distributions
    lines = [
        "onnxruntime distributions: "
        + (", ".join(f"{name} {_version(name)}" for name in installed) or "none installed"),
        "onnxruntime providers: "
        + (", ".join(machine.onnxruntime_providers) if machine.onnxruntime_providers is not None else "-"),
    ]
    if machine.onnxruntime_providers is not None and CUDA_PROVIDER in machine.onnxruntime_providers:
        lines.append(f"onnxruntime CUDA session works: {_yes(machine.onnxruntime_cuda_works)}")
    clash = onnxruntime_clash(machine)
    lines.append(f"onnxruntime clash: {clash or 'none'}")
    if machine.torch_version is None:
        lines.append("torch: not installed")
    else:
        lines.append(
            f"torch: {machine.torch_version}; CUDA available: {_yes(machine.torch_cuda)}; "
            f"MPS available: {_yes(machine.torch_mps)}{torch_details}"
        )
    for device in DEVICES:
        try:
            choice = choose_runtime(machine, "auto", device)
        except (RuntimeError, ImportError, ValueError) as error:
            lines.append(f"backend='auto' on {device}: cannot run ({error})")
            continue
        providers = f" [{', '.join(choice.providers)}]" if choice.providers else ""
        lines.append(f"backend='auto' on {device}: {choice.backend}{providers} ({choice.reason})")
    return lines


def torch_details() -> str:
    """The CUDA version torch was built for and the names of the GPUs it sees ("" without torch)."""
    try:
        import torch
    except ImportError:
        return ""
    details = f"; built for CUDA {torch.version.cuda}" if torch.version.cuda else ""
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        details += f"; GPUs: {', '.join(names)}"
    return details


def weight_lines() -> list[str]:
    """Where model files are looked for and the state of each registered file."""
    from huggingface_hub import constants, try_to_load_from_cache

    from dwpose_ctrl.weights import HOME_ENV, REGISTRY, ModelFileError, verify_file

    home = os.environ.get(HOME_ENV)
    lines = [
        f"{HOME_ENV}: {home or 'not set'}",
        f"Hugging Face cache: {constants.HF_HUB_CACHE} (HF_HUB_OFFLINE: {_yes(constants.HF_HUB_OFFLINE)}, "
        f"endpoint {constants.ENDPOINT})",
    ]
    for entry in REGISTRY.values():
        candidates = [Path(home) / entry.filename] if home else []
        cached = try_to_load_from_cache(entry.repo_id, entry.filename)
        if isinstance(cached, str):
            candidates.append(Path(cached))
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            state = "missing"
        elif not entry.verified:
            state = f"present (unverified entry) at {found}"
        else:
            try:
                verify_file(found, entry)
                state = f"sha256 verified at {found}"
            except (ModelFileError, OSError) as error:
                state = f"FAILS its check: {error}"
        lines.append(f"model {entry.filename} ({entry.repo_id}): {state}")
    return lines


def environment_report() -> str:
    """The whole report as text, one ``key: value`` per line."""
    import cv2
    import numpy

    import dwpose_ctrl

    lines = [
        f"dwpose-ctrl: {_version('dwpose-ctrl')} ({Path(dwpose_ctrl.__file__).parent})",
        f"python: {platform.python_version()} ({sys.executable})",
        f"platform: {platform.platform()}",
        f"numpy: {numpy.__version__}",
        f"opencv: {cv2.__version__}",
        f"huggingface_hub: {_version('huggingface_hub')}",
    ]
    machine = probe_machine(accelerators=True)
    lines += runtime_lines(machine, torch_details() if machine.torch_version else "")
    lines += weight_lines()
    header = "dwpose-ctrl environment (paste all of it into bug reports)"
    return "\n".join([header, *(f"- {line}" for line in lines)])


def main() -> int:
    print(environment_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
