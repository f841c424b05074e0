"""The training loop: AdamW, warm-up + cosine schedule, EMA, AMP, DDP, checkpoints, exact resume, logs.

:func:`train` runs a :class:`TrainConfig`. What is trained is a *task*: an ``nn.Module`` whose
``compute_loss(inputs, batch, epoch)`` returns an object with ``total`` (scalar tensor) and
``as_log_dict()``, and whose ``forward(inputs)`` returns ``(simcc_x, simcc_y)`` for validation.
:class:`PoseTask` (a pose model + the SimCC KL loss) is the default; the distillation wrappers
are tasks too. Only parameters with ``requires_grad`` are optimised.

Exact resume: a checkpoint is written atomically after every epoch with the task, its EMA, the
optimiser, the AMP scaler, the iteration count and the RNG states; data augmentation is a pure
function of ``(seed, epoch, index)``. A run killed at any point and resumed from its last
checkpoint ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from dwpose_ctrl import topdown
from dwpose_ctrl.files import atomic_path
from dwpose_ctrl.keypoints import KeypointMetadata
from dwpose_ctrl.models import build_rtmpose
from dwpose_ctrl.models.checkpoints import load_state_dict
from training.config import DatasetConfig, TrainConfig
from training.data.checks import SampleProblem, check_instances, resolve_problems
from training.data.dataset import (
    Batch,
    EpochSampler,
    TopDownDataset,
    collate_samples,
    worker_init,
    worker_start_method,
)
from training.data.instances import PersonInstance, load_coco_wholebody
from training.data.ubody import load_ubody
from training.evaluate import evaluate_results, predictions_to_results
from training.inference import predict_topdown
from training.losses import SimccKLLoss
from training.pretrained import load_backbone, resolve_backbone_checkpoint

CHECKPOINT_NAME = "last.pth"
BEST_NAME = "best.pth"
_NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)


# --- model and task ------------------------------------------------------------------------------


def build_model(config: TrainConfig) -> nn.Module:
    """The RTMPose network of ``config.model``, initialised from ``init_checkpoint`` if given.

    ``init_kind='backbone'`` loads the checkpoint's ``backbone.*`` tensors strictly (a pretrained
    CSPNeXt, see :mod:`training.pretrained`); ``'whole'`` loads a whole RTMPose model strictly.
    """
    model_config = config.model
    model = build_rtmpose(
        model_config.size, tuple(model_config.input_size), model_config.metadata.num_keypoints
    )
    if model_config.init_checkpoint:
        path = resolve_backbone_checkpoint(model_config.init_checkpoint)
        state = load_state_dict(path)
        if model_config.init_kind == "backbone":
            load_backbone(model.backbone, state, str(path))
        else:
            model.load_state_dict(state, strict=True)
    return model


def warn_if_random_backbone(config: TrainConfig) -> None:
    """Warn that a run whose backbone starts random is not the published recipe."""
    if not config.model.init_checkpoint:
        warnings.warn(
            f"{config.name}: the backbone starts from random weights, which is not the published recipe "
            "(it loads a pose-pretrained CSPNeXt). From a random backbone the RTMCC head sits on the "
            "SimCC mean-pose plateau for thousands of iterations. Set model.init_checkpoint to a "
            "pretrained backbone, or warm one up first: python -m training warmup (docs/training.md)",
            RandomBackboneWarning,
            stacklevel=2,
        )


class RandomBackboneWarning(UserWarning):
    """Training starts with a random backbone (not the published recipe)."""


@dataclass(frozen=True)
class LossTerms:
    """The loss of one batch."""

    total: torch.Tensor

    def as_log_dict(self) -> dict[str, float]:
        return {"loss": float(self.total.detach())}


class SimccBatchLoss(nn.Module):
    """``loss((simcc_x, simcc_y), batch)``: the SimCC KL loss against a :class:`Batch`'s labels."""

    def __init__(self, beta: float = 10.0, label_beta: float = 10.0):
        super().__init__()
        self.loss = SimccKLLoss(beta=beta, label_beta=label_beta)

    def forward(self, simcc: tuple[torch.Tensor, torch.Tensor], batch: Batch) -> torch.Tensor:
        return self.loss(simcc[0], simcc[1], batch.target_x, batch.target_y, batch.weights)


class PoseTask(nn.Module):
    """Train a pose model on ground truth with the SimCC KL loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.gt_loss = SimccBatchLoss()

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(inputs)

    def compute_loss(self, inputs: torch.Tensor, batch: Batch, epoch: int) -> LossTerms:
        return LossTerms(self.gt_loss(self.model(inputs), batch))

    def shipping_model(self) -> nn.Module:
        return self.model


class _LossForward(nn.Module):
    """Routes DDP's forward to ``task.compute_loss`` so gradient sync hooks run."""

    def __init__(self, task: nn.Module):
        super().__init__()
        self.task = task

    def forward(self, inputs: torch.Tensor, batch: Any, epoch: int):
        return self.task.compute_loss(inputs, batch, epoch)


TaskFactory = Callable[[TrainConfig], nn.Module]


def default_task(config: TrainConfig) -> nn.Module:
    """:class:`PoseTask` of the config's model; compiled in place (same state-dict names) when
    ``config.compile``."""
    warn_if_random_backbone(config)
    model = build_model(config)
    if config.compile:
        model.compile()
    return PoseTask(model)


def shipping_state_dict(task: nn.Module) -> dict[str, torch.Tensor]:
    """Weights to ship: the pose model's own state dict (mmpose names) when the task has one."""
    shipping = getattr(task, "shipping_model", None)
    model = shipping() if callable(shipping) else task
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# --- optimiser, schedule, EMA --------------------------------------------------------------------


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed and not decayed (norm layers' parameters and biases)."""
    no_decay_ids: set[int] = set()
    for submodule in module.modules():
        if isinstance(submodule, _NORM_LAYERS):
            no_decay_ids.update(id(p) for p in submodule.parameters(recurse=False))
    decay, no_decay, seen = [], [], set()
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        if id(parameter) in no_decay_ids or name.endswith(".bias"):
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def learning_rate(iteration: int, iters_per_epoch: int, base_lr: float, config: TrainConfig) -> float:
    """lr at a 0-based iteration: linear warm-up factor times the cosine part (per iteration)."""
    schedule = config.schedule
    lr = base_lr
    begin = schedule.cosine_begin_epoch * iters_per_epoch
    end = schedule.max_epochs * iters_per_epoch
    if iteration >= begin and end > begin:
        minimum = base_lr * schedule.min_lr_factor
        progress = min((iteration - begin) / (end - begin), 1.0)
        lr = minimum + (base_lr - minimum) * (1 + math.cos(math.pi * progress)) / 2
    if iteration < schedule.warmup_iters:
        start = schedule.warmup_start_factor
        lr *= start + (1 - start) * iteration / schedule.warmup_iters
    return lr


class ModelEma:
    """Exponential moving average of a module's parameters and buffers (mmengine ExpMomentumEMA).

    The first update copies; update ``t`` (t previous updates) uses
    ``m = (1 - momentum) * exp(-(1 + t) / gamma) + momentum`` and ``ema = ema + m * (param - ema)``.
    Integer buffers are copied.
    """

    def __init__(self, module: nn.Module, momentum: float = 2e-4, gamma: float = 2000.0):
        self.module = copy.deepcopy(module).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.momentum = momentum
        self.gamma = gamma
        self.steps = 0

    def decay(self, steps: int) -> float:
        return (1 - self.momentum) * math.exp(-(1 + steps) / self.gamma) + self.momentum

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        source = module.state_dict()
        averages, values = [], []
        for name, average in self.module.state_dict().items():
            value = source[name].detach()
            if self.steps == 0 or not average.dtype.is_floating_point:
                average.copy_(value)
            else:
                averages.append(average)
                values.append(value.to(average.dtype))
        if averages:
            torch._foreach_lerp_(averages, values, self.decay(self.steps))
        self.steps += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = int(state["steps"])


# --- distributed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run (single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed(device: str | None = None) -> Distributed:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; start the process group (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = local_rank if world_size > 1 or device == "cuda" else int(device.partition(":")[2] or 0)
        torch_device = torch.device("cuda", index)
        torch.cuda.set_device(torch_device)
    elif device == "cpu":
        torch_device = torch.device("cpu")
    else:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch_device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank, torch_device)


# --- data ----------------------------------------------------------------------------------------


def _resolve(data_root: str, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() or not data_root else Path(data_root) / candidate


def load_instances(
    dataset: DatasetConfig,
    data_root: str,
    metadata: KeypointMetadata,
    filter_instances: bool = True,
    problems: list | None = None,
):
    """Person instances of one configured dataset (``problems``: see ``load_coco_wholebody``)."""
    if dataset.kind == "coco_wholebody":
        return load_coco_wholebody(
            _resolve(data_root, dataset.annotation_file),
            _resolve(data_root, dataset.image_root),
            metadata,
            filter_instances,
            dataset.sample_interval,
            problems,
        )
    return load_ubody(
        _resolve(data_root, dataset.root),
        dataset.split,
        dataset.scenes or None,
        metadata,
        dataset.sample_interval,
        filter_instances,
        problems,
    )


def load_checked_instances(
    dataset: DatasetConfig,
    config: TrainConfig,
    skip_bad_samples: bool = False,
    what: str = "the validation data",
) -> list[PersonInstance]:
    """One dataset's instances, checked as the training data is (see :func:`build_train_dataset`)."""
    problems: list[SampleProblem] = []
    instances = load_instances(dataset, config.data.data_root, config.model.metadata, problems=problems)
    instances, file_problems = check_instances(instances)
    return resolve_problems(instances, problems + file_problems, skip_bad_samples, what)


def ground_truth_file(dataset: DatasetConfig, data_root: str) -> Path:
    if dataset.kind != "coco_wholebody":
        raise ValueError("validation needs a single COCO-WholeBody annotation file (kind='coco_wholebody')")
    return _resolve(data_root, dataset.annotation_file)


def build_train_dataset(config: TrainConfig, skip_bad_samples: bool = False) -> TopDownDataset:
    """All training datasets concatenated into one augmented top-down dataset.

    Every sample is checked first (:mod:`training.data.checks`): bad ones raise one error naming
    all of them, or are left out with a warning when ``skip_bad_samples``.
    """
    metadata = config.model.metadata
    instances: list[PersonInstance] = []
    problems: list[SampleProblem] = []
    for dataset in config.data.train:
        instances += load_instances(dataset, config.data.data_root, metadata, problems=problems)
    instances, file_problems = check_instances(instances)
    instances = resolve_problems(instances, problems + file_problems, skip_bad_samples, "the training data")
    return TopDownDataset(
        instances,
        metadata,
        tuple(config.model.input_size),
        config.model.label_sigma,
        config.augmentation,
        config.final_augmentation,
        config.final_stage_epoch,
        config.seed,
        skip_bad_samples,
    )


# --- checkpoints and logs ------------------------------------------------------------------------


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


NO_RESUME_HINT = "pass --no-resume to start over (it is overwritten), or use another --work-dir"
RESUME_KEYS = ("task", "optimizer", "scaler", "ema", "epoch", "iteration", "best_metric", "rng")


def load_resume_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """The resume checkpoint ``path`` (``last.pth``), or a ``ValueError`` saying why it cannot be used.

    An empty, truncated or corrupt file and a file that is not a resume checkpoint of this trainer
    (a ``best.pth``, an exported model) are refused with the hint to use ``--no-resume``.
    """
    import pickle

    if path.stat().st_size == 0:
        raise ValueError(f"cannot resume from {path}: it is empty (0 bytes); {NO_RESUME_HINT}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except PermissionError as error:
        raise ValueError(f"cannot resume from {path}: permission denied; {NO_RESUME_HINT}") from error
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise ValueError(
            f"cannot resume from {path}: it is truncated or corrupt ({first_line}); {NO_RESUME_HINT}"
        ) from error
    missing = [key for key in RESUME_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise ValueError(
            f"cannot resume from {path}: it is not a resume checkpoint of this trainer (it lacks "
            f"{', '.join(missing)}); {NO_RESUME_HINT}"
        )
    return checkpoint


def save_atomic(payload: dict, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    The temporary name is unique to the process and call (:func:`dwpose_ctrl.files.atomic_path`),
    so two runs saving the same checkpoint never write into each other's file: the file is
    always one whole checkpoint. It gets the mode a plain ``open()`` gives.
    """
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class RunLog:
    """CSV files, TensorBoard scalars and a matplotlib plot of the curves (main process only)."""

    def __init__(self, work_dir: Path, enabled: bool, resume_iteration: int):
        self.work_dir = work_dir
        self.enabled = enabled
        self.train_csv = work_dir / "train_log.csv"
        self.val_csv = work_dir / "val_log.csv"
        self.writer = None
        if not enabled:
            return
        for path in (self.train_csv, self.val_csv):
            self._truncate(path, "iteration", resume_iteration)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(work_dir / "tensorboard"), purge_step=resume_iteration)

    @staticmethod
    def _truncate(path: Path, column: str, limit: float) -> None:
        """Drop rows a killed run logged after the checkpoint we start from (all rows on a fresh start)."""
        if not path.exists():
            return
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            return
        kept = [row for row in rows if float(row[column]) <= limit]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)

    def _append(self, path: Path, row: dict) -> None:
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def train_row(self, row: dict) -> None:
        if not self.enabled:
            return
        self._append(self.train_csv, row)
        for key, value in row.items():
            if key not in ("epoch", "iteration"):
                self.writer.add_scalar(f"train/{key}", value, row["iteration"])

    def val_row(self, row: dict) -> None:
        if not self.enabled:
            return
        self._append(self.val_csv, row)
        for key, value in row.items():
            if key not in ("epoch", "iteration"):
                self.writer.add_scalar(f"val/{key}", value, row["epoch"])

    def plot(self) -> Path | None:
        """``curves.png``: training loss and lr per iteration, validation AP per epoch."""
        if not self.enabled or not self.train_csv.exists():
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with open(self.train_csv, newline="") as handle:
            rows = list(csv.DictReader(handle))
        val_rows = []
        if self.val_csv.exists():
            with open(self.val_csv, newline="") as handle:
                val_rows = list(csv.DictReader(handle))
        figure, axes = plt.subplots(1, 3, figsize=(15, 4))
        iterations = [float(r["iteration"]) for r in rows]
        axes[0].plot(iterations, [float(r["loss"]) for r in rows])
        axes[0].set(title="training loss", xlabel="iteration")
        axes[1].plot(iterations, [float(r["lr"]) for r in rows])
        axes[1].set(title="learning rate", xlabel="iteration")
        if val_rows:
            epochs = [float(r["epoch"]) for r in val_rows]
            for key in val_rows[0]:
                if key.endswith("_ap"):
                    axes[2].plot(epochs, [float(r[key]) for r in val_rows], marker="o", label=key)
            axes[2].legend(fontsize=7)
        axes[2].set(title="validation AP", xlabel="epoch")
        figure.tight_layout()
        path = self.work_dir / "curves.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- the loop ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSummary:
    """What a finished :func:`train` call leaves behind."""

    work_dir: Path
    epochs: int
    iterations: int
    last_loss: float
    best_metric: float | None
    checkpoint: Path
    task: nn.Module
    ema: ModelEma | None


def _autocast(amp: str, device: torch.device):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type != "cuda" and amp == "fp16":
        raise ValueError("amp='fp16' needs CUDA; use 'bf16' or 'none' on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _normalise(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    mean = torch.tensor(topdown.PIXEL_MEAN, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(topdown.PIXEL_STD, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    inputs = (images.float() - mean) / std
    return inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs


def validate(
    module: nn.Module, config: TrainConfig, device: torch.device, instances=None
) -> dict[str, float]:
    """Top-down on the validation set's GT boxes with ``module`` and COCO-WholeBody AP/AR."""
    val = config.data.val
    metadata = config.model.metadata
    if instances is None:
        instances = load_instances(val, config.data.data_root, metadata)
    predictions = predict_topdown(
        module,
        instances,
        metadata,
        tuple(config.model.input_size),
        batch_size=config.data.val_batch_size,
        flip_test=config.val_flip_test,
        device=device,
        num_workers=config.data.num_workers,
        channels_last=config.channels_last,
    )
    results = predictions_to_results(predictions, metadata)
    return evaluate_results(ground_truth_file(val, config.data.data_root), results, metadata).summary()


def _main_metric(summary: dict[str, float]) -> tuple[str, float]:
    key = "wholebody_ap" if "wholebody_ap" in summary else next(k for k in summary if k.endswith("_ap"))
    return key, summary[key]


class TrainStep:
    """One optimisation step of a task: forward (under AMP) -> loss -> backward -> clip -> AdamW -> EMA.

    Owns the optimiser (decay split by :func:`parameter_groups`), the AMP grad scaler and the EMA;
    wraps the task in DDP when ``distributed``. The benchmark and :func:`train` both use it.
    """

    def __init__(
        self, task: nn.Module, config: TrainConfig, device: torch.device, base_lr: float, distributed: bool
    ):
        self.task = task
        self.config = config
        self.device = device
        self.model = (
            nn.parallel.DistributedDataParallel(_LossForward(task)) if distributed else _LossForward(task)
        )
        self.optimizer = torch.optim.AdamW(
            parameter_groups(task, config.optim.weight_decay),
            lr=base_lr,
            betas=tuple(config.optim.betas),
            fused=device.type in ("cpu", "cuda"),
        )
        self.trainable = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
        self.ema = ModelEma(task, config.ema.momentum, config.ema.gamma) if config.ema.enabled else None

    def __call__(self, batch: Batch, epoch: int, lr: float) -> tuple[dict[str, float], float]:
        """Train on one batch at learning rate ``lr``; returns the loss terms and the gradient norm
        (NaN when gradients are not clipped)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device, non_blocking=True)
        inputs = _normalise(batch.images, self.config.channels_last)
        with _autocast(self.config.amp, self.device):
            terms = self.model(inputs, batch, epoch)
        loss = terms.total
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {float(loss)} at epoch {epoch}")
        self.scaler.scale(loss).backward()
        grad_norm = float("nan")
        if self.config.optim.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(nn.utils.clip_grad_norm_(self.trainable, self.config.optim.clip_grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.task)
        return terms.as_log_dict(), grad_norm


def train(
    config: TrainConfig,
    work_dir: str | os.PathLike,
    task_factory: TaskFactory = default_task,
    device: str | None = None,
    resume: bool = True,
    progress: bool = True,
    skip_bad_samples: bool = False,
) -> TrainSummary:
    """Train ``config`` in ``work_dir`` (resuming from ``work_dir/last.pth`` when ``resume``).

    ``skip_bad_samples`` leaves out samples whose image is missing, unreadable or corrupt or whose
    numbers are not finite (with a warning) instead of stopping before the first step.
    """
    from tqdm import tqdm

    context = setup_distributed(device)
    work_dir = Path(work_dir)
    if context.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
    context.barrier()
    seed_everything(config.seed)
    task = task_factory(config).to(context.device)
    if config.channels_last:
        task = task.to(memory_format=torch.channels_last)
    dataset = build_train_dataset(config, skip_bad_samples)
    batch_size = config.data.batch_size
    total_batch = batch_size * context.world_size
    base_lr = config.optim.lr * (total_batch / config.optim.base_batch_size if config.optim.scale_lr else 1.0)
    sampler = EpochSampler(len(dataset), config.seed, True, context.rank, context.world_size)
    iters_per_epoch = len(sampler) // batch_size
    if iters_per_epoch == 0:
        raise ValueError(
            f"{len(dataset)} training instances give no full batch of {batch_size} per process; "
            "lower data.batch_size or add data"
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.data.num_workers,
        collate_fn=collate_samples,
        drop_last=True,
        pin_memory=context.device.type == "cuda",
        persistent_workers=config.data.num_workers > 0,
        worker_init_fn=worker_init,
        multiprocessing_context=worker_start_method(config.data.num_workers),
    )
    step_fn = TrainStep(task, config, context.device, base_lr, context.enabled)
    optimizer, scaler, ema = step_fn.optimizer, step_fn.scaler, step_fn.ema
    start_epoch, iteration, best_metric = 0, 0, None
    checkpoint_path = work_dir / CHECKPOINT_NAME
    if resume and checkpoint_path.exists():
        checkpoint = load_resume_checkpoint(checkpoint_path, context.device)
        try:
            task.load_state_dict(checkpoint["task"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scaler.load_state_dict(checkpoint["scaler"])
            if ema is not None:
                ema.load_state_dict(checkpoint["ema"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(
                f"cannot resume from {checkpoint_path}: it was written for another model or config "
                f"({first_line}); {NO_RESUME_HINT}"
            ) from error
        start_epoch, iteration, best_metric = (
            checkpoint["epoch"],
            checkpoint["iteration"],
            checkpoint["best_metric"],
        )
        _set_rng_state(checkpoint["rng"])
    log = RunLog(work_dir, context.is_main, iteration)
    # checked now, not after the first epochs: a bad validation image must not stop a long run late
    val_instances = (
        None if config.data.val is None else load_checked_instances(config.data.val, config, skip_bad_samples)
    )
    last_loss = float("nan")
    for epoch in range(start_epoch, config.schedule.max_epochs):
        sampler.set_epoch(epoch)
        task.train()
        started = time.perf_counter()
        bar = tqdm(
            loader,
            total=iters_per_epoch,
            desc=f"epoch {epoch + 1}/{config.schedule.max_epochs}",
            disable=not (progress and context.is_main),
            leave=False,
        )
        for step, batch in enumerate(bar):
            lr = learning_rate(iteration, iters_per_epoch, base_lr, config)
            values, grad_norm = step_fn(batch, epoch, lr)
            iteration += 1
            last_loss = values["loss"]
            if context.is_main and (iteration % config.log_interval == 0 or step == iters_per_epoch - 1):
                elapsed = time.perf_counter() - started
                row = {"epoch": epoch + 1, "iteration": iteration, "lr": lr, **values}
                row["grad_norm"] = grad_norm
                row["images_per_s"] = (step + 1) * total_batch / max(elapsed, 1e-9)
                log.train_row(row)
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
        bar.close()
        completed = epoch + 1
        evaluated = config.data.val is not None and (
            completed % config.val_interval == 0 or completed == config.schedule.max_epochs
        )
        if evaluated and context.is_main:
            summary = validate(ema.module if ema else task, config, context.device, val_instances)
            log.val_row({"epoch": completed, "iteration": iteration, **summary})
            metric_name, metric = _main_metric(summary)
            if best_metric is None or metric > best_metric:
                best_metric = metric
                save_atomic(
                    {"state_dict": shipping_state_dict(ema.module if ema else task), "epoch": completed,
                     "metric": {metric_name: metric}, "config": config.to_dict()},
                    work_dir / BEST_NAME,
                )  # fmt: skip
            if progress:
                print(
                    f"epoch {completed}: " + ", ".join(f"{k} {v:.4f}" for k, v in summary.items()), flush=True
                )
        if context.is_main:
            save_atomic(
                {
                    "task": task.state_dict(),
                    "ema": ema.state_dict() if ema else None,
                    "state_dict": shipping_state_dict(ema.module if ema else task),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": completed,
                    "iteration": iteration,
                    "best_metric": best_metric,
                    "rng": _rng_state(),
                    "config": config.to_dict(),
                },
                checkpoint_path,
            )
            log.plot()
        context.barrier()
    log.close()
    return TrainSummary(
        work_dir, config.schedule.max_epochs, iteration, last_loss, best_metric, checkpoint_path, task, ema
    )
