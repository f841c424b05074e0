"""Checking a training set before the first step: every problem found at once, or the bad samples dropped.

A run that meets a missing image after hours of training has wasted them. :func:`check_instances`
looks at every instance up front: its image file exists, is a readable file, and starts like an
image Pillow can open (the header only, so a dataset of 100k+ images is checked in seconds to
minutes), and its box and keypoints are finite. Problems become a :class:`DatasetError` listing
all of them, or, when the user asks to skip bad samples, a warning and a smaller dataset.
An image that only turns out to be corrupt when it is decoded (a truncated JPEG) is handled the
same way by the dataset at load time.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from training.data.instances import PersonInstance

SKIP_FLAG = "--skip-bad-samples"
SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class SampleProblem:
    """Where a bad sample is (a file, or a file and an annotation) and what is wrong with it."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


class DatasetError(ValueError):
    """The dataset has bad samples; the message lists them (the first :data:`SHOWN_PROBLEMS`)."""

    def __init__(self, problems: Sequence[SampleProblem], what: str = "the training data"):
        self.problems = list(problems)
        super().__init__(
            describe_problems(self.problems, what)
            + f"; fix them, or pass {SKIP_FLAG} (Python: skip_bad_samples=True) to drop them"
        )


def describe_problems(problems: Sequence[SampleProblem], what: str = "the training data") -> str:
    """One message naming how many problems there are and the first few of them."""
    shown = "; ".join(str(problem) for problem in problems[:SHOWN_PROBLEMS])
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    return f"{len(problems)} bad sample(s) in {what}: {shown}{more}"


def image_problem(path: str) -> str | None:
    """Why an image file cannot be used (missing, a folder, unreadable, empty, not an image), or None."""
    try:
        with open(path, "rb") as handle:
            if not handle.read(1):
                return "the image file is empty (0 bytes)"
            handle.seek(0)
            with Image.open(handle) as image:
                width, height = image.size
    except FileNotFoundError:
        return "the image file is missing"
    except IsADirectoryError:
        return "the image path is a folder, not a file"
    except PermissionError:
        return "the image file cannot be read: permission denied"
    except (UnidentifiedImageError, SyntaxError, ValueError):
        return "the image file is corrupt or not an image (no image format recognises it)"
    except Image.DecompressionBombError as error:
        return f"the image is too large to decode safely ({error})"
    except OSError as error:
        return f"the image file cannot be read: {error.strerror or error}"
    if width < 1 or height < 1:
        return f"the image is empty ({width}x{height} pixels)"
    return None


def instance_problem(instance: PersonInstance) -> str | None:
    """Why an instance's numbers cannot be trained on (non-finite box or keypoints), or None."""
    if not np.isfinite(instance.box).all():
        return f"annotation {instance.annotation_id} has a box that is not finite ({instance.box.tolist()})"
    if not np.isfinite(instance.keypoints).all():
        return f"annotation {instance.annotation_id} has keypoints that are NaN or infinite"
    return None


def check_instances(
    instances: Sequence[PersonInstance], workers: int = 8
) -> tuple[list[PersonInstance], list[SampleProblem]]:
    """The usable instances and the problems of the others; each image file is looked at once."""
    paths = sorted({instance.image_path for instance in instances})
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
        file_problems = dict(zip(paths, pool.map(image_problem, paths), strict=True))
    good: list[PersonInstance] = []
    problems: list[SampleProblem] = []
    reported_files: set[str] = set()
    for instance in instances:
        path = instance.image_path
        problem = file_problems[path]
        if problem is not None:
            if path not in reported_files:
                reported_files.add(path)
                problems.append(SampleProblem(path, problem))
            continue
        problem = instance_problem(instance)
        if problem is not None:
            problems.append(SampleProblem(path, problem))
            continue
        good.append(instance)
    return good, problems


def resolve_problems(
    instances: list[PersonInstance], problems: Sequence[SampleProblem], skip: bool, what: str
) -> list[PersonInstance]:
    """Raise :class:`DatasetError` for ``problems``, or (``skip``) warn once and keep ``instances``."""
    if problems and not skip:
        raise DatasetError(problems, what)
    if problems:
        warnings.warn(
            describe_problems(problems, what) + f"; {SKIP_FLAG}: these samples are left out", stacklevel=2
        )
    return instances
