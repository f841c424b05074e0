"""Image inputs at the edges: the pixel limit the user sets, and clear messages for odd files.

Issue 13 item 15 (``--max-pixels`` raises every limit on the way, Pillow's included) and the
input cases of item 18.
"""

from __future__ import annotations

import json
import subprocess
import sys

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


# --- item 18: odd files and odd argument types ---


def test_a_truncated_jpeg_path_names_the_file(tmp_path):
    photo = tmp_path / "cut.jpg"
    Image.fromarray(blob_image(120, 160, [(10, 10, 40, 60)])).save(photo, quality=95)
    photo.write_bytes(photo.read_bytes()[:600])
    with pytest.raises(ValueError, match=r"cannot read '.*cut\.jpg': the image is truncated or corrupt"):
        inputs.to_rgb(photo)
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        inputs.to_rgb(str(photo))


@pytest.fixture()
def tiny_detector(tmp_path):
    from onnx_graphs import constant_yolox, peak_pose, simcc_peaks, yolox_raw

    from dwpose_ctrl import DWposeDetector

    det = constant_yolox(tmp_path / "det.onnx", yolox_raw({}, (64, 64)), (64, 64))
    pose = peak_pose(tmp_path / "pose.onnx", *simcc_peaks(np.zeros(133, int), np.zeros(133, int), (64, 48)))
    return lambda **options: DWposeDetector(det_model=det, pose_model=pose, mode="reference", **options)


@pytest.mark.parametrize("name", ["include_body", "include_hand", "include_face", "include_foot", "overlay"])
def test_flags_must_be_booleans(tiny_detector, name):
    detector = tiny_detector()
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(TypeError, match=rf"{name} must be True or False, got 'no' \(str\)"):
        detector(image, **{name: "no"})
    assert detector(image, output_type="np", **{name: np.bool_(False)}).shape == (512, 512, 3)


def test_render_options_refuse_non_bool_flags():
    from dwpose_ctrl.render import RenderOptions

    with pytest.raises(TypeError, match=r"RenderOptions.include_body must be True or False, got 'no'"):
        RenderOptions(include_body="no")
    assert RenderOptions(include_face=np.bool_(False)).include_face == np.bool_(False)


def test_numpy_integers_are_integers(tiny_detector):
    assert tiny_detector(max_persons=np.int64(2)).max_persons == 2
    for bad in (0, 2.0, True, "2"):
        with pytest.raises(ValueError, match="max_persons must be a positive integer"):
            tiny_detector(max_persons=bad)
    from dwpose_ctrl.models.rtmpose import build_rtmpose
    from dwpose_ctrl.runtime import OnnxBackend

    assert OnnxBackend("x.onnx", max_batch=np.int32(3))._max_batch == 3
    assert build_rtmpose("t", (np.int64(64), np.int64(64)), np.int64(17)).num_keypoints == 17


def _heic(path, color=(200, 30, 30), size=(96, 64)):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    Image.new("RGB", size, color).save(path, format="HEIF", quality=-1)
    return path


def test_heic_photos_are_read_through_pillow_heif(tmp_path):
    photo = _heic(tmp_path / "phone.HEIC")
    # a fresh process, where nothing has registered the plugin yet: both read paths must do it
    script = (
        "import sys; from dwpose_ctrl.inputs import to_rgb; "
        "from dwpose_ctrl.engines.item import decode_image, read_image_file; "
        "data = read_image_file(open(sys.argv[1], 'rb')); "
        "print(decode_image(data)[10, 10].tolist(), to_rgb(sys.argv[1])[10, 10].tolist())"
    )
    done = subprocess.run([sys.executable, "-c", script, str(photo)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[200,", "30,", "30]", "[200,", "30,", "30]"]
    rgb = inputs.to_rgb(photo)
    assert rgb.shape == (64, 96, 3) and tuple(rgb[10, 10]) == (200, 30, 30)
    out = tmp_path / "out"
    assert (
        main([str(tmp_path), "-o", str(out), "-q", "--report", str(tmp_path / "r.json")], blob_factory) == 0
    )
    assert Image.open(out / "phone.png").size == (768, 512)


def test_heic_without_the_plugin_is_listed_with_the_reason(tmp_path, monkeypatch):
    import dwpose_ctrl.heif as heif

    (tmp_path / "in").mkdir()
    photo = _heic(tmp_path / "in" / "phone.heic")
    Image.fromarray(blob_image(64, 96, [(10, 10, 20, 40)])).save(tmp_path / "in" / "plain.png")
    monkeypatch.setattr(heif, "_enabled", False)
    report = tmp_path / "r.json"
    assert (
        main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--report", str(report)], blob_factory)
        == 1
    )
    items = {item["location"]: item for item in json.loads(report.read_text())["items"]}
    assert items[str(photo)]["status"] == "failed"
    assert "needs the pillow-heif plugin" in items[str(photo)]["reason"]
    assert "pip install 'dwpose-ctrl[heif]'" in items[str(photo)]["reason"]
    assert items[str(tmp_path / "in" / "plain.png")]["status"] == "done"
    with pytest.raises(ValueError, match="needs the pillow-heif plugin"):
        inputs.to_rgb(photo)


def test_deeply_nested_json_is_a_value_error(tmp_path):
    from dwpose_ctrl.openpose import loads_frame
    from training.data.instances import read_json_file

    nested = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_frame(nested)
    from dwpose_ctrl.cli import build_parser

    args = build_parser().parse_args(["x.jpg", "--storage-option", f"key={nested}"])
    assert args.storage_option == [("key", nested)]  # kept as text, as any value that is not JSON
    (tmp_path / "deep.json").write_text(nested)
    with pytest.raises(ValueError, match=r"deep\.json is nested too deeply"):
        read_json_file(tmp_path / "deep.json")


def test_a_deeply_nested_metadata_row_is_refused_with_its_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metadata.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    photo = _photo(tmp_path / "a.png", 64, 64)
    assert main([str(photo), "-o", str(out), "-q", "--metadata"], blob_factory) == 2
    assert "metadata.jsonl line 1 is not a metadata row" in capsys.readouterr().err
