"""End to end on tiny synthetic data: `distill` -> `self-distill` -> `export` -> DWposeDetector.

Everything goes through ``python -m training`` (in-process), the training engine and the model
zoo's loaders and exporter.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dwpose_ctrl.models import build_rtmpose, compose_stage2, load_model, load_state_dict
from training.__main__ import main as training_main
from training.config import ModelConfig
from training.data.synthetic import SyntheticConfig, generate_synthetic_dataset
from training.distill import TeacherConfig, load_distill_config, load_teacher, run_stage

INPUT_SIZE = (64, 64)
COMMON = ["--no-progress", "--device", "cpu", "--set", "train.data.batch_size=4"]


@pytest.fixture(scope="module")
def pipeline_dirs(tmp_path_factory):
    """Synthetic data, a random RTMPose-s teacher checkpoint, and the stage-1 and stage-2 runs."""
    root = tmp_path_factory.mktemp("distill")
    generate_synthetic_dataset(
        root / "synthetic", SyntheticConfig(num_images=4, image_size=(128, 128), max_persons=2, seed=3)
    )
    torch.manual_seed(0)
    teacher = build_rtmpose("s", INPUT_SIZE, 133)
    torch.save({"state_dict": teacher.state_dict()}, root / "teacher_s.pth")
    stage1, stage2 = root / "stage1", root / "stage2"
    assert (
        training_main(
            [
                "distill",
                "--config",
                "distill_tiny_synthetic",
                "--data-root",
                str(root),
                "--work-dir",
                str(stage1),
                "--set",
                f"teacher.checkpoint={str(root / 'teacher_s.pth')!r}",
                "--set",
                "teacher.size='s'",
                "--set",
                "train.schedule.max_epochs=2",
                *COMMON,
            ]
        )
        == 0
    )
    assert (
        training_main(
            [
                "self-distill",
                "--config",
                "self_distill_tiny_synthetic",
                "--data-root",
                str(root),
                "--work-dir",
                str(stage2),
                "--set",
                f"teacher.checkpoint={str(stage1 / 'last.pth')!r}",
                *COMMON,
            ]
        )
        == 0
    )
    return root, stage1, stage2


def test_stage1_logs_every_term_and_ships_the_student(pipeline_dirs):
    root, stage1, _ = pipeline_dirs
    log = (stage1 / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert {"loss", "loss_gt", "loss_fea", "loss_logit", "distill_decay", "grad_norm"} <= set(header)
    decays = sorted({float(row.split(",")[header.index("distill_decay")]) for row in log[1:]})
    assert decays == [0.5, 1.0]  # r(t) = 1 - epoch / 2 for epochs 0 and 1
    checkpoint = torch.load(stage1 / "last.pth", weights_only=True)
    assert any(k.startswith("distill_losses.loss_fea.align.") for k in checkpoint["task"])
    assert any(k.startswith("teacher.backbone.") for k in checkpoint["task"])
    student = load_model(stage1 / "last.pth")
    assert (student.size, student.input_size) == ("t", INPUT_SIZE)
    teacher_state = torch.load(root / "teacher_s.pth", weights_only=True)["state_dict"]
    for name, value in teacher_state.items():
        assert torch.equal(checkpoint["task"][f"teacher.{name}"], value), name


def test_stage2_changes_only_the_head_and_ships_teacher_backbone_plus_head(pipeline_dirs):
    _, stage1, stage2 = pipeline_dirs
    stage1_model = load_state_dict(stage1 / "last.pth")
    shipped = load_state_dict(stage2 / "last.pth")
    assert set(shipped) == set(stage1_model)
    for name, value in stage1_model.items():
        if name.startswith("backbone."):
            assert torch.equal(shipped[name], value), name
    head_changed = [
        n for n, v in stage1_model.items() if n.startswith("head.") and not torch.equal(shipped[n], v)
    ]
    assert head_changed
    log = (stage2 / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert "loss_gt" not in header and "loss_fea" not in header and "loss_logit" in header
    # The distiller checkpoint composes the same way through the official-checkpoint loader.
    task_state = torch.load(stage2 / "last.pth", weights_only=True)["ema"]["module"]
    for name, value in compose_stage2(task_state).items():
        assert torch.equal(shipped[name], value), name


def test_export_then_dwpose_detector_runs_the_distilled_model(pipeline_dirs, yolox_nano_path, portraits_dir):
    from dwpose_ctrl.detector import DWposeDetector

    root, _, stage2 = pipeline_dirs
    out = root / "exported"
    assert training_main(["export", "--checkpoint", str(stage2 / "last.pth"), "--out", str(out)]) == 0
    onnx_path = out / "last.onnx"
    assert onnx_path.is_file() and (out / "last.safetensors").is_file()
    detector = DWposeDetector(det_model=yolox_nano_path, pose_model=onnx_path)
    image = cv2.cvtColor(cv2.imread(str(portraits_dir / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    persons = detector.estimate(image)
    assert len(persons) >= 1
    keypoints = np.asarray(persons[0].keypoints)
    assert keypoints.shape[0] == 133
    # The ONNX model is the shipped network: same outputs as PyTorch on a crop-sized batch.
    import onnxruntime as ort

    batch = np.random.default_rng(0).normal(size=(2, 3, *INPUT_SIZE)).astype(np.float32)
    onnx_x, onnx_y = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"input": batch}
    )
    with torch.no_grad():
        torch_x, torch_y = load_model(stage2 / "last.pth")(torch.from_numpy(batch))
    np.testing.assert_allclose(onnx_x, torch_x.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(onnx_y, torch_y.numpy(), rtol=1e-5, atol=1e-4)


def test_teacher_from_the_official_mmpose_checkpoint_matches_mmpose_outputs():
    from conftest import require_asset

    checkpoint = require_asset("fixtures/rtmpose-t_256x192_mmpose_random.pth")
    expected = np.load(require_asset("fixtures/rtmpose-t_256x192_mmpose_random_out.npz"))
    teacher = load_teacher(
        TeacherConfig(checkpoint=str(checkpoint), size="t"), ModelConfig(size="t", input_size=(256, 192))
    )
    inputs = expected["input"]
    with torch.no_grad():
        simcc_x, simcc_y = teacher.eval()(torch.from_numpy(inputs))
    np.testing.assert_allclose(simcc_x.numpy(), expected["simcc_x"], atol=1e-4)
    np.testing.assert_allclose(simcc_y.numpy(), expected["simcc_y"], atol=1e-4)


def test_teacher_mismatch_and_missing_checkpoint_are_clear_errors(tmp_path):
    torch.save({"state_dict": build_rtmpose("t", (64, 64), 17).state_dict()}, tmp_path / "t17.pth")
    with pytest.raises(ValueError, match="keypoints"):
        load_teacher(
            TeacherConfig(checkpoint=str(tmp_path / "t17.pth")), ModelConfig(size="t", input_size=(64, 64))
        )
    with pytest.raises(ValueError, match="RTMPose-s"):
        load_teacher(
            TeacherConfig(checkpoint=str(tmp_path / "t17.pth"), size="s"),
            ModelConfig(size="t", input_size=(64, 64)),
        )
    with pytest.raises(FileNotFoundError, match="train the teacher first"):
        load_teacher(TeacherConfig(checkpoint=str(tmp_path / "absent.pth")), ModelConfig(size="t"))


def test_config_files_load_for_their_stage_only():
    for name in ("distill_x_to_l_384x288", "distill_l_to_t_256x192"):
        config = load_distill_config(name, 1)
        assert config.train.optim.clip_grad_norm == 1.0
        assert config.feature_weight == 7e-5 and config.logit_weight == 0.1 and config.beta == 10.0
    stage2 = load_distill_config("self_distill_t_256x192", 2)
    assert stage2.logit_weight == 1.0 and stage2.head_init == "scratch"
    assert stage2.train.schedule.max_epochs == 60
    with pytest.raises(TypeError, match="Stage2Config"):
        load_distill_config("distill_l_to_t_256x192", 2)
    with pytest.raises(FileNotFoundError, match="distill_l_to_t_256x192"):
        load_distill_config("distill_nothing", 1)


def _ddp_stage2_worker(rank: int, world_size: int, port: int, root: str) -> None:
    import os

    from training.config import apply_overrides

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    torch.set_num_threads(1)
    config = apply_overrides(
        load_distill_config("self_distill_tiny_synthetic", 2),
        [
            f"train.data.data_root={root!r}",
            "train.data.batch_size=2",
            "train.data.val=None",
            f"teacher.checkpoint={str(Path(root) / 'teacher_t.pth')!r}",
        ],
    )
    summary = run_stage(config, Path(root) / "ddp_run", device="cpu", progress=False)
    torch.save({k: v.detach() for k, v in summary.task.state_dict().items()}, Path(root) / f"rank{rank}.pth")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_stage2_under_two_process_gloo_ddp(tmp_path):
    import socket

    import torch.multiprocessing as mp

    generate_synthetic_dataset(
        tmp_path / "synthetic", SyntheticConfig(num_images=4, image_size=(128, 128), max_persons=2, seed=5)
    )
    torch.manual_seed(0)
    teacher = build_rtmpose("t", INPUT_SIZE, 133)
    torch.save({"state_dict": teacher.state_dict()}, tmp_path / "teacher_t.pth")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_stage2_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    first = torch.load(tmp_path / "rank0.pth", weights_only=True)
    second = torch.load(tmp_path / "rank1.pth", weights_only=True)
    for name, value in teacher.state_dict().items():
        assert torch.equal(first[f"teacher.{name}"], value), name
        assert torch.equal(second[f"teacher.{name}"], value), name
    head = [k for k in first if k.startswith("student.head.")]
    assert head and all(torch.equal(first[k], second[k]) for k in head)
    assert any(not torch.equal(first[k], teacher.state_dict()[k.removeprefix("student.")]) for k in head)
