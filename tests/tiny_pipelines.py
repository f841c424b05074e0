"""Tiny, randomly initialised diffusers ControlNet pipelines for tests (CPU, no downloads).

``save_tiny_sd_controlnet(path)`` and ``save_tiny_sdxl_controlnet(path)`` write a pipeline folder
laid out like a Hub repository (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``controlnet/`` ...), so examples and notebooks load it exactly as they load the
real models: ``ControlNetModel.from_pretrained(path / "controlnet")`` and
``StableDiffusionControlNetPipeline.from_pretrained(path, controlnet=...)``.

Shapes follow the real models where it matters for the integration: the VAE downsamples by 8
(four blocks), so pipeline sizes must be multiples of 8 as with Stable Diffusion, and the
ControlNet's conditioning embedding downsamples by 8 too. Everything else is as small as the
layers allow. The CLIP tokenizer is a byte-level BPE built from a vocabulary and merges file
written here.

``save_posing_detector(folder)`` writes a matching stand-in for the DWPose models: a "YOLOX"
that reports fixed person boxes and a "pose model" that puts the example pose
(``examples/poses/waving.json``) into every crop (ONNX graphs from ``tests/onnx_graphs.py``), so
``DWposeDetector(det_model=..., pose_model=...)`` draws real-looking maps without the official
weights, which cannot be downloaded here.

Run ``python tests/tiny_pipelines.py OUT_DIR`` to write both pipelines to ``OUT_DIR/sd`` and
``OUT_DIR/sdxl`` and the two detector graphs to ``OUT_DIR/detector``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
    UNet2DConditionModel,
)
from onnx_graphs import constant_yolox, peak_pose, simcc_peaks, yolox_grid, yolox_raw
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

EXAMPLE_POSE = Path(__file__).resolve().parents[1] / "examples" / "poses" / "waving.json"

TEXT_HIDDEN = 32
TOKENIZER_MAX_LENGTH = 77
# Words given their own token, so that test prompts tokenise to a few ids instead of characters.
TOKENIZER_WORDS = ("a", "person", "dancing", "photo", "of", "an", "astronaut", "standing", "portrait")


def _byte_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP byte-level alphabet: every byte mapped to a printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def write_tiny_clip_tokenizer_files(folder: Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of a small CLIP BPE tokenizer into ``folder``.

    The vocabulary holds every byte-level character (alone and as a word end ``</w>``), the
    merges that build ``TOKENIZER_WORDS`` and the two special tokens.
    """
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_byte_to_unicode().values())
    vocab_tokens = alphabet + [ch + "</w>" for ch in alphabet]
    merges: list[str] = []
    for word in TOKENIZER_WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
            if merged not in vocab_tokens:
                vocab_tokens.append(merged)
            pieces = [merged, *pieces[2:]]
    vocab_tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def tiny_clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer over the small vocabulary written into ``folder``."""
    write_tiny_clip_tokenizer_files(folder)
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"),
        merges=str(folder / "merges.txt"),
        model_max_length=TOKENIZER_MAX_LENGTH,
    )


def _text_config(vocab_size: int, projection_dim: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TOKENIZER_MAX_LENGTH,
        projection_dim=projection_dim or TEXT_HIDDEN,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_act="gelu",
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
    )


def _unet_and_controlnet(*, sdxl: bool) -> tuple[UNet2DConditionModel, ControlNetModel]:
    common = {
        "block_out_channels": (16, 32),
        "layers_per_block": 1,
        "in_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "norm_num_groups": 8,
        "attention_head_dim": (2, 4),
        "cross_attention_dim": TEXT_HIDDEN * (2 if sdxl else 1),
    }
    if sdxl:
        common |= {
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "transformer_layers_per_block": (1, 1),
            # pooled text embedding of text_encoder_2 + six time ids of addition_time_embed_dim each
            "projection_class_embeddings_input_dim": TEXT_HIDDEN + 6 * 8,
        }
    unet = UNet2DConditionModel(
        sample_size=8,
        out_channels=4,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **common,
    )
    controlnet = ControlNetModel(conditioning_embedding_out_channels=(4, 4, 4, 4), **common)
    _randomise_zero_convolutions(controlnet)
    return unet, controlnet


def _randomise_zero_convolutions(controlnet: ControlNetModel) -> None:
    """Give the ControlNet's zero-initialised output convolutions random weights.

    A freshly built ControlNet adds exactly zero to the UNet (its "zero convolutions"), so the
    control image would have no effect; trained ControlNets have non-zero weights there.
    """
    zero_convolutions = [
        controlnet.controlnet_cond_embedding.conv_out,
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    ]
    with torch.no_grad():
        for conv in zero_convolutions:
            conv.weight.normal_(std=1.0)
            conv.bias.normal_(std=1.0)


def sdxl_shared_parts(tokenizer: CLIPTokenizer) -> dict:
    """What every tiny SDXL pipeline shares: the VAE, both text encoders on one tokenizer, the scheduler."""
    return {
        "vae": _vae(),
        "text_encoder": CLIPTextModel(_text_config(len(tokenizer))),
        "text_encoder_2": CLIPTextModelWithProjection(
            _text_config(len(tokenizer), projection_dim=TEXT_HIDDEN)
        ),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer,
        "scheduler": EulerDiscreteScheduler(),
    }


def build_tiny_sd_controlnet(tokenizer_dir: Path, seed: int = 0) -> StableDiffusionControlNetPipeline:
    """A random SD 1.5-shaped ControlNet pipeline; ``tokenizer_dir`` receives the tokenizer files."""
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    unet, controlnet = _unet_and_controlnet(sdxl=False)
    return StableDiffusionControlNetPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(len(tokenizer))),
        tokenizer=tokenizer,
        unet=unet,
        controlnet=controlnet,
        scheduler=EulerDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sdxl_controlnet(tokenizer_dir: Path, seed: int = 0) -> StableDiffusionXLControlNetPipeline:
    """A random SDXL-shaped ControlNet pipeline with two text encoders and tokenizers."""
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    unet, controlnet = _unet_and_controlnet(sdxl=True)
    return StableDiffusionXLControlNetPipeline(
        **sdxl_shared_parts(tokenizer), unet=unet, controlnet=controlnet, add_watermarker=False
    )


def save_tiny_sd_controlnet(path: Path) -> Path:
    """Build the tiny SD ControlNet pipeline and save it under ``path`` (returned)."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        build_tiny_sd_controlnet(Path(tokenizer_dir)).save_pretrained(path)
    return path


def save_tiny_sdxl_controlnet(path: Path) -> Path:
    """Build the tiny SDXL ControlNet pipeline and save it under ``path`` (returned)."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        build_tiny_sdxl_controlnet(Path(tokenizer_dir)).save_pretrained(path)
    return path


def tiny_motion_adapter(unet_config):
    """A random AnimateDiff ``MotionAdapter`` whose blocks match a UNet with config ``unet_config``."""
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=unet_config["block_out_channels"],
        motion_layers_per_block=unet_config["layers_per_block"],
        motion_num_attention_heads=2,
        motion_norm_num_groups=unet_config["norm_num_groups"],
        motion_max_seq_length=32,
    )


def build_tiny_animatediff_controlnet(tokenizer_dir: Path, seed: int = 0):
    """A random AnimateDiff ControlNet pipeline (SD 1.5-shaped UNet, ControlNet and a motion
    adapter whose blocks match the UNet's), for pose-sequence tests: frames go in through
    ``conditioning_frames=``; ``tokenizer_dir`` receives the tokenizer files."""
    from diffusers import AnimateDiffControlNetPipeline

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    unet, controlnet = _unet_and_controlnet(sdxl=False)
    motion_adapter = tiny_motion_adapter(unet.config)
    return AnimateDiffControlNetPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(len(tokenizer))),
        tokenizer=tokenizer,
        unet=unet,
        motion_adapter=motion_adapter,
        controlnet=controlnet,
        scheduler=EulerDiscreteScheduler(),
    )


# COCO-WholeBody body index -> OpenPose-18 index of the same joint (neck, OpenPose 1, is derived).
_COCO_BODY_FROM_OPENPOSE = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)
# Feet (left big toe, left small toe, left heel, right ...) as offsets from the ankles, in pixels.
_FOOT_OFFSETS = ((14.0, 14.0), (26.0, 10.0), (-6.0, 8.0), (-14.0, 14.0), (-26.0, 10.0), (6.0, 8.0))

DETECTOR_INPUT_SIZE = (64, 64)
POSE_INPUT_SIZE = (64, 48)
# Person boxes (x1, y1, x2, y2) as fractions of the detector's square letterbox input, where the
# image sits at the top left: ONE_PERSON suits a roughly square portrait, TWO_PERSONS a group
# picture about twice as wide as high (two portraits side by side).
ONE_PERSON = ((0.2, 0.05, 0.8, 0.95),)
TWO_PERSONS = ((0.02, 0.02, 0.48, 0.5), (0.52, 0.02, 0.98, 0.5))


def example_pose_wholebody(path: Path = EXAMPLE_POSE) -> np.ndarray:
    """The example OpenPose JSON pose as 133 COCO-WholeBody points, normalised to its canvas."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    person = data["people"][0]
    size = np.array([data["canvas_width"], data["canvas_height"]], dtype=np.float64)

    def points(key: str) -> np.ndarray:
        return np.array(person[key], dtype=np.float64).reshape(-1, 3)[:, :2]

    body = points("pose_keypoints_2d")
    left_ankle, right_ankle = body[13], body[10]
    feet = [(left_ankle if index < 3 else right_ankle) + offset for index, offset in enumerate(_FOOT_OFFSETS)]
    wholebody = np.concatenate(
        [
            body[list(_COCO_BODY_FROM_OPENPOSE)],
            np.array(feet),
            points("face_keypoints_2d")[:68],
            points("hand_left_keypoints_2d"),
            points("hand_right_keypoints_2d"),
        ]
    )
    return wholebody / size


def _boxes_raw(boxes: tuple[tuple[float, float, float, float], ...]) -> np.ndarray:
    """Raw YOLOX output with one confident person per box, each on its own stride-8 anchor."""
    height, width = DETECTOR_INPUT_SIZE
    cells, strides = yolox_grid(DETECTOR_INPUT_SIZE)
    anchors = {}
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2 * width, (y1 + y2) / 2 * height
        box_w, box_h = (x2 - x1) * width, (y2 - y1) * height
        stride = 8
        cell = (int(cx // stride), int(cy // stride))
        anchor = int(
            np.flatnonzero((cells[:, 0] == cell[0]) & (cells[:, 1] == cell[1]) & (strides[:, 0] == 8))[0]
        )
        anchors[anchor] = (
            cx / stride - cell[0],
            cy / stride - cell[1],
            float(np.log(box_w / stride)),
            float(np.log(box_h / stride)),
            1.0,
            0.95,
        )
    return yolox_raw(anchors, DETECTOR_INPUT_SIZE)


def save_posing_detector(
    folder: Path, boxes: tuple[tuple[float, float, float, float], ...] = ONE_PERSON
) -> tuple[Path, Path]:
    """Write ``det.onnx`` (fixed ``boxes``) and ``pose.onnx`` (the example pose in every crop).

    Returns ``(det_model, pose_model)`` paths for ``DWposeDetector``. Every keypoint scores 1.0.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    det_path = constant_yolox(folder / "det.onnx", _boxes_raw(boxes), DETECTOR_INPUT_SIZE)
    height, width = POSE_INPUT_SIZE
    pose = example_pose_wholebody()
    x_bins = np.clip(np.round(pose[:, 0] * 2 * width), 0, 2 * width - 1).astype(int)
    y_bins = np.clip(np.round(pose[:, 1] * 2 * height), 0, 2 * height - 1).astype(int)
    simcc_x, simcc_y = simcc_peaks(x_bins, y_bins, POSE_INPUT_SIZE)
    pose_path = peak_pose(folder / "pose.onnx", simcc_x, simcc_y, POSE_INPUT_SIZE)
    return det_path, pose_path


def save_tiny_motion_adapter(path: Path, unet_dir: Path, seed: int = 0) -> Path:
    """A random AnimateDiff ``MotionAdapter`` whose blocks match the UNet saved in ``unet_dir``
    (e.g. ``save_tiny_sd_controlnet(...) / "unet"``), saved under ``path`` (returned), so that
    ``AnimateDiffControlNetPipeline.from_pretrained(sd, motion_adapter=..., controlnet=...)`` loads."""
    torch.manual_seed(seed)
    tiny_motion_adapter(UNet2DConditionModel.load_config(unet_dir)).save_pretrained(path)
    return Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    print(save_tiny_sd_controlnet(args.out_dir / "sd"))
    print(save_tiny_sdxl_controlnet(args.out_dir / "sdxl"))
    print(*save_posing_detector(args.out_dir / "detector"))


if __name__ == "__main__":
    main()
