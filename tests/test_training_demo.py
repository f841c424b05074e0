"""`python -m training demo`, much shortened: the JSON it prints and a falling loss."""

from __future__ import annotations

import json

import pytest

from training.__main__ import main


@pytest.mark.slow
def test_shortened_demo_prints_the_result_json_and_the_loss_falls(tmp_path, capsys):
    args = ["demo", "--work-dir", str(tmp_path), "--threads", "1", "--train-images", "32",
            "--eval-images", "16", "--warmup-iterations", "8", "--iterations", "24"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("body_ap", "body_ap50", "median_error_over_mean_pose", "median_error", "mean_pose_error"):
        assert isinstance(result[key], float), key
    assert 0 <= result["body_ap"] <= 1 and 0 <= result["body_ap50"] <= 1
    assert result["median_error_over_mean_pose"] == pytest.approx(
        result["median_error"] / result["mean_pose_error"]
    )
    assert result["iterations"] == 24 and result["warmup"]["iterations"] == 8
    assert set(result["warmup"]) >= {"body_ap", "median_error_over_mean_pose", "localises"}
    assert result["last_loss"] < result["first_loss"]
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert (tmp_path / "warmup" / "backbone.pth").is_file() and (tmp_path / "warmup" / "gate.json").is_file()


def test_demo_refuses_a_zero_iteration_count(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--work-dir", "unused", "--iterations", "0"])
    assert exit_info.value.code == 2
    assert "--iterations: must be at least 1, got 0" in capsys.readouterr().err
