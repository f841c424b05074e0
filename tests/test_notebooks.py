"""The notebooks run as users run them, with only the parameters cell pointed at tiny local models."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import nbformat
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "examples" / "notebooks"
REAL_MODEL_IDS = {
    "model_id": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "controlnet_id": "lllyasviel/control_v11p_sd15_openpose",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_pipelines import save_posing_detector, save_tiny_sd_controlnet

    folder = tmp_path_factory.mktemp("notebook_models")
    sd = save_tiny_sd_controlnet(folder / "sd")
    det_model, pose_model = save_posing_detector(folder / "detector")
    return {
        "model_id": str(sd),
        "controlnet_id": str(sd / "controlnet"),
        "det_model": str(det_model),
        "pose_model": str(pose_model),
        "num_inference_steps": 2,
    }


def _parameters_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    return tagged[0]


def _execute(name: str, parameters: dict, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    import papermill

    # the kernel must import dwpose_ctrl from this checkout even when it is not installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    output = tmp_path / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(output),
        parameters=parameters,
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=300,
    )
    return nbformat.read(output, as_version=4)


def _images(notebook: nbformat.NotebookNode) -> list[Image.Image]:
    images = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                images.append(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))))
    return images


@pytest.mark.parametrize(
    "name", ["pose_guided_generation.ipynb", "pose_editing.ipynb", "pose_video_animation.ipynb"]
)
def test_notebooks_default_to_the_real_models_and_are_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    source = _parameters_cell(notebook).source
    if name == "pose_guided_generation.ipynb":
        # model ids default by family: None in the parameters cell, the real ids in the table
        assert 'family = "sd15"' in source
        assert "model_id = None" in source and "controlnet_id = None" in source
        code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
        for value in REAL_MODEL_IDS.values():
            assert f'"{value}"' in code
    else:
        for key, value in REAL_MODEL_IDS.items():
            assert f'{key} = "{value}"' in source
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def _tiny_family(tmp_path_factory, family: str) -> dict:
    from tiny_control_pipelines import save_tiny

    model = save_tiny(family, tmp_path_factory.mktemp("notebook_models") / family)
    return {"model_id": str(model), "controlnet_id": str(model / "controlnet")}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd15", "sdxl-union", "flux"])
def test_pose_guided_generation_notebook(family, tiny, tmp_path, tmp_path_factory, monkeypatch):
    parameters = {**tiny, "family": family, "resolution": 64, "detect_resolution": 128}
    if family != "sd15":
        parameters |= _tiny_family(tmp_path_factory, family)
    executed = _execute("pose_guided_generation.ipynb", parameters, tmp_path, monkeypatch)
    images = _images(executed)
    # maps (control, overlay, body only), the single result, then the grid of photos, maps, results
    assert len(images) == 5
    control, overlay, body_only, result, grid = images
    assert control.size == overlay.size == body_only.size == result.size
    assert control.size == (64, 64)  # grace_hopper (512 x 600) at resolution 64: sides in 64s
    assert grid.size == (2 * 64, 3 * 64)  # photos, fitted maps, results: one column per photo
    text = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    argument = "image" if family == "sd15" else "control_image"
    assert f"{argument} (2, 3, 64, 64) torch.float32 cpu" in text


@pytest.mark.slow
def test_pose_editing_notebook(tiny, tmp_path, monkeypatch):
    parameters = {
        "model_id": tiny["model_id"],
        "controlnet_id": tiny["controlnet_id"],
        "num_inference_steps": 2,
        "resolution": 64,
        "output_dir": str(tmp_path / "edits"),
    }
    executed = _execute("pose_editing.ipynb", parameters, tmp_path, monkeypatch)
    original_map, edited_map, grid = _images(executed)
    assert original_map.size == edited_map.size == (64, 96)
    assert original_map.tobytes() != edited_map.tobytes()
    assert grid.size == (128, 192)
    edited = json.loads((tmp_path / "edits" / "edited.json").read_text())
    assert (edited["canvas_width"], edited["canvas_height"]) == (512, 768)


@pytest.mark.slow
def test_pose_editing_notebook_from_a_detected_photo(tiny, tmp_path, monkeypatch):
    parameters = {
        **tiny,
        "image": "../images/grace_hopper.jpg",
        "resolution": 64,
        "output_dir": str(tmp_path / "edits"),
    }
    executed = _execute("pose_editing.ipynb", parameters, tmp_path, monkeypatch)
    assert len(_images(executed)) == 3
    edited = json.loads((tmp_path / "edits" / "edited.json").read_text())
    assert (edited["canvas_width"], edited["canvas_height"]) == (512, 600)


@pytest.mark.slow
def test_pose_video_animation_notebook(tiny, tmp_path, monkeypatch):
    from tiny_pipelines import save_tiny_motion_adapter

    adapter = save_tiny_motion_adapter(tmp_path / "motion_adapter", Path(tiny["model_id"]) / "unet")
    parameters = {
        **tiny,
        "motion_adapter_id": str(adapter),
        "num_frames": 4,
        "resolution": 64,
        "detect_resolution": 128,
        "output_dir": str(tmp_path / "animation"),
    }
    executed = _execute("pose_video_animation.ipynb", parameters, tmp_path, monkeypatch)
    character, reference_map, driving_map, first_map, grid = _images(executed)
    assert character.size == reference_map.size
    assert first_map.height == driving_map.height == 64
    assert first_map.size == (64, 64)  # astronaut.png is square: its canvas, not the clip's
    assert grid.size == (4 * 64, 2 * 64)  # 4 conditioning frames above, the animation below
    aligned = json.loads((tmp_path / "animation" / "aligned.json").read_text())
    assert len(aligned) == 4
    assert {(frame["canvas_width"], frame["canvas_height"]) for frame in aligned} == {
        Image.open(NOTEBOOKS.parent / "images" / "astronaut.png").size
    }
    assert Image.open(tmp_path / "animation" / "animation.gif").size == (64, 64)
