"""The benchmark harness runs end to end on one image with tiny models (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_graphs import pose_like

from benchmarks import harness, report
from benchmarks.alternatives.common import detection_shape, encode_yolox_output, letterbox_ratio
from benchmarks.suite import SuiteResults
from dwpose_ctrl.person_detection import decode_yolox, person_boxes


def test_encoded_yolox_output_decodes_to_the_given_boxes():
    boxes = np.array([[10.0, 20.0, 110.0, 300.0], [200.0, 40.5, 260.25, 180.0], [5.0, 5.0, 30.0, 60.0]])
    ratio = letterbox_ratio((512, 704), (640, 640))
    raw = encode_yolox_output(boxes, (640, 640), ratio)
    decoded, scores = decode_yolox(raw, (640, 640), ratio)
    found = person_boxes(decoded, scores)
    np.testing.assert_allclose(found.boxes, boxes, atol=1e-3)
    np.testing.assert_allclose(found.scores, [0.95, 0.94, 0.93], atol=1e-6)


def test_detection_shape_follows_the_annotator_rule():
    assert detection_shape(425, 640, 512) == (512, 768)
    assert detection_shape(1000, 500, 512) == (1024, 512)


def _quiet(message: str) -> None:
    """The harness's progress lines are not needed in tests."""


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, yolox_nano_path, portraits_dir):
    work = tmp_path_factory.mktemp("bench")
    pose = pose_like(work / "pose.onnx", input_size=(64, 48))
    image = portraits_dir / "grace_hopper.jpg"
    tools = [
        harness.ToolRun("ours", "ours", "ours", yolox_nano_path, pose, {"measure_networks": True}),
        harness.ToolRun("ours-per-person", "per person", "ours", yolox_nano_path, pose, {"per_person": True}),
    ]
    fixed = {image.name: [[60.0, 40.0, 300.0, 500.0], [10.0, 10.0, 90.0, 200.0]]}
    configuration = harness.Configuration("S", "smoke", "tiny models", tools, fixed_boxes=fixed)
    results = harness.run_configuration(
        configuration,
        [image],
        rounds=1,
        alt_python=Path("unused"),
        work_dir=work,
        network_repeats=1,
        memory_repeats=1,
        log=_quiet,
    )
    return configuration, results, image


def test_harness_runs_every_tool_on_the_fixed_boxes(smoke_run):
    _, results, image = smoke_run
    for result in results.values():
        assert result.persons == [2]
        assert len(result.rounds) == 1
        assert set(result.stage_ms_per_image()) == set(harness.STAGES)
        assert len(result.peak_rss_samples_mib) == 2  # the timed worker and one fresh process
        assert result.peak_rss_mib == np.median(result.peak_rss_samples_mib) > 0
        output = harness.load_output(result, image)
        assert output["keypoints"].shape == (2, 133, 2)
        assert output["control_map"].dtype == np.uint8
    networks = results["ours"].networks
    assert networks is not None and len(networks["detector_s"]) == 1
    for result in results.values():
        network = result.rounds[0]["network_s"][0]
        assert 0 < network < result.rounds[0]["e2e_s"][0]
        assert result.network_share > 1


def test_batched_and_per_person_outputs_are_identical(smoke_run):
    _, results, image = smoke_run
    comparison = harness.compare_outputs(results["ours"], results["ours-per-person"], [image])
    assert comparison.keypoints_identical and comparison.scores_identical and comparison.maps_identical


def test_report_renders_the_configuration(smoke_run):
    configuration, results, image = smoke_run
    comparison = harness.compare_outputs(results["ours"], results["ours-per-person"], [image])
    machine = {
        "cpu": "test cpu",
        "logical_cpus": 2,
        "usable_cpus": 2,
        "memory_gib": 1.0,
        "avx2": True,
        "avx512f": False,
        "avx512_vnni": False,
        "load_average": (0.0, 0.0, 0.0),
        "versions": {"python": "3"},
        "git_commit": "abc",
    }
    suite = SuiteResults(started="now", machine_before=machine, rounds=1, images=[image])
    suite.configurations = [configuration]
    suite.results = {"S": results}
    suite.comparisons = [("S", "ours", "ours-per-person", comparison)]
    text = report.render_results(suite)
    assert "## Configuration S: smoke" in text
    assert "| ours | " in text and "| per person | " in text
    assert (
        "identical keypoints and maps: ours vs ours-per-person | S | "
        "keypoints yes, scores yes, maps yes | yes |" in text
    )
    assert "end to end <= 1.1x the two networks' own time (inside the same passes) | S |" in text
    assert "end to end <= 1.1x the two networks alone (timed separately, prepared inputs) | S |" in text


def test_refresh_included_sections_replaces_only_the_included_part(tmp_path, monkeypatch):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    section = folder / "section.md"
    section.write_text("## New section\n\nnew numbers\n")
    monkeypatch.setattr(report, "BENCHMARKS", folder)
    monkeypatch.setattr(report, "INCLUDED_SECTIONS", (("Section", section), ("Missing", folder / "no.md")))
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmarks\n\nmeasured 1.23x\n\n<!-- included from section.md -->\n## Old section\n\nold\n\n"
        "## Exact commands\n\nrun it\n"
    )
    report.refresh_included_sections(results)
    assert results.read_text() == (
        "# Benchmarks\n\nmeasured 1.23x\n\n<!-- included from benchmarks/section.md -->\n"
        "## New section\n\nnew numbers\n"
        "\n## Missing\n\n`benchmarks/no.md` has not been written yet.\n\n## Exact commands\n\nrun it\n"
    )


def test_refresh_included_sections_refuses_a_report_without_them(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\nno sections\n")
    with pytest.raises(ValueError, match="regenerate it with `python -m benchmarks`"):
        report.refresh_included_sections(results)


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_on_the_cpu(tmp_path, yolox_nano_path, val5_dir, portraits_dir):
    """``python -m benchmarks.gpu --device cpu --quick`` runs every pipeline of the GPU benchmark."""
    pytest.importorskip("torch")
    from benchmarks import gpu

    output = tmp_path / "gpu.md"
    rates = gpu.main(["--device", "cpu", "--quick", "--frames", "2", "--output", str(output)])
    baseline = "float32, one frame and one person per call (baseline)"
    assert set(rates) == {"float32, batched", baseline}
    assert all(rate[kind] > 0 for rate in rates.values() for kind in ("images", "video"))
    text = output.read_text()
    assert "| float32, batched | 2 |" in text and f"| {baseline} | 1 |" in text
    assert text.count("pose model: TorchBackend on cpu, torch.float32") == 2
    assert "onnxruntime distributions installed: onnxruntime " in text


def test_refreshing_the_included_sections_twice_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "BENCHMARKS", tmp_path / "benchmarks")
    section = tmp_path / "benchmarks" / "section.md"
    section.parent.mkdir()
    section.write_text("## A study\n\nnumbers\n\n### Exact commands\n\n    python study.py\n")
    monkeypatch.setattr(report, "INCLUDED_SECTIONS", (("A study", section),))
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmarks\n\nmeasured\n\n"
        + "\n".join(report._included_sections())
        + "\n## Exact commands\n\nsuite\n"
    )
    first = report.refresh_included_sections(results).read_text()
    assert report.refresh_included_sections(results).read_text() == first
    assert first.count("## Exact commands\n") == 1 + 1  # the section's "###" line and the suite's
    assert first.endswith("## Exact commands\n\nsuite\n")
