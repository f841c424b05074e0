"""The SDXL-Union, Flux-Union and SD3 example scripts: --help, and end to end on tiny local models."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dwpose_ctrl.detector import DWposeDetector
from dwpose_ctrl.diffusers_utils import fit_control_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GRACE = EXAMPLES / "images" / "grace_hopper.jpg"
SCRIPTS = {"sdxl_union_openpose": "sdxl-union", "flux_union_openpose": "flux", "sd3_openpose": "sd3"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{script}.py"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--model-id", "--controlnet-id", "--cpu-offload", "--dtype", "--width", "--fit"):
        assert option in done.stdout


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(EXAMPLES))
        for name in [*SCRIPTS, "example_utils"]:
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def detector_paths(tmp_path_factory):
    from tiny_pipelines import save_posing_detector

    return save_posing_detector(tmp_path_factory.mktemp("posing"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_end_to_end(script, example, detector_paths, tmp_path, capsys):
    from tiny_control_pipelines import save_tiny

    model = save_tiny(SCRIPTS[script], tmp_path / "model")
    args = ["--image", str(GRACE), "--resolution", "64", "--detect-resolution", "128"]
    args += ["--width", "64", "--height", "96", "--steps", "2", "--output-dir", str(tmp_path / "out")]
    args += ["--model-id", str(model), "--controlnet-id", str(model / "controlnet")]
    args += ["--det-model", str(detector_paths[0]), "--pose-model", str(detector_paths[1])]
    if script == "sd3_openpose":
        args.append("--drop-t5")  # the tiny SD3 has no T5 encoder
    example(script).main(args)
    expected = fit_control_image(
        DWposeDetector(*detector_paths)(Image.open(GRACE), detect_resolution=128, image_resolution=64), 64, 96
    )
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out" / "control.png")), np.asarray(expected)
    )
    assert Image.open(tmp_path / "out" / "result.png").size == (64, 96)
    # the local folder is not a known id: the Union mode comes from the model's architecture
    mode = {"sdxl_union_openpose": "[0]", "flux_union_openpose": "4", "sd3_openpose": "None"}[script]
    assert f"control_mode {mode})" in capsys.readouterr().out


def test_examples_refuse_half_a_size(example, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        example("sd3_openpose").main(["--width", "64", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
