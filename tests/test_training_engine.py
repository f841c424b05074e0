"""The training engine on a tiny RTMPose-t (64x64) and synthetic data: the loss goes down, a killed
run resumes to the same weights, 2-process gloo DDP, validation, best checkpoint and ``eval``."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from training.__main__ import COMMANDS, build_parser, main
from training.config import CONFIG_DIR, apply_overrides, load_config
from training.data.synthetic import SyntheticConfig, generate_synthetic_dataset
from training.data.transforms import AugmentationConfig
from training.engine import ModelEma, PoseTask, build_model, learning_rate, parameter_groups, train


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_synthetic_dataset(
        root / "synthetic", SyntheticConfig(num_images=6, image_size=(128, 128), seed=0)
    )
    return root


def _config(data_root: Path, *overrides: str):
    base = [f"data.data_root={str(data_root)!r}", "data.val=None", "data.batch_size=4", "data.num_workers=0"]
    return apply_overrides(load_config("tiny_synthetic"), [*base, *overrides])


def _losses(work_dir: Path) -> list[float]:
    with open(work_dir / "train_log.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_loss_goes_down(data_root, tmp_path):
    config = _config(
        data_root, "schedule.max_epochs=1", "schedule.warmup_iters=1", "schedule.cosine_begin_epoch=1",
        "data.batch_size=6", "ema.enabled=False", "optim.lr=5e-4",
    )  # fmt: skip
    # the same few un-augmented crops seen twelve times in the epoch: the model must start to fit
    # them. mmpose's head init starts at the loss of flat logits (0.28 here), so the loss falls by
    # a third in 20 steps rather than collapsing from the 30+ of PyTorch's default init.
    config = replace(
        config,
        augmentation=AugmentationConfig.none(),
        final_augmentation=AugmentationConfig.none(),
        data=replace(config.data, train=(config.data.train[0],) * 12),
    )
    summary = train(config, tmp_path, progress=False)
    losses = _losses(tmp_path)
    assert summary.iterations == len(losses) >= 16
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:2]), losses


class _CrashingTask(PoseTask):
    """Dies (like a killed process) when it reaches a given number of loss computations."""

    def __init__(self, model: nn.Module, crash_at: int):
        super().__init__(model)
        self.calls, self.crash_at = 0, crash_at

    def compute_loss(self, inputs, batch, epoch):
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        return super().compute_loss(inputs, batch, epoch)


def test_killed_and_resumed_run_gives_identical_weights(data_root, tmp_path):
    config = _config(
        data_root,
        "schedule.max_epochs=2",
        "schedule.warmup_iters=2",
        "schedule.cosine_begin_epoch=1",
        "optim.clip_grad_norm=1.0",
    )
    reference = train(config, tmp_path / "reference", progress=False)
    iterations = reference.iterations
    assert iterations >= 4
    with pytest.raises(KeyboardInterrupt):
        train(
            config,
            tmp_path / "killed",
            lambda c: _CrashingTask(build_model(c), iterations - 1),
            progress=False,
        )
    partial = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)
    assert partial["epoch"] == 1
    resumed = train(apply_overrides(config, ["data.num_workers=2"]), tmp_path / "killed", progress=False)
    assert resumed.iterations == iterations
    final = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)
    expected = torch.load(tmp_path / "reference" / "last.pth", weights_only=True)
    for part in ("task", "state_dict"):
        for key, value in expected[part].items():
            assert torch.equal(final[part][key], value), (part, key)
    for key, value in expected["ema"]["module"].items():
        assert torch.equal(final["ema"]["module"][key], value), key
    assert final["optimizer"]["state"].keys() == expected["optimizer"]["state"].keys()
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "reference")


def _ddp_worker(rank: int, world_size: int, port: int, data_root: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    torch.set_num_threads(1)
    config = _config(Path(data_root), "schedule.max_epochs=1", "data.batch_size=2", "schedule.warmup_iters=1")
    summary = train(config, Path(out) / "run", device="cpu", progress=False)
    torch.save({k: v.detach() for k, v in summary.task.state_dict().items()}, Path(out) / f"rank{rank}.pth")
    torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp(data_root, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(data_root), str(tmp_path)), nprocs=2, join=True)
    first = torch.load(tmp_path / "rank0.pth", weights_only=True)
    second = torch.load(tmp_path / "rank1.pth", weights_only=True)
    # parameters are in sync after every step; BatchNorm running statistics are per process
    # (DDP broadcasts rank 0's at the start of each forward pass)
    initial = build_model(_config(data_root))
    parameters = [name for name, _ in initial.named_parameters()]
    for name in parameters:
        assert torch.equal(first[f"model.{name}"], second[f"model.{name}"]), name
    changed = sum(not torch.equal(first[f"model.{n}"], p) for n, p in initial.named_parameters())
    assert changed == len(parameters)
    checkpoint = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert checkpoint["iteration"] == len(_losses(tmp_path / "run")) >= 2


def test_validation_best_checkpoint_and_eval_command(data_root, tmp_path, capsys):
    config = _config(data_root, "schedule.max_epochs=1", "schedule.warmup_iters=1")
    config = replace(config, data=replace(config.data, val=config.data.train[0]), val_interval=1)
    summary = train(config, tmp_path, progress=False)
    assert summary.best_metric is not None
    for name in ("best.pth", "last.pth", "curves.png", "val_log.csv", "train_log.csv"):
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / "tensorboard").iterdir())
    with open(tmp_path / "val_log.csv", newline="") as handle:
        logged = next(csv.DictReader(handle))
    capsys.readouterr()
    args = ["eval", "--config", "tiny_synthetic", "--checkpoint", str(tmp_path / "best.pth"), "--data-root",
            str(data_root), "--no-flip-test", "--num-workers", "0", "--json"]  # fmt: skip
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["wholebody_ap"] == pytest.approx(float(logged["wholebody_ap"]))
    assert printed["body_ar"] == pytest.approx(float(logged["body_ar"]))


def test_learning_rate_schedule():
    config = load_config("rtmpose_l_256x192")
    per_epoch, lr = 100, 4e-3
    assert learning_rate(0, per_epoch, lr, config) == pytest.approx(4e-8)
    assert learning_rate(500, per_epoch, lr, config) == pytest.approx(lr * (1e-5 + (1 - 1e-5) * 0.5))
    assert learning_rate(1000, per_epoch, lr, config) == lr
    assert learning_rate(135 * per_epoch, per_epoch, lr, config) == pytest.approx(lr)
    middle = (135 + 135 / 2) * per_epoch
    assert learning_rate(int(middle), per_epoch, lr, config) == pytest.approx((lr + 2e-4) / 2)
    assert learning_rate(270 * per_epoch, per_epoch, lr, config) == pytest.approx(2e-4)


def test_ema_formula_and_buffers():
    module = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEma(module, momentum=2e-4, gamma=2000)
    with torch.no_grad():
        module[0].weight.fill_(1.0)
        module[1].running_mean.fill_(3.0)
    ema.update(module)  # first update copies
    assert torch.equal(ema.module[0].weight, module[0].weight)
    with torch.no_grad():
        module[0].weight.fill_(2.0)
        module[1].running_mean.fill_(5.0)
    ema.update(module)
    m = (1 - 2e-4) * math.exp(-2 / 2000) + 2e-4
    assert ema.decay(1) == pytest.approx(m)
    assert torch.allclose(ema.module[0].weight, torch.full((2, 2), 1 + m))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 3 + 2 * m))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_no_weight_decay_on_norms_and_biases():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1, bias=True), nn.LayerNorm(2)
    )
    model[0].weight.requires_grad_(False)
    groups = parameter_groups(model, 0.05)
    decayed = {id(p) for p in groups[0]["params"]}
    plain = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[2].weight)}
    assert plain == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias),
                     id(model[3].weight), id(model[3].bias)}  # fmt: skip


def test_published_configs():
    names = sorted(p.stem for p in CONFIG_DIR.glob("rtmpose_*.py"))
    assert names == ["rtmpose_l_256x192", "rtmpose_l_384x288", "rtmpose_m_256x192", "rtmpose_s_256x192",
                     "rtmpose_t_256x192", "rtmpose_x_256x192", "rtmpose_x_384x288"]  # fmt: skip
    large = load_config("rtmpose_l_384x288")
    assert (
        large.model.size == "l"
        and large.model.input_size == (384, 288)
        and large.model.label_sigma == (6.0, 6.93)
    )
    small = load_config("rtmpose_t_256x192")
    assert (
        small.model.label_sigma == (4.9, 5.66) and small.optim.lr == 4e-3 and small.schedule.max_epochs == 270
    )
    assert small.optim.base_batch_size == 512 and small.final_stage_epoch == 240
    assert [d.kind for d in small.data.train] == ["coco_wholebody", "ubody"] and small.data.train[
        1
    ].sample_interval == 10
    assert small.augmentation.rotate_factor == 80 and small.final_augmentation.rotate_factor == 60


def test_overrides_and_errors():
    config = apply_overrides(
        load_config("tiny_synthetic"), ["optim.lr=1", "model.input_size=[96, 64]", "amp='bf16'"]
    )
    assert config.optim.lr == 1.0 and config.model.input_size == (96, 64) and config.amp == "bf16"
    with pytest.raises(ValueError, match="no field"):
        apply_overrides(config, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="amp must be"):
        apply_overrides(config, ["amp='fp8'"])
    with pytest.raises(FileNotFoundError, match="neither a file"):
        load_config("no_such_config")


def test_help_is_complete(capsys):
    parser = build_parser()
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: python -m training" in capsys.readouterr().out


def test_initialise_from_backbone_checkpoint(tmp_path):
    config = apply_overrides(load_config("tiny_synthetic"), [])
    source = build_model(config)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "whole.pth")
    backbone_only = {f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}
    torch.save({"state_dict": backbone_only}, tmp_path / "backbone.pth")
    torch.manual_seed(123)
    from_backbone = build_model(
        apply_overrides(config, [f"model.init_checkpoint={str(tmp_path / 'backbone.pth')!r}"])
    )
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(from_backbone.backbone.state_dict()[key], value)
    assert not torch.equal(from_backbone.head.cls_x.weight, source.head.cls_x.weight)
    whole = build_model(apply_overrides(config, [f"model.init_checkpoint={str(tmp_path / 'whole.pth')!r}",
                                                 "model.init_kind='whole'"]))  # fmt: skip
    assert torch.equal(whole.head.cls_x.weight, source.head.cls_x.weight)


def test_train_step_bf16_autocast_on_cpu_and_fp16_refused():
    from benchmarks.train_speed import random_batch
    from training.engine import TrainStep

    config = apply_overrides(load_config("tiny_synthetic"), ["amp='bf16'"])
    task = PoseTask(build_model(config))
    step = TrainStep(task, config, torch.device("cpu"), base_lr=1e-3, distributed=False)
    before = task.model.head.cls_x.weight.detach().clone()
    values, grad_norm = step(random_batch(2, (64, 64), config.model.label_sigma), epoch=0, lr=1e-3)
    assert math.isfinite(values["loss"]) and math.isnan(grad_norm)
    assert not torch.equal(before, task.model.head.cls_x.weight) and step.ema.steps == 1
    fp16 = apply_overrides(config, ["amp='fp16'"])
    with pytest.raises(ValueError, match="needs CUDA"):
        TrainStep(task, fp16, torch.device("cpu"), 1e-3, False)(
            random_batch(2, (64, 64), (2.0, 2.0)), 0, 1e-3
        )


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_identical_weights(data_root, tmp_path):
    """A real ``kill -9`` of ``python -m training train`` after its first checkpoint, then a resume."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    overrides = ["--set", "data.val=None", "--set", "data.batch_size=2", "--set", "schedule.max_epochs=3"]
    command = [sys.executable, "-m", "training", "train", "--config", "tiny_synthetic",
               "--data-root", str(data_root), "--device", "cpu", "--threads", "1", "--no-progress",
               *overrides]  # fmt: skip
    subprocess.run(
        [*command, "--work-dir", str(tmp_path / "reference")], cwd=root, check=True, capture_output=True
    )
    process = subprocess.Popen([*command, "--work-dir", str(tmp_path / "killed")], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint = tmp_path / "killed" / "last.pth"
    while not checkpoint.exists() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert torch.load(checkpoint, weights_only=True)["epoch"] < 3
    subprocess.run(
        [*command, "--work-dir", str(tmp_path / "killed")], cwd=root, check=True, capture_output=True
    )
    final = torch.load(checkpoint, weights_only=True)
    expected = torch.load(tmp_path / "reference" / "last.pth", weights_only=True)
    assert final["iteration"] == expected["iteration"]
    for key, value in expected["task"].items():
        assert torch.equal(final["task"][key], value), key


def test_eval_checkpoint_on_gt_boxes_equals_bbox_file_of_the_same_boxes(val5_dir, tmp_path, capsys):
    config_file = tmp_path / "val5_config.py"
    config_file.write_text(
        "from dataclasses import replace\n"
        "from training.config import DataConfig, DatasetConfig, load_config\n"
        f"val5 = DatasetConfig(annotation_file={str(val5_dir / 'annotations.json')!r},\n"
        f"                     image_root={str(val5_dir)!r})\n"
        "CONFIG = replace(load_config('tiny_synthetic'), data=DataConfig(val=val5, num_workers=0))\n"
    )
    config = load_config(config_file)
    torch.manual_seed(0)
    torch.save({"state_dict": build_model(config).state_dict()}, tmp_path / "model.pth")
    from training.data.instances import load_coco_wholebody

    instances = load_coco_wholebody(val5_dir / "annotations.json", val5_dir)
    detections = [
        {"image_id": i.image_id, "category_id": 1, "score": 1.0,
         "bbox": [float(i.box[0]), float(i.box[1]), float(i.box[2] - i.box[0]), float(i.box[3] - i.box[1])]}
        for i in instances
    ]  # fmt: skip
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    common = ["eval", "--config", str(config_file), "--checkpoint", str(tmp_path / "model.pth"), "--json",
              "--num-workers", "0"]  # fmt: skip
    outputs = []
    for extra in ([], ["--bbox-file", str(tmp_path / "dets.json")], ["--flip-test"]):
        capsys.readouterr()
        assert main([*common, *extra]) == 0
        outputs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    gt_boxes, bbox_file, flipped = outputs
    assert gt_boxes == bbox_file
    assert set(flipped) == set(gt_boxes)


def test_flip_simcc_reverses_x_bins_and_swaps_points():
    from dwpose_ctrl.keypoints import COCO_WHOLEBODY
    from training.inference import flip_simcc

    simcc_x = torch.zeros(1, 133, 10)
    simcc_y = torch.zeros(1, 133, 12)
    simcc_x[0, 9, 2] = 1.0  # left wrist at bin 2
    simcc_y[0, 9, 5] = 1.0
    flipped_x, flipped_y = flip_simcc(simcc_x, simcc_y, COCO_WHOLEBODY.flip_indices)
    assert flipped_x[0, 10].argmax() == 7 and flipped_x[0, 10].max() == 1.0  # right wrist, bin 10 - 1 - 2
    assert flipped_y[0, 10].argmax() == 5 and flipped_x[0, 9].max() == 0.0
