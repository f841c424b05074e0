"""Model files: a registry of known files, resolution of model arguments, download and checks.

A model argument is a path to a file, or the name of a registered file (``"yolox_l"`` or its
file name ``"yolox_l.onnx"``). Registered files are looked for, in order, in the ``local_dir``
argument, in ``$DWPOSE_CTRL_HOME``, in the Hugging Face cache, and then fetched with
``huggingface_hub.hf_hub_download``, so its cache, ``HF_HUB_OFFLINE``, ``HF_TOKEN``,
``HF_ENDPOINT`` mirrors and ``HF_HOME`` all work as usual. Files with a known sha256 are verified
before use. When files are missing and the Hub is evidently out of reach (``HF_HUB_OFFLINE``, or
no connection to its host within :data:`HUB_PROBE_SECONDS`), :func:`resolve_models` fails at once
naming every missing file and the commands that fetch them, instead of retrying each download.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dwpose_ctrl.files import regular_file_problem

Role = Literal["detector", "pose"]
HOME_ENV = "DWPOSE_CTRL_HOME"
DWPOSE_REPO = "yzd-v/DWPose"


@dataclass(frozen=True)
class ModelFile:
    """A known model file. ``sha256``/``size`` are ``None`` for entries not verified here."""

    name: str
    role: Role
    repo_id: str
    filename: str
    size: int | None
    sha256: str | None

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


# One line per file. Entries without size/sha256 are unverified: downloaded but not checked.
REGISTRY: dict[str, ModelFile] = {
    entry.name: entry
    for entry in (
        ModelFile("yolox_l", "detector", DWPOSE_REPO, "yolox_l.onnx", 216_746_733,
                  "7860ae79de6c89a3c1eb72ae9a2756c0ccfbe04b7791bb5880afabd97855a411"),
        ModelFile("dw-ll_ucoco_384", "pose", DWPOSE_REPO, "dw-ll_ucoco_384.onnx", 134_399_116,
                  "724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843"),
    )
}  # fmt: skip

DEFAULT_MODELS: dict[str, str] = {"detector": "yolox_l", "pose": "dw-ll_ucoco_384"}


class ModelFileError(ValueError):
    """A model file is missing, corrupt, or not the kind of model expected."""


def registered(name: str) -> ModelFile | None:
    """The registry entry for a name or a file name, or ``None``."""
    if name in REGISTRY:
        return REGISTRY[name]
    for entry in REGISTRY.values():
        if entry.filename == name:
            return entry
    return None


def find_registered(repo_id: str, filename: str) -> ModelFile | None:
    """The registry entry for a Hugging Face repo and file name, or ``None``."""
    for entry in REGISTRY.values():
        if entry.repo_id == repo_id and entry.filename == filename:
            return entry
    return None


_verified_files: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (cached per path, size and mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified_files:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _verified_files[key] = digest.hexdigest()
    return _verified_files[key]


def check_readable(path: str | os.PathLike, what: str = "model file") -> Path:
    """Refuse a file that this process may not read, or that is empty, with the fix in the message.

    An unreadable file is reported as such (not as corrupt), an empty one as an interrupted
    download or copy. Returns the path.
    """
    path = Path(path)
    problem = regular_file_problem(path)
    if problem is not None and problem.startswith("is not a regular file"):  # never open a FIFO
        raise ModelFileError(f"{what} {path} {problem}")
    try:
        with path.open("rb") as handle:
            first_byte = handle.read(1)
    except FileNotFoundError as error:
        raise ModelFileError(f"{what} {path} does not exist; check the path") from error
    except PermissionError as error:
        raise ModelFileError(
            f"{what} {path} cannot be read: permission denied; give this user read access "
            f"(chmod a+r {path}) or pass a copy it may read"
        ) from error
    except IsADirectoryError as error:
        raise ModelFileError(f"{what} {path} is a folder, not a file; pass the file inside it") from error
    except OSError as error:
        raise ModelFileError(f"{what} {path} cannot be read: {error.strerror or error}") from error
    if not first_byte:
        raise ModelFileError(
            f"{what} {path} is empty (0 bytes), as an interrupted download or copy leaves it; "
            "download or copy it again, or pass another file"
        )
    return path


def load_onnx_file(path: str | os.PathLike, what: str = "ONNX file"):
    """``onnx.load`` of a readable, non-empty file; a one-line :class:`ModelFileError` when it does
    not parse (truncated, corrupt or not ONNX) or holds no graph."""
    import onnx

    path = check_readable(path, what)
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError, onnx's own errors: all mean unparseable
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFileError(
            f"cannot read {path} as an ONNX model: it is truncated, corrupt or not ONNX ({first_line}); "
            "copy or download it again"
        ) from error
    if not model.graph.input or not model.graph.node:
        raise ModelFileError(f"{path} holds no ONNX graph (no inputs or no nodes); it is not a model export")
    return model


def verify_file(path: Path, entry: ModelFile) -> Path:
    """Check a file's size and sha256 against its registry entry; raise a clear error if they differ."""
    check_readable(path)
    fix = (
        f"delete it and download it again (hf download {entry.repo_id} {entry.filename}), "
        f"or pass a path to a good copy"
    )
    if entry.size is not None and path.stat().st_size != entry.size:
        raise ModelFileError(
            f"model file {path} has {path.stat().st_size} bytes but {entry.filename} has {entry.size}: "
            f"it is truncated or corrupt; {fix}"
        )
    if entry.sha256 is not None and sha256_of(path) != entry.sha256:
        raise ModelFileError(
            f"model file {path} does not have the sha256 of {entry.filename}: it is corrupt; {fix}"
        )
    return path


HUB_PROBE_SECONDS = 2.0
"""How long :func:`hub_reachable` waits for a TCP connection to the Hub's host."""

DOWNLOAD_DIR_HINT = "~/dwpose-models"
"""The folder the missing-files message suggests when neither ``local_dir`` nor the env var is set."""

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the Hub (``HF_ENDPOINT``) opens within ``timeout`` seconds.

    ``False`` at once under ``HF_HUB_OFFLINE``. Behind an HTTPS proxy the host is not probed (the
    proxy decides), so this is ``True``.
    """
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    url = urlsplit(constants.ENDPOINT)
    address = (url.hostname or "", url.port or (443 if url.scheme == "https" else 80))
    reached = threading.Event()

    def connect() -> None:  # name resolution has no timeout of its own: a thread bounds it
        try:
            with socket.create_connection(address, timeout=timeout):
                reached.set()
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return reached.is_set()


def _shell_word(path: str) -> str:
    """``path`` quoted for a POSIX shell; a leading ``~/`` stays outside the quotes (expanded)."""
    if path.startswith("~/"):
        rest = path[2:]
        return "~/" + (shlex.quote(rest) if rest else "")
    return shlex.quote(path)


def fetch_commands(entries: Iterable[ModelFile], folder: str) -> list[str]:
    """``hf download`` commands that put the files of ``entries`` into ``folder`` (one per repo)."""
    by_repo: dict[str, list[str]] = {}
    for entry in entries:
        by_repo.setdefault(entry.repo_id, []).append(entry.filename)
    return [
        f"hf download {repo} {' '.join(names)} --local-dir {_shell_word(folder)}"
        for repo, names in by_repo.items()
    ]


def missing_files_error(
    entries: list[ModelFile], local_dir: str | os.PathLike | None, why: str, registered_names: bool = True
) -> ModelFileError:
    """One error naming every missing file and the exact commands that fix it.

    ``registered_names``: the files were asked for by registered name, so ``local_dir`` and
    ``$DWPOSE_CTRL_HOME`` were searched and can hold them; else (``from_pretrained``) only paths
    or a folder help.
    """
    home = os.environ.get(HOME_ENV) if registered_names else None
    folder = os.fspath(local_dir) if local_dir else home or DOWNLOAD_DIR_HINT
    searched = [f"{os.fspath(local_dir)} (local_dir / --models-dir)"] if local_dir else []
    if registered_names:
        searched.append(f"${HOME_ENV} ({home or 'not set'})")
    searched.append("the Hugging Face cache")
    flags = {"detector": "--det-model", "pose": "--pose-model"}
    arguments = " ".join(
        f"{flags[entry.role]} {_shell_word(os.path.join(folder, entry.filename))}" for entry in entries
    )
    names = ", ".join(entry.filename for entry in entries)
    commands = " && ".join(fetch_commands(entries, folder))
    expanded = os.path.expanduser(folder)  # Python does not expand ~
    use = (
        f"then run with `{HOME_ENV}={_shell_word(folder)}` set, or pass `{arguments}` "
        "(Python: det_model= / pose_model= paths, or local_dir=)"
        if registered_names
        else f"then pass `{arguments}` (Python: DWposeDetector.from_pretrained({expanded!r}))"
    )
    return ModelFileError(
        f"model files missing: {names} (looked in {', '.join(searched)}); {why}. Fetch them once where "
        f"the Hub is reachable: `{commands}`, {use}"
    )


def download(repo_id: str, filename: str, **hub_kwargs) -> Path:
    """``hf_hub_download`` with a clear error when the file is neither cached nor reachable."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, **hub_kwargs))
    except LocalEntryNotFoundError as error:
        raise ModelFileError(
            f"model file {filename} from {repo_id} is not in the Hugging Face cache and cannot be downloaded "
            f"(offline: HF_HUB_OFFLINE is set or the hub is unreachable). Fix: download it once with "
            f"`hf download {repo_id} {filename} --local-dir DIR`, then set {HOME_ENV}=DIR or pass "
            "DIR/" + filename + " as its model argument (dwpose-render --det-model/--pose-model)"
        ) from error
    except (EntryNotFoundError, RepositoryNotFoundError) as error:
        raise ModelFileError(
            f"{filename} was not found in the Hugging Face repo {repo_id}; check the repo id and file name"
        ) from error


def _locate(
    model: str | os.PathLike | None, role: Role, local_dir: str | os.PathLike | None
) -> Path | ModelFile:
    """A model argument as a local file, or the registry entry still to be fetched."""
    if model is None:
        model = DEFAULT_MODELS[role]
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"{role} model must be a path or a registered name, got {type(model).__name__}")
    text = os.fspath(model)
    path = Path(text)
    entry = registered(text)
    if path.is_file() and (entry is None or _written_as_path(model)):
        entry = next((e for e in REGISTRY.values() if e.filename == path.name), None)
        return check_readable(path) if entry is None else _verify_if_same_size(path, entry)
    if entry is not None and path.is_file():
        warnings.warn(
            f"{text!r} names the registered {entry.role} model {entry.name}, which is used; the file "
            f"{text!r} in the current folder is not (write ./{text} to use the file)",
            UserWarning,
            stacklevel=2,
        )
    if entry is None:
        if _written_as_path(model):
            problem = regular_file_problem(path) or "does not exist"
            raise ModelFileError(f"{role} model file {text} {problem}; check the path")
        names = ", ".join(sorted(name for name, e in REGISTRY.items() if e.role == role))
        raise ModelFileError(
            f"unknown {role} model {text!r}: give a path to an .onnx file or one of: {names}"
        )
    if entry.role != role:
        raise ModelFileError(f"{entry.name} is a {entry.role} model, not a {role} model")
    for folder in (local_dir, os.environ.get(HOME_ENV)):
        if folder:
            candidate = Path(folder) / entry.filename
            if candidate.is_file():
                return verify_file(candidate, entry)
    return entry


def _in_cache(entry: ModelFile, **hub_kwargs) -> Path | None:
    """The entry's file in the Hugging Face cache, or ``None``."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        entry.repo_id,
        entry.filename,
        cache_dir=hub_kwargs.get("cache_dir"),
        revision=hub_kwargs.get("revision"),
    )
    return Path(found) if isinstance(found, str) else None


def fetch_files(
    entries: dict[Role, ModelFile],
    local_dir: str | os.PathLike | None = None,
    registered_names: bool = True,
    **hub_kwargs,
) -> dict[Role, Path]:
    """Files of the Hub, one per role: verified entries already cached are used without asking the
    Hub; when files are missing and the Hub is evidently out of reach (``HF_HUB_OFFLINE``,
    ``local_files_only=True``, or :func:`hub_reachable` says no) one error names all of them at
    once, without retries (see :func:`missing_files_error`); else each is downloaded and verified."""
    paths: dict[Role, Path] = {}
    missing = []
    for role, entry in entries.items():
        cached = _in_cache(entry, **hub_kwargs)
        if cached is not None and entry.verified:
            paths[role] = verify_file(cached, entry)
        elif cached is None:
            missing.append(entry)
    if missing:
        if hub_kwargs.get("local_files_only"):
            why = "local_files_only=True forbids downloading"
            raise missing_files_error(missing, local_dir, why, registered_names)
        if not hub_reachable():
            from huggingface_hub import constants

            why = (
                "HF_HUB_OFFLINE is set"
                if constants.HF_HUB_OFFLINE
                else f"the Hub ({constants.ENDPOINT}) cannot be reached from here"
            )
            raise missing_files_error(missing, local_dir, why, registered_names)
    for role, entry in entries.items():
        if role not in paths:
            paths[role] = verify_file(download(entry.repo_id, entry.filename, **hub_kwargs), entry)
    return paths


def resolve_models(
    det_model: str | os.PathLike | None,
    pose_model: str | os.PathLike | None,
    local_dir: str | os.PathLike | None = None,
    **hub_kwargs,
) -> tuple[Path, Path]:
    """Both model arguments as local files (see :func:`resolve_model`); registered files found
    nowhere locally come from :func:`fetch_files`, so missing ones are named all at once."""
    located = {
        role: _locate(model, role, local_dir)
        for role, model in (("detector", det_model), ("pose", pose_model))
    }
    to_fetch = {role: item for role, item in located.items() if isinstance(item, ModelFile)}
    located.update(fetch_files(to_fetch, local_dir, **hub_kwargs))
    return located["detector"], located["pose"]


def resolve_model(
    model: str | os.PathLike | None, role: Role, local_dir: str | os.PathLike | None = None, **hub_kwargs
) -> Path:
    """Turn a model argument (path, registered name, or ``None`` for the default) into a local file.

    ``hub_kwargs`` go to ``hf_hub_download`` (``cache_dir``, ``revision``, ``token``, ...); a
    missing file is fetched by :func:`fetch_files` (no retries when the Hub is out of reach).
    """
    item = _locate(model, role, local_dir)
    if isinstance(item, Path):
        return item
    return fetch_files({role: item}, local_dir, **hub_kwargs)[role]


def _written_as_path(model: str | os.PathLike) -> bool:
    """Whether a model argument is unambiguously a path rather than a registered name.

    A ``pathlib.Path`` (or other ``os.PathLike``), or a string holding a folder separator or a
    file suffix (``./yolox_l``, ``models/yolox_l``, ``yolox_l.onnx``), is a path; a bare name such as
    ``yolox_l`` always means the registry entry, even when a file of that name is in the current folder.
    """
    if not isinstance(model, str):
        return True
    return os.sep in model or "/" in model or bool(Path(model).suffix)


def _verify_if_same_size(path: Path, entry: ModelFile) -> Path:
    """A user path named like a registered file: verify it, unless it is clearly another model.

    A file of another size under the same name (an fp16 export, a fine-tune) is used unchecked;
    a file of the registered size must also have the registered hash, else it is corrupt.
    """
    if entry.size is not None and path.stat().st_size != entry.size:
        return check_readable(path)
    return verify_file(path, entry)


def check_signature(
    path: str | os.PathLike, role: Role, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]]
) -> None:
    """Refuse an ONNX model whose inputs/outputs do not look like YOLOX (detector) or RTMPose (pose).

    ``inputs`` and ``outputs`` are (name, shape) pairs; symbolic dimensions may be str or None.
    YOLOX: one NCHW input with 3 channels, one output (N, anchors, 5 + classes). RTMPose: one NCHW
    input with 3 channels, two outputs (N, K, bins) ``simcc_x`` and ``simcc_y``.
    """
    name = Path(path).name

    def describe(values: list[tuple[str, list]]) -> str:
        return ", ".join(f"{label} {shape}" for label, shape in values) or "none"

    found = f"inputs: {describe(inputs)}; outputs: {describe(outputs)}"
    image_input = len(inputs) == 1 and len(inputs[0][1]) == 4 and inputs[0][1][1] in (3, None, "")
    if role == "detector":
        last = outputs[0][1][-1] if len(outputs) == 1 and len(outputs[0][1]) == 3 else None
        if not (image_input and isinstance(last, int) and last >= 6):
            raise ModelFileError(
                f"{name} does not look like a YOLOX person detector (expected 1 input N x 3 x H x W and "
                f"1 output N x anchors x (5 + classes); {found}). Pass a YOLOX ONNX file as det_model "
                "(is it the pose model given as det_model?)"
            )
        check_detector_geometry(name, (inputs[0][1][2], inputs[0][1][3]), outputs[0][1][1])
    else:
        simcc = len(outputs) == 2 and all(len(shape) == 3 for _, shape in outputs)
        if not (image_input and simcc):
            raise ModelFileError(
                f"{name} does not look like an RTMPose/DWPose SimCC model "
                "(expected 1 input N x 3 x H x W and "
                f"2 outputs simcc_x N x K x 2W, simcc_y N x K x 2H; {found}). Pass a DWPose ONNX file as "
                "pose_model (is it the detector given as pose_model?)"
            )
        (_, x_shape), (_, y_shape) = outputs
        check_pose_geometry(
            name, (inputs[0][1][2], inputs[0][1][3]), (x_shape[1], y_shape[1]), (x_shape[2], y_shape[2])
        )


MIN_DETECTOR_INPUT_SIDE = 32
MAX_DETECTOR_INPUT_SIDE = 4096
"""Detector input sides accepted, in pixels (YOLOX: 416 or 640; at least one stride-32 cell)."""


def check_detector_geometry(name: str, input_size: tuple, anchors: object) -> None:
    """Refuse a YOLOX the pipeline cannot run: an input side outside the accepted range, or an
    anchor count that is not the stride 8/16/32 grid of its input (symbolic sizes: unchecked)."""
    from dwpose_ctrl.person_detection import yolox_grid

    for side, value in zip(("height", "width"), input_size, strict=True):
        if isinstance(value, int) and not MIN_DETECTOR_INPUT_SIDE <= value <= MAX_DETECTOR_INPUT_SIDE:
            raise ModelFileError(
                f"{name}: the detector's input {side} is {value} pixels; a YOLOX takes "
                f"{MIN_DETECTOR_INPUT_SIDE} to {MAX_DETECTOR_INPUT_SIDE} pixels a side (yolox_l: 640). "
                "Re-export it with a usable input size"
            )
    height, width = input_size
    if isinstance(height, int) and isinstance(width, int) and isinstance(anchors, int):
        expected = yolox_grid((height, width))[0].shape[0]
        if anchors != expected:
            raise ModelFileError(
                f"{name}: the detector gives {anchors} anchors but a YOLOX at {height}x{width} has "
                f"{expected} (strides 8, 16, 32); its output does not match its input"
            )


MIN_POSE_INPUT_SIDE = 8
MAX_POSE_INPUT_SIDE = 2048
"""Pose model input sides accepted, in pixels (the published models take 256x192 and 384x288; one
2048x2048 crop is already 48 MiB of float32 per person)."""


def check_pose_input_size(name: str, input_size: tuple) -> None:
    """Refuse a pose model input (height, width) outside the accepted sides (symbolic: unchecked)."""
    for side, value in zip(("height", "width"), input_size, strict=True):
        if isinstance(value, int) and not MIN_POSE_INPUT_SIDE <= value <= MAX_POSE_INPUT_SIDE:
            raise ModelFileError(
                f"{name}: the pose model's input {side} is {value} pixels; a pose model takes "
                f"{MIN_POSE_INPUT_SIDE} to {MAX_POSE_INPUT_SIDE} pixels a side (DWPose: 384x288). "
                "Re-export it with a usable input size"
            )


def check_pose_geometry(name: str, input_size: tuple, keypoints: tuple, bins: tuple) -> None:
    """Refuse a SimCC pose model the pipeline cannot run, naming what is wrong.

    ``input_size`` is (height, width), ``keypoints`` the keypoint counts of simcc_x and simcc_y,
    ``bins`` their bin counts; symbolic dimensions (str or None) are not checked. The model must
    take an input between :data:`MIN_POSE_INPUT_SIDE` and :data:`MAX_POSE_INPUT_SIDE` pixels a
    side, give the 133 COCO-WholeBody keypoints, and give ``2 x`` width and ``2 x`` height bins
    (SimCC split ratio 2, which the decoder assumes).
    """
    from dwpose_ctrl.codec import SIMCC_SPLIT_RATIO
    from dwpose_ctrl.keypoints import NUM_KEYPOINTS

    height, width = input_size
    check_pose_input_size(name, input_size)
    for label, count in zip(("simcc_x", "simcc_y"), keypoints, strict=True):
        if isinstance(count, int) and count != NUM_KEYPOINTS:
            raise ModelFileError(
                f"{name}: {label} gives {count} keypoints, but the pipeline draws the "
                f"{NUM_KEYPOINTS} COCO-WholeBody keypoints; pass a whole-body (DWPose / RTMW) model"
            )
    for label, side, value, count in (
        ("simcc_x", "width", width, bins[0]),
        ("simcc_y", "height", height, bins[1]),
    ):
        if isinstance(value, int) and isinstance(count, int) and count != round(value * SIMCC_SPLIT_RATIO):
            raise ModelFileError(
                f"{name}: {label} has {count} bins but the input {side} is {value} pixels; SimCC models "
                f"give {SIMCC_SPLIT_RATIO:g} bins per pixel ({round(value * SIMCC_SPLIT_RATIO)}), so the "
                "keypoints would land in the wrong place. The model's outputs do not match its input"
            )
