"""UBody: COCO-WholeBody-style annotations per scene over frames extracted from the videos.

Layout (as distributed, frames extracted as mmpose's converter does)::

    UBody/annotations/<scene>/<split>_annotations.json   COCO-WholeBody JSON per scene
    UBody/videos/<scene>/<video>.mp4                      the source videos
    UBody/images/<scene>/<video>/000001.png               frames, numbered from 1

Image ``file_name`` entries are relative to ``UBody/images``. Training uses 1 image in 10
(image ids that are multiples of the sampling interval; SPEC 9).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from dwpose_ctrl.files import atomic_path
from dwpose_ctrl.inputs import MAX_PIXELS
from dwpose_ctrl.keypoints import COCO_WHOLEBODY, KeypointMetadata
from dwpose_ctrl.video import check_frame_size
from training.data.instances import PersonInstance, load_annotation_file, load_coco_wholebody

UBODY_SCENES: tuple[str, ...] = (
    "Magic_show", "Entertainment", "ConductMusic", "Online_class", "TalkShow", "Speech", "Fitness",
    "Interview", "Olympic", "TVShow", "Singing", "SignLanguage", "Movie", "LiveVlog", "VideoConference",
)  # fmt: skip
UBODY_SAMPLE_INTERVAL = 10
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_FRAME_NAME = re.compile(r"^(?P<video>.+)/(?P<index>\d+)\.(?P<ext>png|jpg|jpeg)$")


def scene_annotation_files(root: str | os.PathLike, split: str = "train", scenes=None) -> list[Path]:
    """``annotations/<scene>/<split>_annotations.json`` of every (or every given) scene that has one."""
    root = Path(root)
    names = (
        scenes
        if scenes is not None
        else sorted(p.name for p in (root / "annotations").glob("*") if p.is_dir())
    )
    files = [root / "annotations" / scene / f"{split}_annotations.json" for scene in names]
    found = [path for path in files if path.is_file()]
    if not found:
        raise FileNotFoundError(
            f"no UBody {split} annotations under {root / 'annotations'} (scenes: {list(names)})"
        )
    return found


def load_ubody(
    root: str | os.PathLike,
    split: str = "train",
    scenes=None,
    metadata: KeypointMetadata = COCO_WHOLEBODY,
    sample_interval: int = UBODY_SAMPLE_INTERVAL,
    filter_instances: bool = True,
    problems: list | None = None,
) -> list[PersonInstance]:
    """Persons of every UBody scene of ``split``, frames sampled 1 in ``sample_interval`` by image id.

    ``problems``: see :func:`~training.data.instances.load_coco_wholebody`.
    """
    instances: list[PersonInstance] = []
    for annotation_file in scene_annotation_files(root, split, scenes):
        instances += load_coco_wholebody(
            annotation_file, Path(root) / "images", metadata, filter_instances, sample_interval, problems
        )
    return instances


def frames_to_extract(
    root: str | os.PathLike, split: str | None = None, sample_interval: int = 1
) -> dict[str, set[int]]:
    """Frame numbers (1-based) per ``<scene>/<video>`` that the annotation files reference.

    ``split=None`` reads every ``*_annotations.json``; ``sample_interval`` keeps image ids that are
    multiples of it (the frames training will read).
    """
    root = Path(root)
    pattern = f"{split}_annotations.json" if split else "*_annotations.json"
    needed: dict[str, set[int]] = defaultdict(set)
    for annotation_file in sorted((root / "annotations").glob(f"*/{pattern}")):
        images = load_annotation_file(annotation_file)["images"]
        for image in images:
            if image["id"] % sample_interval:
                continue
            match = _FRAME_NAME.match(image["file_name"].replace(os.sep, "/"))
            if match is None:
                raise ValueError(
                    f"{annotation_file}: file_name {image['file_name']!r} is not "
                    "'<scene>/<video>/<number>.png'"
                )
            needed[match["video"]].add(int(match["index"]))
    return dict(needed)


def extract_video_frames(
    video_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    frame_numbers: set[int] | None = None,
    image_format: str = "png",
    max_pixels: int = MAX_PIXELS,
) -> int:
    """Decode a video with PyAV and write frames as ``output_dir/000001.<format>`` (numbered from 1).

    ``frame_numbers`` limits the output to those frames (decoding stops after the last one).
    Existing files are kept. Returns the number of frames written. Frames of more than
    ``max_pixels`` pixels are refused (from the stream's header before decoding, then per frame).
    Each frame is written under a temporary name unique to this process, then renamed, so two
    extractions of the same video never write into each other's file.
    """
    import av
    import cv2

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    last = max(frame_numbers) if frame_numbers else None
    written = 0
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        where = f"{video_path}: the video frame"
        check_frame_size(stream.codec_context.width, stream.codec_context.height, max_pixels, where)
        stream.thread_type = "AUTO"
        for number, frame in enumerate(container.decode(stream), start=1):
            if last is not None and number > last:
                break
            check_frame_size(frame.width, frame.height, max_pixels, f"{video_path}: frame {number}")
            if frame_numbers is not None and number not in frame_numbers:
                continue
            target = output_dir / f"{number:06d}.{image_format}"
            if target.exists():
                continue
            encoded, data = cv2.imencode(f".{image_format}", frame.to_ndarray(format="bgr24"))
            if not encoded:
                raise OSError(f"could not encode frame {number} of {video_path} as {image_format}")
            with atomic_path(target) as temporary, open(temporary, "wb") as handle:
                handle.write(data.tobytes())
            written += 1
    return written


def extract_ubody_frames(
    root: str | os.PathLike,
    only_annotated: bool = True,
    split: str | None = None,
    sample_interval: int = 1,
    image_format: str = "png",
    progress: bool = True,
) -> int:
    """Extract the frames of every ``videos/<scene>/<video>.*`` to ``images/<scene>/<video>/``.

    With ``only_annotated`` only frames referenced by the annotation files (of ``split``, every
    ``sample_interval``-th image id) are written. Returns the number of frames written.
    """
    from tqdm import tqdm

    root = Path(root)
    videos = sorted(p for p in (root / "videos").glob("*/*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise FileNotFoundError(f"no videos under {root / 'videos'} (expected videos/<scene>/<video>.mp4)")
    needed = frames_to_extract(root, split, sample_interval) if only_annotated else None
    written = 0
    for video in tqdm(videos, desc="videos", disable=not progress):
        key = f"{video.parent.name}/{video.stem}"
        if needed is not None and key not in needed:
            continue
        frames = needed[key] if needed is not None else None
        written += extract_video_frames(video, root / "images" / key, frames, image_format)
    return written
