"""Image inputs at the edges: the pixel limit the user sets, and clear messages for odd files.

Issue 13 item 15 (``--max-pixels`` raises every limit on the way, Pillow's included) and the
input cases of item 18.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from render_fakes import blob_factory, blob_image

import dwpose_ctrl.inputs as inputs
from dwpose_ctrl.cli import main
from dwpose_ctrl.engines.item import JobSettings, decode_image
from dwpose_ctrl.engines.pose import RenderSettings
from dwpose_ctrl.render import draw_openpose
from dwpose_ctrl.resize import resolution_size


@pytest.fixture()
def small_limits(monkeypatch):
    """Scale both ceilings down: our default limit to 10,000 pixels, Pillow's to 4,000 (it refuses
    images over twice that), so a 200x200 photo (40,000 pixels) stands for a very large one."""
    monkeypatch.setattr(inputs, "MAX_PIXELS", 10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000)


def _photo(path, height=200, width=200):
    Image.fromarray(blob_image(height, width, [(60, 40, 50, 120)])).save(path)
    return path


def test_max_pixels_raises_every_limit_on_the_way(tmp_path, small_limits):
    photo = _photo(tmp_path / "big.png")
    out = tmp_path / "out"
    argv = [str(photo), "-o", str(out), "-q", "--json", "--overlay", "--report", str(tmp_path / "r.json")]
    native = ["--detect-resolution", "native", "--image-resolution", "native"]
    # below the image's size the refusal names the option
    assert main([*argv, *native, "--max-pixels", "39999"], blob_factory) == 1
    reason = json.loads((tmp_path / "r.json").read_text())["items"][0]["reason"]
    assert "more than --max-pixels 39999; raise the limit only for files you trust" in reason
    # raised above it, the photo is read, detected and drawn at its own size
    assert main([*argv, *native, "--max-pixels", "40000"], blob_factory) == 0
    assert Image.open(out / "big.png").size == (200, 200)
    assert Image.open(out / "big.overlay.png").size == (200, 200)
    assert json.loads((out / "big.json").read_text())["canvas_width"] == 200


def test_the_library_default_limit_is_read_when_used(small_limits):
    """Assigning dwpose_ctrl.inputs.MAX_PIXELS (the knob the messages name) changes every check."""
    with pytest.raises(ValueError, match="more than the limit of 10000"):
        inputs.to_rgb(np.zeros((200, 200, 3), np.uint8))
    with pytest.raises(ValueError, match="more than the limit of 10000"):
        resolution_size(100, 100, 512)
    frame = inputs_frame(200, 200)
    with pytest.raises(ValueError, match="more than 10000 pixels"):
        draw_openpose(frame)
    assert draw_openpose(frame, max_pixels=40_000).shape == (200, 200, 3)
    assert resolution_size(100, 100, 512, max_pixels=512 * 512) == (512, 512)


def inputs_frame(height: int, width: int):
    from dwpose_ctrl.openpose import to_openpose

    return to_openpose(np.zeros((0, 133, 2)), np.zeros((0, 133), np.float32), width, height)


def test_job_settings_carry_one_limit_to_the_render_settings():
    job = JobSettings(render=RenderSettings(detect_resolution=None), max_pixels=123_456)
    assert job.render.max_pixels == 123_456 and job.render.detect_resolution is None


def test_decode_image_opens_what_pillow_alone_would_refuse(tmp_path, small_limits):
    data = (_photo(tmp_path / "a.png")).read_bytes()
    assert decode_image(data, max_pixels=40_000).shape == (200, 200, 3)
    assert Image.MAX_IMAGE_PIXELS == 40_000  # raised to the limit asked for, never lowered
