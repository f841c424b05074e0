"""One small interface over the network runtimes (onnxruntime sessions, torch modules).

The pipeline only ever talks to a :class:`Backend`: it asks for the model's input size,
whether the batch dimension is dynamic, and calls :meth:`Backend.run` on a float32 NCHW batch.
Pre- and post-processing never live here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from dwpose_ctrl.arguments import is_integer
from dwpose_ctrl.extras import require
from dwpose_ctrl.files import check_regular_file
from dwpose_ctrl.placement import CPU_PROVIDER, CUDA_PROVIDER, device_kind


@runtime_checkable
class Backend(Protocol):
    """A network the pipeline can run."""

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (height, width)."""

    @property
    def dynamic_batch(self) -> bool:
        """True when ``run`` accepts any batch size, False when the batch is fixed at 1."""

    @property
    def device(self) -> str:
        """Where the network runs: ``"cpu"``, ``"cuda:N"`` or ``"mps"``."""

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on a float32 (N, 3, H, W) batch; return the outputs in the model's order."""


def parse_device(device: str) -> tuple[str, int]:
    """Split ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` into a kind and an index; refuse the rest."""
    return device_kind(device)


ONNXRUNTIME_PURPOSE = "the onnxruntime backend (on an NVIDIA GPU use the '[gpu]' extra instead)"

CPU_MAX_BATCH = 4
"""Largest batch one onnxruntime CPU run gets (larger batches are run in chunks of this size).

On a CPU, larger batches of DWPose-l 384x288 are hardly faster per person (measured here: 104 ms
at 9 persons, 107 ms at 3, 116 ms one at a time) but every extra person's activations raise the
peak memory (9 persons: +134 MiB above the session's own load peak; up to 4: nothing). Outputs do
not change: onnxruntime on CPU gives the same numbers for a batch and for its parts (SPEC 12).
"""


_shared_arena_lock = threading.Lock()
_shared_arena_registered: bool | None = None


def shared_cpu_arena() -> bool:
    """Register one onnxruntime CPU arena for every session of this process (once).

    With an arena per session, the detector's activations and the pose model's stay allocated side
    by side; with one shared arena the pose run reuses the memory the detector run has just freed,
    so running both adds nothing to the peak reached while loading them (docs/benchmarks.md).
    Returns False, and sessions keep their own arenas, if the registration is refused (for
    example because the application registered its own CPU allocator first).
    """
    global _shared_arena_registered
    with _shared_arena_lock:
        if _shared_arena_registered is None:
            import onnxruntime as ort

            arena = ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR
            memory = ort.OrtMemoryInfo("Cpu", arena, 0, ort.OrtMemType.DEFAULT)
            try:
                ort.create_and_register_allocator(memory, None)
                _shared_arena_registered = True
            except Exception as error:  # onnxruntime raises its own Fail type here
                warnings.warn(
                    f"onnxruntime refused a shared CPU arena ({error}); each session keeps its own",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _shared_arena_registered = False
        return _shared_arena_registered


def _glibc_malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None


_malloc_trim = _glibc_malloc_trim()


def release_freed_heap() -> None:
    """Hand the heap pages freed while loading a model back to the OS (glibc only; else no-op).

    onnxruntime parses the whole ONNX file before copying its weights, and glibc keeps the freed
    parse buffers: after loading YOLOX-L the process holds ~235 MiB it no longer uses.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


class OnnxBackend:
    """An onnxruntime session, created lazily on first use and reused afterwards.

    ``device="cuda[:N]"`` uses the CUDA execution provider when onnxruntime offers it and falls
    back to the CPU with a warning otherwise. ``intra_op_threads=None`` lets onnxruntime use all
    physical cores. ``max_batch`` caps the batch of one run (larger batches run in chunks);
    ``"auto"`` means :data:`CPU_MAX_BATCH` on the CPU and no cap on CUDA, ``None`` no cap.
    ``io_binding`` runs through an onnxruntime IO binding (the batch copied to the device once,
    the outputs allocated by onnxruntime on the device and copied back once, with no extra
    staging copies); ``"auto"`` means on CUDA only. Outputs are the same either way.
    ``providers`` names the execution providers in order (``DWposeDetector`` passes those
    :func:`dwpose_ctrl.placement.choose_runtime` chose); a session that does not get the first
    of them is refused instead of silently running on another.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        max_batch: int | Literal["auto"] | None = "auto",
        io_binding: bool | Literal["auto"] = "auto",
        providers: Sequence[str] | None = None,
    ):
        if max_batch not in ("auto", None):
            if not is_integer(max_batch) or max_batch < 1:
                raise ValueError(f"max_batch must be a positive int, 'auto' or None, got {max_batch!r}")
            max_batch = int(max_batch)
        if io_binding not in ("auto", True, False):
            raise ValueError(f"io_binding must be True, False or 'auto', got {io_binding!r}")
        self._max_batch = max_batch
        self._io_binding = io_binding
        self.path = Path(path)
        self._requested_device = device
        self._kind, self._index = parse_device(device)
        if self._kind == "mps":
            raise ValueError(
                "onnxruntime has no MPS device: use the torch backend for device='mps', or "
                "providers=['CoreMLExecutionProvider'] for onnxruntime's Core ML provider"
            )
        self._providers = None if providers is None else tuple(providers)
        self._intra_op_threads = intra_op_threads
        self._session = None
        self._lock = threading.Lock()

    @property
    def session(self):
        """The onnxruntime InferenceSession (created on first access)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    def _create_session(self):
        ort = require("onnxruntime", "cpu", ONNXRUNTIME_PURPOSE)

        if self._providers is not None:
            providers = [self._provider_entry(name) for name in self._providers]
            if self._kind == "cuda" and CUDA_PROVIDER not in self._providers:
                self._kind = "cpu"  # other accelerators take inputs and outputs from the CPU
        elif self._kind == "cuda" and CUDA_PROVIDER in ort.get_available_providers():
            providers = [self._provider_entry(CUDA_PROVIDER), CPU_PROVIDER]
        else:
            providers = [CPU_PROVIDER]
            if self._kind == "cuda":
                warnings.warn(
                    f"device={self._requested_device!r} was requested but this onnxruntime has no CUDA "
                    "provider; running on the CPU. `python -m dwpose_ctrl.env` says how to repair it "
                    "(DWposeDetector's backend='auto' uses the torch backend on CUDA instead)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                self._kind = "cpu"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self._kind == "cpu":
            # A memory pattern is one block planned per input shape (every chunk size gets its own)
            # that the CPU arena keeps: ~90 MiB more peak RSS with YOLOX-L 640 + RTMPose-l 384x288
            # on val5, for no measurable speed; outputs are the same (docs/benchmarks.md).
            options.enable_mem_pattern = False
            if shared_cpu_arena():
                options.add_session_config_entry("session.use_env_allocators", "1")
        if self._intra_op_threads is not None:
            options.intra_op_num_threads = self._intra_op_threads
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        from dwpose_ctrl.weights import check_readable

        check_regular_file(self.path, "ONNX model file")
        check_readable(self.path, "ONNX model file")
        session_errors = (
            ort_errors.Fail,
            ort_errors.InvalidArgument,
            ort_errors.InvalidProtobuf,
            ort_errors.InvalidGraph,
            ort_errors.NoSuchFile,
            ort_errors.NotImplemented,
        )
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except session_errors as error:
            raise ValueError(
                f"onnxruntime cannot load {self.path} ({type(error).__name__}: {error}); "
                "the file is truncated, corrupt or not an ONNX model: download it again or pass another file"
            ) from error
        release_freed_heap()
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if wanted not in session.get_providers():
            from dwpose_ctrl.placement import RuntimeUnavailableError

            raise RuntimeUnavailableError(
                f"onnxruntime could not start {wanted} for {self.path.name} (it runs on "
                f"{', '.join(session.get_providers())}; see onnxruntime's log above); "
                "`python -m dwpose_ctrl.env` says what is installed"
            )
        return session

    def _provider_entry(self, name: str):
        """A provider for ``InferenceSession``: CUDA gets this backend's device index."""
        if name == CUDA_PROVIDER:
            return (CUDA_PROVIDER, {"device_id": self._index})
        return name

    @property
    def providers(self) -> tuple[str, ...]:
        """The execution providers the session really runs with (the session is created if needed)."""
        return tuple(self.session.get_providers())

    @property
    def input_name(self) -> str:
        return self.session.get_inputs()[0].name

    @property
    def output_names(self) -> list[str]:
        return [output.name for output in self.session.get_outputs()]

    @property
    def input_shape(self) -> list:
        """The declared input shape; symbolic dimensions are strings or None."""
        return list(self.session.get_inputs()[0].shape)

    @property
    def input_size(self) -> tuple[int, int]:
        shape = self.input_shape
        height, width = shape[2], shape[3]
        if not (isinstance(height, int) and isinstance(width, int)):
            raise ValueError(
                f"{self.path.name}: the model input {shape} has no fixed height and width; "
                "export it with a static spatial size"
            )
        return height, width

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.input_shape[0], int)

    @property
    def device(self) -> str:
        if self._session is None:
            _ = self.session
        return "cpu" if self._kind == "cpu" else f"cuda:{self._index}"

    @property
    def max_batch(self) -> int | None:
        """The largest batch one session run gets (``None``: no cap)."""
        if self._max_batch == "auto":
            return CPU_MAX_BATCH if self.device == "cpu" else None
        return self._max_batch

    @property
    def uses_io_binding(self) -> bool:
        """Whether runs go through an onnxruntime IO binding (``io_binding``, resolved)."""
        if self._io_binding == "auto":
            return self.device != "cpu"
        return self._io_binding

    def _run_once(self, batch: np.ndarray) -> list[np.ndarray]:
        if not self.uses_io_binding:
            return self.session.run(None, {self.input_name: batch})
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        kind = "cpu" if self.device == "cpu" else "cuda"
        for name in self.output_names:
            binding.bind_output(name, kind, self._index if kind == "cuda" else 0)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        limit = self.max_batch
        if limit is None or batch.shape[0] <= limit:
            return self._run_once(batch)
        parts = [self._run_once(batch[start : start + limit]) for start in range(0, batch.shape[0], limit)]
        return [np.concatenate([part[index] for part in parts]) for index in range(len(parts[0]))]


BACKENDS = ("onnxruntime", "torch")


def create_backend(
    model_path: str | os.PathLike,
    backend: str,
    device: str,
    role: str,
    *,
    dtype: str = "float32",
    providers: Sequence[str] | None = None,
) -> Backend:
    """Open a model file on a runtime: ``"onnxruntime"`` (ONNX files) or ``"torch"``.

    ``role`` is ``"detector"`` or ``"pose"``. ONNX models are checked to look like YOLOX or
    RTMPose when their session is first created. The torch backend comes from
    :mod:`dwpose_ctrl.models.backend`, imported only when asked for; ``dtype`` applies to it
    only. ``providers`` are onnxruntime's, in order. Choosing among runtimes is
    :func:`dwpose_ctrl.placement.choose_runtime`'s job, not this function's.
    """
    parse_device(device)
    if role not in ("detector", "pose"):
        raise ValueError(f"role must be 'detector' or 'pose', got {role!r}")
    if backend == "onnxruntime":
        if dtype != "float32":
            raise ValueError(
                f"onnxruntime runs the float32 ONNX files; dtype={dtype!r} needs backend='torch'"
            )
        return CheckedOnnxBackend(model_path, device=device, role=role, providers=providers)
    if backend == "torch":
        require("torch", "torch", "backend='torch'")
        torch_backend = require("dwpose_ctrl.models.backend", "torch", "backend='torch'")
        return torch_backend.load_torch_backend(model_path, role=role, device=device, dtype=dtype)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


class CheckedOnnxBackend(OnnxBackend):
    """An :class:`OnnxBackend` that refuses, on first use, a model that is not a YOLOX/RTMPose."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", role: str = "pose", **kwargs):
        super().__init__(path, device=device, **kwargs)
        self.role = role

    def _create_session(self):
        from dwpose_ctrl.weights import check_signature

        session = super()._create_session()
        inputs = [(item.name, list(item.shape)) for item in session.get_inputs()]
        outputs = [(item.name, list(item.shape)) for item in session.get_outputs()]
        check_signature(self.path, self.role, inputs, outputs)
        return session
