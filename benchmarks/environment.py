"""The alternatives' own virtual environment, and what the report says about the machine.

The alternatives (rtmlib, the reference annotator's functions from ``dwposes``, easy_dwpose)
are installed from PyPI into ``benchmarks/.venv-alt``, never into the project's environment.
numpy, onnxruntime and OpenCV are pinned to the versions of the project's environment so every
tool runs the same runtime. The three tools are installed without their dependencies: their
declared requirements pull torch, onnxruntime-gpu or numpy 1, none of which their ONNX code
paths use (see the worker scripts in ``benchmarks/alternatives/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import subprocess
import sys
import venv
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
ALT_ENV = BENCHMARKS / ".venv-alt"

ALTERNATIVE_TOOLS = ("rtmlib==0.0.16", "dwposes==0.1.0", "easy_dwpose==1.0.2")
# dwposes' util.py imports matplotlib; rtmlib imports tqdm.
ALTERNATIVE_SUPPORT = ("matplotlib", "tqdm", "pillow")


def _pinned_runtime() -> list[str]:
    pins = []
    for package in ("numpy", "onnxruntime", "opencv-python-headless"):
        pins.append(f"{package}=={metadata.version(package)}")
    return pins


def alternatives_python(env_dir: Path = ALT_ENV, log=print) -> Path:
    """The alternatives' Python, creating or refreshing the environment when its pins changed."""
    python = env_dir / "bin" / "python"
    requirements = [*_pinned_runtime(), *ALTERNATIVE_SUPPORT]
    fingerprint = hashlib.sha256(json.dumps([requirements, ALTERNATIVE_TOOLS]).encode()).hexdigest()
    marker = env_dir / "benchmark-env.sha256"
    if python.exists() and marker.exists() and marker.read_text().strip() == fingerprint:
        return python
    log(f"creating the alternatives' environment in {env_dir} (pip, a few minutes)")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True)
    subprocess.run([*pip, "--no-deps", *ALTERNATIVE_TOOLS], check=True)
    marker.write_text(fingerprint + "\n")
    return python


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 1024**2
    return None


def _git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        return result.stdout.strip() + (" (with uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> dict:
    """CPU, memory, instruction sets, load, versions: what the report needs to be read correctly."""
    flags = _cpu_flags()
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("numpy", "onnxruntime", "opencv-python-headless", "torch", "onnx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "load_average": os.getloadavg(),
        "versions": versions,
        "git_commit": _git_commit(),
    }
