"""Which runtime runs the networks, on which device, in which dtype: probed facts in, a choice out.

:func:`probe_machine` reads what this environment offers (installed onnxruntime distributions and
their execution providers, torch and its CUDA/MPS availability) into a :class:`Machine`;
:func:`choose_runtime` is a pure function of a :class:`Machine` and the user's request, so every
combination can be tested by building a :class:`Machine` by hand.

``backend="auto"``: on the CPU onnxruntime (torch when onnxruntime is not installed); on
``cuda`` onnxruntime's CUDA provider when a CUDA session really gets it, else the torch backend
on CUDA with the weights imported from the same ONNX files, else an error naming the repair (or
the CPU, with a warning, when ``allow_cpu_fallback=True``); on ``mps`` the torch backend.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from dataclasses import dataclass
from functools import cache

BACKENDS = ("auto", "onnxruntime", "torch")
DTYPES = ("float32", "float16", "bfloat16")
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}

ONNXRUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "onnxruntime-rocm",
    "onnxruntime-silicon",
    "onnxruntime-training",
)
"""PyPI distributions that all install the same ``onnxruntime`` package: any two of them clash."""

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
PROVIDER_ALIASES = {
    "cpu": CPU_PROVIDER,
    "cuda": CUDA_PROVIDER,
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
PROVIDER_SOURCES = {
    CUDA_PROVIDER: "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (with TensorRT installed)",
    "DmlExecutionProvider": "onnxruntime-directml (Windows)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "CoreMLExecutionProvider": "onnxruntime (the macOS wheel)",
    "ROCMExecutionProvider": "AMD's onnxruntime-rocm wheel",
    "MIGraphXExecutionProvider": "AMD's onnxruntime-migraphx wheel",
}
TORCH_CPU_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_CUDA_HELP = "a CUDA build of torch (https://pytorch.org/get-started/locally/)"


class RuntimeUnavailableError(RuntimeError):
    """The requested device or dtype cannot run in this environment; the message says what to do."""


@dataclass(frozen=True)
class Machine:
    """What this environment offers for running the networks.

    ``onnxruntime_providers`` is ``None`` when onnxruntime cannot be imported;
    ``onnxruntime_cuda_works`` says whether a CUDA session really gets the CUDA provider (a
    listed provider can still fail to load CUDA/cuDNN). ``torch_version`` is ``None`` when torch
    is not installed; ``torch_cuda``/``torch_mps`` are its ``is_available()`` answers.
    """

    onnxruntime_distributions: tuple[str, ...] = ()
    onnxruntime_providers: tuple[str, ...] | None = None
    onnxruntime_cuda_works: bool = False
    torch_version: str | None = None
    torch_cuda: bool = False
    torch_mps: bool = False


@dataclass(frozen=True)
class RuntimeChoice:
    """Where the networks will run. ``providers`` are onnxruntime's, in order (empty for torch);
    ``reason`` says why in one sentence; ``warning`` is set for a fallback the user should see."""

    backend: str
    device: str
    dtype: str
    providers: tuple[str, ...]
    reason: str
    warning: str | None = None


def normalize_dtype(dtype: str) -> str:
    """``"float32"``, ``"float16"`` or ``"bfloat16"`` (aliases ``fp32``, ``fp16``, ``half``, ``bf16``)."""
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be a string such as 'float32' or 'float16', got {type(dtype).__name__}")
    name = DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {DTYPES}")
    return name


def normalize_providers(providers) -> tuple[str, ...]:
    """onnxruntime provider names from full names or short ones (``"coreml"``, ``"directml"``, ...)."""
    if isinstance(providers, str):
        providers = [providers]
    names = []
    for provider in providers:
        if not isinstance(provider, str):
            raise TypeError(f"providers must be provider names, got {provider!r}")
        names.append(PROVIDER_ALIASES.get(provider.lower(), provider))
    if not names:
        raise ValueError("providers must name at least one onnxruntime execution provider")
    return tuple(names)


def device_kind(device: str) -> tuple[str, int]:
    """``"cpu"``, ``"cuda"``/``"cuda:N"`` or ``"mps"`` as (kind, index); anything else is refused."""
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a string such as 'cpu', 'cuda', 'cuda:0' or 'mps', got {type(device).__name__}"
        )
    kind, _, index = device.partition(":")
    if kind in ("cpu", "mps") and not index:
        return kind, 0
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'mps'")


def onnxruntime_clash(machine: Machine) -> str | None:
    """The repair for two onnxruntime distributions installed side by side, or ``None``."""
    installed = machine.onnxruntime_distributions
    if len(installed) < 2:
        return None
    keep = next((name for name in installed if name != "onnxruntime"), installed[0])
    providers = ", ".join(machine.onnxruntime_providers or ()) or "none"
    return (
        f"{' and '.join(installed)} are installed side by side: they share one 'onnxruntime' package, "
        f"so the last one installed overwrote the other's files (providers now: {providers}). "
        f"Repair: pip uninstall -y {' '.join(installed)} && pip install {keep}"
    )


def _onnxruntime_cuda_problem(machine: Machine) -> str:
    """Why onnxruntime cannot run on CUDA here, with the command that repairs it."""
    if machine.onnxruntime_providers is None:
        return "onnxruntime is not installed (for CUDA: pip install 'dwpose-ctrl[gpu]')"
    clash = onnxruntime_clash(machine)
    if clash is not None:
        return clash
    if CUDA_PROVIDER in machine.onnxruntime_providers:
        return (
            "onnxruntime-gpu lists the CUDA provider but cannot load it (CUDA or cuDNN libraries missing "
            "or of another version; see onnxruntime's log): install the CUDA and cuDNN its release needs "
            "(https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html)"
        )
    if "onnxruntime-gpu" in machine.onnxruntime_distributions:
        return (
            "onnxruntime-gpu is installed but has no CUDA provider (a broken install): "
            "pip uninstall -y onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    installed = " ".join(machine.onnxruntime_distributions) or "onnxruntime"
    return (
        f"this onnxruntime has only the providers {', '.join(machine.onnxruntime_providers)} "
        f"(the CPU build): pip uninstall -y {installed} && pip install onnxruntime-gpu"
    )


def _torch_problem(machine: Machine, kind: str) -> str:
    """Why the torch backend cannot run on ``kind`` here."""
    if machine.torch_version is None:
        return "torch is not installed (pip install 'dwpose-ctrl[torch]', with " + TORCH_CUDA_HELP + ")"
    if kind == "mps":
        return f"torch {machine.torch_version} has no MPS device (Apple silicon and macOS 12.3+ only)"
    return f"torch {machine.torch_version} sees no CUDA device (a CPU build, or no driver): install " + (
        TORCH_CUDA_HELP
    )


def _cpu_choice(machine: Machine, backend: str, why: str, warning: str | None = None) -> RuntimeChoice:
    from dwpose_ctrl.extras import MissingExtraError

    if backend in ("auto", "onnxruntime") and machine.onnxruntime_providers is not None:
        warning = warning or onnxruntime_clash(machine)  # a broken install, even if the CPU still runs
        return RuntimeChoice("onnxruntime", "cpu", "float32", (CPU_PROVIDER,), why, warning)
    if backend == "onnxruntime":
        raise MissingExtraError("onnxruntime", "cpu", "backend='onnxruntime'")
    if machine.torch_version is not None:
        if backend == "auto":
            why = "onnxruntime is not installed; the torch backend runs the same ONNX weights on the CPU"
        return RuntimeChoice("torch", "cpu", "float32", (), why, warning)
    if backend == "torch":
        raise MissingExtraError("torch", "torch", "backend='torch'")
    raise MissingExtraError(
        "onnxruntime",
        "cpu",
        "running the networks (neither onnxruntime nor torch is installed; on an NVIDIA GPU use the "
        "'[gpu]' extra instead)",
    )


def _unavailable(device: str, problems: list[str], allow_cpu_fallback: bool) -> str:
    """The message for a device that cannot be used; raises unless the CPU fallback was asked for."""
    message = f"device={device!r} cannot be used: " + "; ".join(problems)
    if not allow_cpu_fallback:
        raise RuntimeUnavailableError(
            message + ". To run on the CPU instead pass device='cpu' (dwpose-render --device cpu), "
            "or allow_cpu_fallback=True"
        )
    return message + "; running on the CPU (allow_cpu_fallback=True)"


def choose_runtime(
    machine: Machine,
    backend: str = "auto",
    device: str = "cpu",
    dtype: str = "float32",
    providers=None,
    allow_cpu_fallback: bool = False,
) -> RuntimeChoice:
    """The runtime for a request on ``machine`` (pure: no probing, no imports of runtimes).

    Raises :class:`RuntimeUnavailableError` for a device or dtype this machine cannot serve,
    :class:`~dwpose_ctrl.extras.MissingExtraError` when the needed runtime is not installed, and
    ``ValueError`` for contradictory requests.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    kind, index = device_kind(device)
    dtype = normalize_dtype(dtype)
    target = "cpu" if kind == "cpu" else ("mps" if kind == "mps" else f"cuda:{index}")
    if providers is not None:
        return _explicit_providers(machine, backend, target, dtype, normalize_providers(providers))
    if dtype != "float32":
        if backend == "onnxruntime":
            raise ValueError(
                f"dtype={dtype!r} runs only on the torch backend (onnxruntime runs the float32 ONNX "
                "files): use backend='torch' or 'auto' on a GPU, or dtype='float32'"
            )
        if kind == "cpu":
            raise ValueError(
                f"dtype={dtype!r} is a faster mode for GPUs (torch backend, device='cuda' or 'mps'); "
                "on the CPU use dtype='float32'"
            )
    if kind == "cpu":
        return _cpu_choice(
            machine, backend, f"device='cpu': {backend if backend != 'auto' else 'onnxruntime'}"
        )
    if kind == "mps":
        if backend == "onnxruntime":
            raise ValueError(
                "onnxruntime has no MPS device: use backend='torch' (or 'auto') for device='mps', "
                "or providers=['CoreMLExecutionProvider'] for onnxruntime's Core ML provider"
            )
        if machine.torch_version is not None and machine.torch_mps:
            return RuntimeChoice("torch", "mps", dtype, (), "device='mps': the torch backend")
        warning = _unavailable(device, [_torch_problem(machine, "mps")], allow_cpu_fallback)
        return _cpu_choice(machine, "auto", "CPU fallback", warning)
    ort_ok = dtype == "float32" and machine.onnxruntime_cuda_works
    if backend in ("auto", "onnxruntime") and ort_ok:
        providers = (CUDA_PROVIDER, CPU_PROVIDER)
        return RuntimeChoice("onnxruntime", target, dtype, providers, f"device={device!r}: onnxruntime CUDA")
    torch_ok = machine.torch_version is not None and machine.torch_cuda
    if backend in ("auto", "torch") and torch_ok:
        if backend == "torch":
            why = f"device={device!r}: the torch backend"
        elif dtype != "float32":
            why = f"dtype={dtype!r} runs on the torch backend"
        else:
            why = (
                "onnxruntime cannot use CUDA here (" + _onnxruntime_cuda_problem(machine) + "); the torch "
                "backend runs the same ONNX weights on CUDA"
            )
        return RuntimeChoice("torch", target, dtype, (), why)
    if dtype != "float32":
        raise RuntimeUnavailableError(
            f"dtype={dtype!r} on device={device!r} needs the torch backend on CUDA: "
            + _torch_problem(machine, "cuda")
        )
    problems = []
    if backend in ("auto", "onnxruntime"):
        problems.append(_onnxruntime_cuda_problem(machine))
    if backend in ("auto", "torch"):
        problems.append(_torch_problem(machine, "cuda"))
    warning = _unavailable(device, problems, allow_cpu_fallback)
    return _cpu_choice(machine, backend, "CPU fallback", warning)


def _explicit_providers(
    machine: Machine, backend: str, target: str, dtype: str, providers: tuple[str, ...]
) -> RuntimeChoice:
    """onnxruntime with the providers the user named, each checked against this onnxruntime."""
    if backend == "torch":
        raise ValueError(
            "providers= selects onnxruntime execution providers; it does not apply to backend='torch'"
        )
    if dtype != "float32":
        raise ValueError(f"providers= runs onnxruntime, which runs float32 ONNX files; not dtype={dtype!r}")
    if target == "mps":
        raise ValueError(
            "device='mps' is the torch backend; for onnxruntime's Core ML provider pass device='cpu' "
            "(its inputs and outputs live there) with providers=['CoreMLExecutionProvider']"
        )
    if machine.onnxruntime_providers is None:
        from dwpose_ctrl.extras import MissingExtraError

        raise MissingExtraError("onnxruntime", "cpu", "providers=")
    for provider in providers:
        if provider not in machine.onnxruntime_providers:
            source = PROVIDER_SOURCES.get(provider, "an onnxruntime build that has it")
            raise RuntimeUnavailableError(
                f"onnxruntime provider {provider} is not available here (available: "
                f"{', '.join(machine.onnxruntime_providers)}); it comes with {source}, installed "
                "instead of (not beside) the onnxruntime installed now"
            )
    if CPU_PROVIDER not in providers:
        providers = (*providers, CPU_PROVIDER)
    return RuntimeChoice("onnxruntime", target, dtype, providers, f"providers={list(providers)}")


# probing ------------------------------------------------------------------------------------


def installed_onnxruntime_distributions() -> tuple[str, ...]:
    """The onnxruntime distributions installed in this environment (by package metadata)."""
    found = []
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return tuple(found)


def _onnxruntime_providers() -> tuple[str, ...] | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return tuple(onnxruntime.get_available_providers())


@cache
def onnxruntime_cuda_works() -> bool:
    """Whether an onnxruntime session asked for CUDA really gets the CUDA provider (a one-node model)."""
    import onnxruntime
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value], [])
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # the answer is reported by the caller, not by onnxruntime's log
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = onnxruntime.InferenceSession(
                model.SerializeToString(), options, providers=[CUDA_PROVIDER, CPU_PROVIDER]
            )
    except Exception:  # onnxruntime raises its own error types when CUDA cannot start
        return False
    return CUDA_PROVIDER in session.get_providers()


def probe_machine(accelerators: bool = True) -> Machine:
    """This environment's :class:`Machine`. ``accelerators=False`` skips importing torch and
    starting CUDA (enough for a CPU request): torch then counts as installed but without devices."""
    providers = _onnxruntime_providers()
    torch_version = None
    if importlib.util.find_spec("torch") is not None:
        try:
            torch_version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            torch_version = "unknown"
    torch_cuda = torch_mps = False
    if accelerators and torch_version is not None:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
        torch_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    cuda_works = bool(accelerators and providers and CUDA_PROVIDER in providers and onnxruntime_cuda_works())
    return Machine(
        installed_onnxruntime_distributions(), providers, cuda_works, torch_version, torch_cuda, torch_mps
    )


# what runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkRuntime:
    """What one network really runs on: ``backend`` (``"onnxruntime"``/``"torch"``), ``device``,
    ``dtype`` and, for onnxruntime, the providers its session got (in order)."""

    backend: str
    device: str
    dtype: str
    providers: tuple[str, ...]


@dataclass(frozen=True)
class RuntimeInfo:
    """A detector's runtimes: what was asked for, what was chosen and why, and each network's."""

    requested_backend: str
    requested_device: str
    choice: RuntimeChoice
    detector: NetworkRuntime
    pose: NetworkRuntime


def describe_backend(backend) -> NetworkRuntime:
    """The :class:`NetworkRuntime` of a pipeline backend (onnxruntime session or torch module)."""
    providers = tuple(getattr(backend, "providers", ()))
    dtype = getattr(backend, "dtype", "float32")
    dtype = str(dtype).removeprefix("torch.")
    name = "torch" if type(backend).__module__.startswith("dwpose_ctrl.models") else "onnxruntime"
    return NetworkRuntime(name, backend.device, dtype, providers)
