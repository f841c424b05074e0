"""Pose-pretrained backbones (registry, sha256 prefix, offline message, strict loading), the
random-backbone warning and the warm-up's hand-over to the recipe."""

from __future__ import annotations

import hashlib
import urllib.error
import warnings
from dataclasses import replace

import pytest
import torch
from test_models_rtmpose import expected_rtmpose_shapes

from dwpose_ctrl.models import build_rtmpose
from dwpose_ctrl.weights import ModelFileError
from training import pretrained
from training.config import ModelConfig, TrainConfig, load_config
from training.engine import RandomBackboneWarning, build_model, default_task
from training.pretrained import check_sha256_prefix, load_backbone, resolve_backbone_checkpoint
from training.warmup import bypass_gau, hand_over, save_backbone

# mmpose's RTMPose whole-body configs (projects/rtmpose, configs/wholebody_2d_keypoint), by size.
PUBLISHED = {
    "t": "cspnext-tiny_udp-aic-coco_210e-256x192-cbed682d_20230130.pth",
    "s": "cspnext-s_udp-aic-coco_210e-256x192-92f5a029_20230130.pth",
    "m": "cspnext-m_udp-aic-coco_210e-256x192-f2f7d6f6_20230130.pth",
    "l": "cspnext-l_udp-aic-coco_210e-256x192-273b7631_20230130.pth",
    "x": "cspnext-x_udp-body7_210e-384x288-d28b58e6_20230529.pth",
}


@pytest.mark.parametrize(
    "config_name, size",
    [("rtmpose_t_256x192", "t"), ("rtmpose_s_256x192", "s"), ("rtmpose_m_256x192", "m"),
     ("rtmpose_l_256x192", "l"), ("rtmpose_l_384x288", "l"), ("rtmpose_x_256x192", "x"),
     ("rtmpose_x_384x288", "x")],
)  # fmt: skip
def test_published_configs_name_the_official_pretrained_backbone(config_name, size):
    model = load_config(config_name).model
    entry = pretrained.PRETRAINED_BACKBONES[model.init_checkpoint]
    assert entry.filename == PUBLISHED[size] and model.init_kind == "backbone"
    assert entry.url == "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/" + PUBLISHED[size]


def test_distillation_students_load_the_pretrained_backbone():
    from training.distill import load_distill_config

    student = load_distill_config("distill_l_to_t_256x192", 1).train.model
    assert pretrained.PRETRAINED_BACKBONES[student.init_checkpoint].filename == PUBLISHED["t"]


def _fake_checkpoint(folder, name: str, payload: bytes = b"not a real checkpoint"):
    path = folder / name
    path.write_bytes(payload)
    return path


def test_sha256_prefix_in_the_file_name_is_checked(tmp_path):
    payload = b"fake backbone"
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    good = _fake_checkpoint(tmp_path, f"cspnext-fake_udp-{prefix}_20230130.pth", payload)
    assert check_sha256_prefix(good) == good
    bad = _fake_checkpoint(tmp_path, PUBLISHED["t"], payload)
    with pytest.raises(
        ModelFileError, match=rf"starts with {prefix}, its name says cbed682d.*model.init_checkpoint"
    ):
        resolve_backbone_checkpoint(bad)
    plain = _fake_checkpoint(tmp_path, "backbone.pth", payload)
    assert resolve_backbone_checkpoint(plain) == plain  # no hash in the name: nothing to check


def test_offline_error_names_the_file_and_the_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("DWPOSE_CTRL_HOME", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelFileError) as error:
        resolve_backbone_checkpoint("cspnext-tiny_udp-aic-coco_210e-256x192")
    message = str(error.value)
    assert PUBLISHED["t"] in message and "--set model.init_checkpoint=" in message
    assert "python -m training warmup" in message


def test_registered_file_found_locally_and_a_corrupt_download_is_removed(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DWPOSE_CTRL_HOME", str(home))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(pretrained, "sha256_of", lambda path: "92f5a029" + "0" * 56)
    local = _fake_checkpoint(home, PUBLISHED["s"])
    assert resolve_backbone_checkpoint("cspnext-s_udp-aic-coco_210e-256x192") == local

    def corrupt_download(url, dst, hash_prefix=None, progress=True):
        _fake_checkpoint(tmp_path / "hub" / "checkpoints", PUBLISHED["m"])

    monkeypatch.setattr(torch.hub, "download_url_to_file", corrupt_download)
    with pytest.raises(ModelFileError, match="corrupt"):
        resolve_backbone_checkpoint(PUBLISHED["m"])
    assert not (tmp_path / "hub" / "checkpoints" / PUBLISHED["m"]).exists()


def _mmpose_cspnext_checkpoint(size: str, generator: torch.Generator) -> dict:
    """An mmpose-format pretrained CSPNeXt file: backbone.* (names written out independently in
    test_models_rtmpose), a heatmap head and meta data, random values."""
    shapes = expected_rtmpose_shapes(size, 256, 192)
    state = {
        key: torch.rand(shape, generator=generator)
        for key, shape in shapes.items()
        if key.startswith("backbone.")
    }
    state.update({key: torch.tensor(7) for key in state if key.endswith("num_batches_tracked")})
    state["head.final_layer.weight"] = torch.rand(17, 384, 1, 1, generator=generator)
    state["head.final_layer.bias"] = torch.rand(17, generator=generator)
    return {"meta": {"mmpose_version": "1.0.0rc0"}, "state_dict": state}


def test_strict_backbone_loading_from_an_mmpose_checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(0)
    checkpoint = _mmpose_cspnext_checkpoint("t", generator)
    path = tmp_path / "cspnext-tiny.pth"
    torch.save(checkpoint, path)
    config = TrainConfig(model=ModelConfig(size="t", input_size=(256, 192), init_checkpoint=str(path)))
    model = build_model(config)
    loaded = model.backbone.state_dict()
    for key, value in checkpoint["state_dict"].items():
        if key.startswith("backbone."):
            assert torch.equal(loaded[key[len("backbone.") :]], value), key

    missing = dict(checkpoint["state_dict"])
    del missing["backbone.stage4.2.final_conv.conv.weight"]
    with pytest.raises(ValueError, match=r"1 tensors missing.*stage4\.2\.final_conv"):
        load_backbone(build_rtmpose("t").backbone, missing, "cut.pth")
    extra = {**checkpoint["state_dict"], "backbone.stage5.0.conv.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"1 unexpected.*stage5"):
        load_backbone(build_rtmpose("t").backbone, extra, "extra.pth")
    with pytest.raises(ValueError, match="another model size"):
        load_backbone(build_rtmpose("s").backbone, checkpoint["state_dict"], "tiny.pth")


def test_random_backbone_warns_and_points_at_the_warmup():
    config = TrainConfig(model=ModelConfig(size="t", input_size=(64, 64), keypoints="coco_body"))
    with pytest.warns(RandomBackboneWarning, match="python -m training warmup"):
        default_task(config)


def test_warmup_hands_over_the_backbone_and_a_fresh_head(tmp_path):
    config = TrainConfig(model=ModelConfig(size="t", input_size=(64, 64), keypoints="coco_body"))
    warmed = bypass_gau(build_rtmpose("t", (64, 64), 17))
    assert "head.gau.uv.weight" not in warmed.state_dict()
    with torch.no_grad():
        for parameter in warmed.parameters():
            parameter.add_(0.5)  # stands for training: every tensor differs from a fresh build
    path = save_backbone(warmed, tmp_path / "backbone.pth")
    handed = hand_over(config, path)
    assert handed.model.init_checkpoint == str(path) and handed.model.init_kind == "backbone"
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomBackboneWarning)
        model = default_task(handed).model
    torch.manual_seed(3)
    fresh = build_rtmpose("t", (64, 64), 17)
    for key, value in warmed.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    for key, value in fresh.head.state_dict().items():
        assert torch.equal(model.head.state_dict()[key], value), key
    assert float(model.head.final_layer.weight.std()) == pytest.approx(0.001, rel=0.05)


def test_warmup_config_uses_body_keypoints_no_augmentation_and_a_random_backbone():
    from training.data.transforms import AugmentationConfig
    from training.warmup import warmup_config

    recipe = load_config("rtmpose_t_256x192")
    warm = warmup_config(recipe)
    assert warm.model.keypoints == "coco_body" and warm.model.init_checkpoint is None
    assert warm.augmentation == AugmentationConfig.none() == warm.final_augmentation
    assert (warm.model.size, warm.model.input_size, warm.data.train) == ("t", (256, 192), recipe.data.train)
    with pytest.raises(ValueError, match="held-out set"):
        warmup_config(replace(recipe, data=replace(recipe.data, val=None)))
