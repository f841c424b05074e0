"""Typed training configuration and the loader for config files.

A config file is a Python file that defines ``CONFIG``, a :class:`TrainConfig` (see
``training/configs/``). ``--set section.field=value`` overrides any field from the command
line (values are Python literals: ``--set optim.lr=1e-3 --set data.batch_size=16``).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import math
import os
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from dwpose_ctrl.codec import default_simcc_sigma
from dwpose_ctrl.keypoints import KEYPOINT_LAYOUTS, KeypointMetadata
from training.data.transforms import AugmentationConfig
from training.pretrained import pretrained_backbone_for

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DATASET_KINDS = ("coco_wholebody", "ubody")
AMP_MODES = ("none", "bf16", "fp16")
INIT_KINDS = ("backbone", "whole")


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset. ``coco_wholebody``: ``annotation_file`` + ``image_root``. ``ubody``: ``root``
    (with ``annotations/<scene>/<split>_annotations.json`` and ``images/``), ``scenes`` (empty =
    all), ``split``. Relative paths are resolved against ``DataConfig.data_root``."""

    kind: str = "coco_wholebody"
    annotation_file: str = ""
    image_root: str = ""
    root: str = ""
    scenes: tuple[str, ...] = ()
    split: str = "train"
    sample_interval: int = 1


@dataclass(frozen=True)
class DataConfig:
    """Training datasets (concatenated), the validation dataset and loader settings (per process)."""

    train: tuple[DatasetConfig, ...] = ()
    val: DatasetConfig | None = None
    data_root: str = ""
    batch_size: int = 64
    val_batch_size: int = 64
    num_workers: int = 4

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        _require(self.val_batch_size >= 1, f"data.val_batch_size must be >= 1, got {self.val_batch_size}")
        _require(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class ModelConfig:
    """RTMPose size, input (height, width), keypoint layout name, label sigma and initial weights.

    ``init_checkpoint`` + ``init_kind='backbone'`` loads only ``backbone.*`` tensors (a pretrained
    CSPNeXt); ``init_kind='whole'`` loads a whole model (e.g. an official RTMPose checkpoint).
    ``sigma`` None means the published value for the input size.
    """

    size: str = "l"
    input_size: tuple[int, int] = (256, 192)
    keypoints: str = "coco_wholebody"
    sigma: tuple[float, float] | None = None
    init_checkpoint: str | None = None
    init_kind: str = "backbone"

    @property
    def label_sigma(self) -> tuple[float, float]:
        return self.sigma if self.sigma is not None else default_simcc_sigma(self.input_size)

    @property
    def metadata(self) -> KeypointMetadata:
        return keypoint_layout(self.keypoints)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW; ``lr`` is for ``base_batch_size`` images per step and scales linearly with the real
    total batch when ``scale_lr`` is set. Norm layers and biases get no weight decay."""

    lr: float = 4e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    base_batch_size: int = 512
    scale_lr: bool = True
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        _require(_positive(self.lr), f"optim.lr must be a positive number, got {self.lr!r}")
        _require(
            _finite(self.weight_decay) and self.weight_decay >= 0,
            f"optim.weight_decay must be >= 0, got {self.weight_decay!r}",
        )
        _require(self.base_batch_size >= 1, f"optim.base_batch_size must be >= 1, got {self.base_batch_size}")
        _require(
            self.clip_grad_norm is None or _positive(self.clip_grad_norm),
            f"optim.clip_grad_norm must be a positive number or None, got {self.clip_grad_norm!r}",
        )


@dataclass(frozen=True)
class ScheduleConfig:
    """Linear warm-up over ``warmup_iters`` from ``warmup_start_factor`` x lr, then cosine from
    ``cosine_begin_epoch`` to ``max_epochs`` down to ``min_lr_factor`` x lr (per iteration)."""

    max_epochs: int = 270
    warmup_iters: int = 1000
    warmup_start_factor: float = 1e-5
    cosine_begin_epoch: int = 135
    min_lr_factor: float = 0.05


@dataclass(frozen=True)
class EmaConfig:
    """EMA of parameters and buffers, ``m_t = (1 - momentum) * exp(-(1 + t) / gamma) + momentum``."""

    enabled: bool = True
    momentum: float = 2e-4
    gamma: float = 2000.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs."""

    name: str = "rtmpose"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    final_augmentation: AugmentationConfig = field(default_factory=lambda: AugmentationConfig().final_stage())
    final_stage_epochs: int = 30
    amp: str = "none"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    val_interval: int = 10
    val_flip_test: bool = True
    log_interval: int = 50

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.model.init_kind not in INIT_KINDS:
            raise ValueError(f"model.init_kind must be one of {INIT_KINDS}, got {self.model.init_kind!r}")
        for dataset in (*self.data.train, *((self.data.val,) if self.data.val else ())):
            if dataset.kind not in DATASET_KINDS:
                raise ValueError(f"dataset kind must be one of {DATASET_KINDS}, got {dataset.kind!r}")
        if self.schedule.max_epochs < 1:
            raise ValueError(f"schedule.max_epochs must be >= 1, got {self.schedule.max_epochs}")

    @property
    def final_stage_epoch(self) -> int:
        """First epoch (0-based) that uses ``final_augmentation``."""
        return max(self.schedule.max_epochs - self.final_stage_epochs, 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _finite(value) and value > 0


def _require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` (a config field out of its range)."""
    if not condition:
        raise ValueError(message)


def keypoint_layout(name: str) -> KeypointMetadata:
    try:
        return KEYPOINT_LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown keypoint layout {name!r}; known: {sorted(KEYPOINT_LAYOUTS)}") from None


def wholebody_recipe(size: str, input_size: tuple[int, int] = (256, 192), **changes: Any) -> TrainConfig:
    """The published RTMPose whole-body recipe (COCO-WholeBody + UBody, 270 epochs, batch 512 at
    256x192 / 256 at 384x288, AdamW 4e-3 not rescaled to the real batch (mmengine's auto_scale_lr is
    off unless asked for), the size's pose-pretrained CSPNeXt backbone) for one model size;
    ``changes`` replace top-level fields."""
    data_root = "data"
    train = (
        DatasetConfig(
            kind="coco_wholebody",
            annotation_file="coco/annotations/coco_wholebody_train_v1.0.json",
            image_root="coco/train2017",
        ),
        DatasetConfig(kind="ubody", root="UBody", split="train", sample_interval=10),
    )
    val = DatasetConfig(
        kind="coco_wholebody",
        annotation_file="coco/annotations/coco_wholebody_val_v1.0.json",
        image_root="coco/val2017",
    )
    batch_size = 64 if input_size == (256, 192) else 32
    config = TrainConfig(
        name=f"rtmpose-{size}_coco-ubody-wholebody-{input_size[0]}x{input_size[1]}",
        model=ModelConfig(
            size=size, input_size=input_size, init_checkpoint=pretrained_backbone_for(size).name
        ),
        data=DataConfig(train=train, val=val, data_root=data_root, batch_size=batch_size, val_batch_size=32),
        optim=OptimConfig(lr=4e-3, weight_decay=0.05, base_batch_size=8 * batch_size, scale_lr=False),
        schedule=ScheduleConfig(
            max_epochs=270, warmup_iters=1000, cosine_begin_epoch=135, min_lr_factor=0.05
        ),
    )
    if size == "x":  # RTMPose-x's own settings: stronger scale/rotation in both pipelines, clip 35
        strong = AugmentationConfig(scale_range=(0.5, 1.5), rotate_factor=90.0)
        final = replace(strong, shift_factor=0.0, dropout_probability=0.5)
        optim = replace(config.optim, clip_grad_norm=35.0)
        config = replace(config, augmentation=strong, final_augmentation=final, optim=optim)
    return replace(config, **changes)


def shipped_config(name_or_path: str | os.PathLike) -> Path | None:
    """The file in ``training/configs`` a bare name (no folder, no suffix) names, or None.

    Such a name means the shipped config even when a file of that name lies in the current
    folder (write ``./name`` to use that file).
    """
    if not isinstance(name_or_path, str) or "/" in name_or_path or os.sep in name_or_path:
        return None
    candidate = CONFIG_DIR / f"{name_or_path}.py"
    return candidate if not Path(name_or_path).suffix and candidate.is_file() else None


def load_config(name_or_path: str | os.PathLike) -> TrainConfig:
    """A :class:`TrainConfig` from a config file path or the name of a file in ``training/configs``."""
    path = shipped_config(name_or_path) or Path(name_or_path)
    if not path.is_file():
        candidate = CONFIG_DIR / f"{Path(str(name_or_path)).stem}.py"
        if not candidate.is_file():
            known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
            raise FileNotFoundError(f"config {name_or_path!r} is neither a file nor one of {known}")
        path = candidate
    spec = importlib.util.spec_from_file_location(f"training_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    with config_file_errors(path):
        spec.loader.exec_module(module)
    config = getattr(module, "CONFIG", None)
    if not isinstance(config, TrainConfig):
        raise ConfigFileError(f"{path} must define CONFIG = TrainConfig(...), found {type(config).__name__}")
    return config


class ConfigFileError(TypeError, ValueError):
    """A config file that does not run or does not define the ``CONFIG`` a command needs.

    A ``TypeError`` (the type of ``CONFIG`` is wrong) and a ``ValueError`` (bad input: the command
    line prints it as one error line).
    """


@contextlib.contextmanager
def config_file_errors(path: Path):
    """Turn an error raised while a config file runs into a :class:`ConfigFileError` naming it."""
    try:
        yield
    except SyntaxError as error:
        raise ConfigFileError(
            f"config file {path} has a syntax error at line {error.lineno}: {error.msg}"
        ) from error
    except Exception as error:
        raise ConfigFileError(
            f"config file {path} failed while running: {type(error).__name__}: {error}"
        ) from error


def _coerce(value: Any, current: Any) -> Any:
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the type annotation ``hint`` (None when it fits)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        reasons = [_type_problem(value, option) for option in arguments]
        return None if any(reason is None for reason in reasons) else f"expected {_type_name(hint)}"
    if hint is type(None):
        return None if value is None else "expected None"
    if origin is tuple:
        if not isinstance(value, tuple):
            return f"expected a tuple {_type_name(hint)}"
        items = arguments[:1] * len(value) if len(arguments) == 2 and arguments[1] is Ellipsis else arguments
        if len(items) != len(value):
            return f"expected {len(items)} values {_type_name(hint)}, got {len(value)}"
        reasons = [_type_problem(item, item_hint) for item, item_hint in zip(value, items, strict=True)]
        return next((reason for reason in reasons if reason), None)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "expected a number"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if isinstance(hint, type):
        return None if isinstance(value, hint) else f"expected {_type_name(hint)}"
    return None


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _check_field_type(node: Any, name: str, value: Any, override: str) -> None:
    try:
        hint = typing.get_type_hints(type(node))[name]
    except (NameError, TypeError):  # an annotation that cannot be resolved here: not checked
        return
    problem = _type_problem(value, hint)
    if problem:
        raise ValueError(
            f"override {override!r}: {type(node).__name__}.{name} is {_type_name(hint)}; {problem}, "
            f"got {value!r} (values are Python literals: numbers as 1e-3, text in quotes as 'text')"
        )


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """``config`` with ``a.b.c=literal`` assignments applied (dataclasses replaced, not mutated)."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep:
            raise ValueError(f"override {override!r} must look like section.field=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        config = _set_path(config, key.strip().split("."), value, override)
    return config


def _set_path(node: Any, path: list[str], value: Any, override: str) -> Any:
    if not is_dataclass(node):
        raise ValueError(f"override {override!r}: {type(node).__name__} has no fields")
    names = {f.name for f in fields(node)}
    head = path[0]
    if head not in names:
        raise ValueError(
            f"override {override!r}: {type(node).__name__} has no field {head!r}; fields: {sorted(names)}"
        )
    current = getattr(node, head)
    if len(path) == 1:
        value = _coerce(value, current)
        _check_field_type(node, head, value, override)
        try:
            return replace(node, **{head: value})
        except (TypeError, ValueError) as error:
            raise ValueError(f"override {override!r}: {error}") from error
    return replace(node, **{head: _set_path(current, path[1:], value, override)})
