"""Pose sequences into a tiny random AnimateDiffControlNetPipeline (CPU, no downloads)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dwpose_ctrl.openpose import OpenPosePerson, read_json
from dwpose_ctrl.render import RenderOptions, render_map

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

WAVING_POSE = Path(__file__).resolve().parents[1] / "examples" / "poses" / "waving.json"
HEIGHT, WIDTH = 64, 48


def shifted(person: OpenPosePerson, dx: float) -> OpenPosePerson:
    """The person moved right by ``dx`` (a fraction of the canvas width)."""
    moved = {}
    for field in ("body", "feet", "face", "left_hand", "right_hand"):
        points = getattr(person, field).copy()
        points[:, 0] += dx
        moved[field] = points
    return OpenPosePerson(**moved)


def pose_frames(count: int, style: str) -> list[np.ndarray]:
    """``count`` maps of the example pose walking right, drawn in ``style`` at 48 x 64."""
    frame = read_json(WAVING_POSE)
    person = frame.people[0]
    options = RenderOptions(style=style)
    return [
        render_map(dataclasses.replace(frame, people=[shifted(person, 0.08 * i)]), (HEIGHT, WIDTH), options)
        for i in range(count)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("style", ["annotator", "mimicmotion"])
def test_rendered_pose_frames_reach_the_animatediff_controlnet(tmp_path, style) -> None:
    from PIL import Image
    from tiny_pipelines import build_tiny_animatediff_controlnet

    pipe = build_tiny_animatediff_controlnet(tmp_path / "tokenizer")
    pipe.set_progress_bar_config(disable=True)
    frames = pose_frames(3, style)
    assert len({frame.tobytes() for frame in frames}) == 3 and all(frame.any() for frame in frames)

    seen: list[torch.Tensor] = []

    def record(module, args, kwargs, output) -> None:
        seen.append(kwargs["controlnet_cond"].detach().clone())

    hook = pipe.controlnet.register_forward_hook(record, with_kwargs=True)
    try:
        result = pipe(
            "a person dancing",
            num_frames=len(frames),
            height=HEIGHT,
            width=WIDTH,
            conditioning_frames=[Image.fromarray(frame) for frame in frames],
            num_inference_steps=2,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        )
    finally:
        hook.remove()

    # One ControlNet call per step; classifier-free guidance stacks the frames twice, in order.
    expected = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    assert len(seen) == 2
    for cond in seen:
        assert cond.shape == (2 * len(frames), 3, HEIGHT, WIDTH)
        assert torch.equal(cond[: len(frames)], expected) and torch.equal(cond[len(frames) :], expected)
    latents = result.frames
    assert latents.shape == (1, 4, len(frames), HEIGHT // 8, WIDTH // 8)
    assert torch.isfinite(latents).all()
