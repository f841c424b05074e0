"""Shared test fixtures: the ../shared assets (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DWPOSE_CTRL_SHARED", ROOT.parent / "shared"))
ASSETS = SHARED / "assets"


def require_asset(relative: str) -> Path:
    """Path of a file under ../shared/assets, or skip the test when it is not there."""
    path = ASSETS / relative
    if not path.exists():
        pytest.skip(f"shared asset {relative} is not available ({ASSETS} missing)")
    return path


@pytest.fixture(scope="session")
def yolox_nano_path() -> Path:
    return require_asset("weights/yolox_nano.onnx")


@pytest.fixture(scope="session")
def val5_dir() -> Path:
    return require_asset("coco_wholebody_val5/annotations.json").parent


@pytest.fixture(scope="session")
def portraits_dir() -> Path:
    return require_asset("images/grace_hopper.jpg").parent


@pytest.fixture()
def hub_offline(monkeypatch, tmp_path) -> None:
    """No test may reach the network: the hub client runs offline, on an empty default cache, with
    no $DWPOSE_CTRL_HOME."""
    import huggingface_hub.constants

    from dwpose_ctrl.weights import HOME_ENV

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.delenv(HOME_ENV, raising=False)
