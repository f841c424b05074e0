"""Finding the inputs and deciding every output name before any work starts.

Discovery turns the command-line inputs (files, folders searched recursively, globs, ``s3://``
prefixes) into :class:`Source` records with a path relative to their input root; planning turns
each source into a :class:`WorkItem` naming all of its outputs below the output root, mirroring the
input tree.

Output names (documented in ``docs/cli.md``): the map of ``sub/a.jpg`` is ``sub/a.png``. When
several sources would claim the same output name (``a.jpg`` and ``a.png`` in one folder, or an input
named ``a.overlay.jpg`` next to ``a.jpg`` with ``--overlay``), every source involved keeps its full
file name in the stem instead: ``sub/a.jpg.png`` and ``sub/a.png.png``. If names still collide (two
input roots holding the same relative path), the stems involved get ``~`` plus the first 8 hex
digits of the SHA-1 of the source location. The rule depends only on the set of inputs, so a
resumed run plans exactly the same names. No output is ever written twice by one run.
"""

from __future__ import annotations

import errno
import glob as globlib
import hashlib
import os
import posixpath
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from dwpose_ctrl.arguments import check_flag
from dwpose_ctrl.engines.storage import Storage, file_kind_problem, is_url, join, walk_folders
from dwpose_ctrl.heif import HEIF_EXTENSIONS, HEIF_MISSING, enable_heif

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v", ".gif"})


@dataclass(frozen=True)
class VideoCodec:
    """How map videos are encoded: file extension, container format, PyAV encoder, pixel format."""

    extension: str
    container: str
    encoder: str
    pixel_format: str
    lossless: bool


#: ``h264`` (default): widely playable, lossy (colours shift slightly); the others are lossless.
VIDEO_CODECS: dict[str, VideoCodec] = {
    "h264": VideoCodec(".mp4", "mp4", "libx264", "yuv420p", lossless=False),
    "h264-lossless": VideoCodec(".mkv", "matroska", "libx264rgb", "rgb24", lossless=True),
    "ffv1": VideoCodec(".mkv", "matroska", "ffv1", "bgr0", lossless=True),
    "png": VideoCodec(".mov", "mov", "png", "rgb24", lossless=True),
}

METADATA_FILE = "metadata.jsonl"
METADATA_IMAGES = "images"


def media_kind(name: str) -> str | None:
    """``"image"``, ``"video"`` or None from a file name's extension (case-insensitive)."""
    extension = os.path.splitext(name)[1].lower()
    if extension in IMAGE_EXTENSIONS or extension in HEIF_EXTENSIONS:
        return "image"
    if extension in VIDEO_EXTENSIONS:
        return "video"
    return None


@dataclass(frozen=True)
class Source:
    """One input file: where it is, its path relative to its input root (``/``-separated), its kind."""

    location: str
    relative: str
    kind: str


@dataclass(frozen=True)
class Problem:
    """An input that cannot become a work item (missing, symlink loop, ...), with the reason."""

    location: str
    reason: str


@dataclass(frozen=True)
class OutputOptions:
    """Which outputs each item gets (flags must be real bools: ``"no"`` is refused, not True)."""

    json: bool = False
    overlay: bool = False
    frames: bool = False
    metadata: bool = False
    video_codec: str = "h264"

    def __post_init__(self) -> None:
        for name in ("json", "overlay", "frames", "metadata"):
            object.__setattr__(self, name, check_flag(name, getattr(self, name)))
        if not isinstance(self.video_codec, str):
            raise TypeError(f"video_codec must be a str, got {self.video_codec!r}")
        if self.video_codec not in VIDEO_CODECS:
            raise ValueError(
                f"unknown video codec {self.video_codec!r}; expected one of {sorted(VIDEO_CODECS)}"
            )


@dataclass(frozen=True)
class WorkItem:
    """A source and all of its planned outputs (absolute locations below the output root).

    ``required`` are the outputs that must all exist for the item to count as done; ``final`` is
    the one written last (the map), so that a killed run never leaves an item looking done.
    Videos also write per-frame files into ``frames_dir``, before ``final``.
    """

    source: Source
    stem: str
    final: str
    json: str | None = None
    overlay: str | None = None
    photo_copy: str | None = None
    frames_dir: str | None = None
    required: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        return self.source.kind


# discovery ---------------------------------------------------------------------------------------
def _has_magic(text: str) -> bool:
    return any(character in text for character in "*?[")


def _glob_base(pattern: str) -> str:
    parts = pattern.replace("\\", "/").split("/")
    base: list[str] = []
    for part in parts:
        if _has_magic(part):
            break
        base.append(part)
    return "/".join(base) or "."


def _stat_problem(path: str) -> str | None:
    """Why a local path cannot be read as a file (or listed as a folder), or None when it can."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop (the link points back to itself)"
        if os.path.islink(path):
            return f"broken symlink to {os.readlink(path)!r}"
        return f"cannot read: {error.strerror or error}"
    return file_kind_problem(mode)


def _walk_local(root: str, excluded: list[str]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """Every media file below ``root`` as (path, relative), following symlinks without looping."""
    files: list[tuple[str, str]] = []
    problems: list[Problem] = []
    visited: set[str] = {os.path.realpath(root)}
    # each folder's resolved path, built from its parent's (realpath per folder would make a deep
    # tree cost depth squared system calls)
    real_paths: dict[str, str] = {root: os.path.realpath(root)}

    def on_error(error: OSError) -> None:
        problems.append(Problem(error.filename or root, f"cannot list folder: {error.strerror or error}"))

    for folder, subfolders, names in walk_folders(root, follow_links=True, on_error=on_error):
        kept = []
        for name in sorted(subfolders):
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            linked = os.path.islink(path)
            real = os.path.realpath(path) if linked else os.path.join(real_paths[folder], name)
            real_paths[path] = real
            if _inside_any(real, excluded):
                continue
            if real in visited:
                problems.append(
                    Problem(path, "symlink loop: this folder was already visited through another path")
                )
                continue
            visited.add(real)
            kept.append(name)
        subfolders[:] = kept
        for name in sorted(names):
            if name.startswith("."):
                continue
            if media_kind(name) is None:
                if os.path.islink(os.path.join(folder, name)):
                    reason = _stat_problem(os.path.join(folder, name))
                    if reason and "loop" in reason:
                        problems.append(Problem(os.path.join(folder, name), reason))
                continue
            path = os.path.join(folder, name)
            reason = _stat_problem(path)
            if reason is not None:
                problems.append(Problem(path, reason))
                continue
            if os.path.isdir(path):
                continue
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            files.append((path, relative))
    return files, problems


def discover(
    inputs: Iterable[str], storage: Storage | None = None, exclude: Iterable[str] = ()
) -> tuple[list[Source], list[Problem]]:
    """Expand ``inputs`` into sources (sorted, deduplicated) and problems.

    Folders are searched recursively for known image and video extensions, skipping hidden files
    and folders (names starting with ``.``, such as ``.git`` or macOS ``._photo.jpg``); files named
    explicitly are taken whatever their extension (a non-image then fails with its reason).
    Anything found below an ``exclude`` folder (the output root) by a folder or a glob is never
    read; a file named explicitly is always tried. An input that finds files, but only inside an
    ``exclude`` folder, is a problem (the run would silently do nothing). Only regular files are
    read: FIFOs, devices and sockets are problems.
    """
    storage = storage or Storage()
    exclude = list(exclude)
    excluded = [os.path.realpath(path) for path in exclude if not is_url(path)]
    excluded_urls = [url.rstrip("/") + "/" for url in exclude if is_url(url)]
    found: dict[tuple[str, str], Source] = {}
    problems: list[Problem] = []
    skipped_inside_output = [0]

    def add(location: str, relative: str, explicit: bool) -> None:
        kind = media_kind(location) or ("image" if explicit else None)
        if kind is None:
            return
        if not explicit and any(part.startswith(".") for part in relative.split("/")):
            return
        if not explicit and is_url(location):
            if any(location.startswith(prefix) for prefix in excluded_urls):
                skipped_inside_output[0] += 1
                return
        elif not explicit and _inside_any(os.path.realpath(location), excluded):
            skipped_inside_output[0] += 1
            return
        if os.path.splitext(location)[1].lower() in HEIF_EXTENSIONS and not enable_heif():
            problems.append(Problem(location, HEIF_MISSING))
            return
        found.setdefault((location, relative), Source(location, relative, kind))

    for entry in inputs:
        found_before, skipped_before, problems_before = len(found), skipped_inside_output[0], len(problems)
        _discover_entry(entry, storage, excluded, add, problems, skipped_inside_output)
        nothing_else = len(found) == found_before and len(problems) == problems_before
        if nothing_else and skipped_inside_output[0] > skipped_before:
            problems.append(
                Problem(
                    entry,
                    "everything it names is inside the output folder, which is never read as input; "
                    "give an output folder (-o) outside the input",
                )
            )
    sources = sorted(found.values(), key=lambda source: (source.relative, source.location))
    return sources, problems


def _inside_any(real: str, folders: list[str]) -> bool:
    return any(real == folder or real.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)


def _discover_entry(
    entry: str, storage: Storage, excluded: list[str], add, problems: list[Problem], skipped: list[int]
) -> None:
    """Add the sources of one input through ``add``; append its problems; count folders skipped."""
    if is_url(entry):
        if _has_magic(entry):
            base = _glob_base(entry)
            for url in storage.glob(entry):
                add(url, posixpath.relpath(url, base), explicit=False)
        elif storage.is_dir(entry):
            root = entry.rstrip("/")
            for url in storage.list_files(root):
                add(url, posixpath.relpath(url, root), explicit=False)
        elif storage.exists(entry):
            add(entry, posixpath.basename(entry), explicit=True)
        else:
            problems.append(Problem(entry, "no such file or folder"))
        return
    if os.path.isdir(entry):
        if _inside_any(os.path.realpath(entry), excluded):
            skipped[0] += 1
            return
        files, walk_problems = _walk_local(entry, excluded)
        problems.extend(walk_problems)
        for path, relative in files:
            add(path, relative, explicit=False)
    elif os.path.lexists(entry):
        reason = _stat_problem(entry)
        if reason is not None:
            problems.append(Problem(entry, reason))
        else:
            add(entry, os.path.basename(entry), explicit=True)
    elif _has_magic(entry):
        base = _glob_base(entry)
        try:
            matches = sorted(globlib.glob(entry, recursive=True))
        except RecursionError:
            problems.append(Problem(entry, "folders nested too deep for a pattern; give the folder instead"))
            return
        if not matches:
            problems.append(Problem(entry, "the pattern matches no file"))
        for match in matches:
            if os.path.isdir(match):
                if _inside_any(os.path.realpath(match), excluded):
                    skipped[0] += 1
                    continue
                files, walk_problems = _walk_local(match, excluded)
                problems.extend(walk_problems)
                for path, _ in files:
                    add(path, os.path.relpath(path, base).replace(os.sep, "/"), explicit=False)
            elif media_kind(match) is not None and (reason := _stat_problem(match)) is not None:
                problems.append(Problem(match, reason))
            else:
                add(match, os.path.relpath(match, base).replace(os.sep, "/"), explicit=False)
    else:
        problems.append(Problem(entry, "no such file or folder"))


# planning ----------------------------------------------------------------------------------------
def _outputs_for(source: Source, stem: str, options: OutputOptions) -> dict[str, str]:
    """The relative output names of one source for one stem."""
    names: dict[str, str] = {}
    if source.kind == "video":
        extension = VIDEO_CODECS[options.video_codec].extension
        names["final"] = stem + extension
        if options.overlay:
            names["overlay"] = stem + ".overlay" + extension
        if options.json or options.frames:
            names["frames_dir"] = stem
        if options.json:
            names["json"] = stem + ".json"  # the whole clip as one sequence JSON
    else:
        names["final"] = stem + ".png"
        if options.json:
            names["json"] = stem + ".json"
        if options.overlay:
            names["overlay"] = stem + ".overlay.png"
        if options.metadata:
            names["photo_copy"] = f"{METADATA_IMAGES}/{_photo_copy_name(source, stem)}"
    return names


def _photo_copy_name(source: Source, stem: str) -> str:
    """The photo copy keeps the input's relative name unless its stem had to get a hash."""
    if stem in (posixpath.splitext(source.relative)[0], source.relative):
        return source.relative
    return stem + posixpath.splitext(source.relative)[1]


def _claims(names: dict[str, str]) -> list[str]:
    """Names an item claims (a frames folder claims its whole prefix)."""
    return [name + "/" if key == "frames_dir" else name for key, name in names.items()]


def _colliding(claims_by_index: dict[int, list[str]], reserved: Iterable[str] = ()) -> set[int]:
    owners: dict[str, set[int]] = defaultdict(set)
    for index, claims in claims_by_index.items():
        for claim in claims:
            owners[claim.lower()].add(index)
    for name in reserved:
        owners[name.lower()].add(-1)
    bad: set[int] = set()
    for claim, indices in owners.items():
        if len(indices) > 1:
            bad |= indices
        # a name inside a folder that is another item's file ("c.png/x.png" and the map "c.png")
        # or folder claim ("clip/" of a video's frames) collides with it
        parts = claim.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            for owner in (folder, folder + "/"):
                if owner in owners:
                    bad |= indices | owners[owner]
    bad.discard(-1)
    return bad


def plan(
    sources: list[Source], output_root: str, options: OutputOptions, problems: list[Problem] | None = None
) -> list[WorkItem]:
    """One work item per source with collision-free output names (see the module docstring).

    Names are compared case-insensitively so that the plan is safe on macOS and Windows disks.
    A source that can get no free name (its outputs would land inside ``metadata.jsonl``, e.g. from
    an input folder of that name) is appended to ``problems`` and gets no item; without a
    ``problems`` list, ``ValueError`` is raised instead.
    """
    reserved = [METADATA_FILE] if options.metadata else []
    stems = {index: posixpath.splitext(source.relative)[0] for index, source in enumerate(sources)}
    for attempt in range(3):
        names = {index: _outputs_for(source, stems[index], options) for index, source in enumerate(sources)}
        bad = _colliding({index: _claims(value) for index, value in names.items()}, reserved)
        if not bad:
            break
        for index in bad:
            source = sources[index]
            if attempt == 0:
                stems[index] = source.relative
            else:
                digest = hashlib.sha1(source.location.encode("utf-8", "surrogateescape")).hexdigest()[:8]
                stems[index] = f"{source.relative}~{digest}"
    else:
        if problems is None:
            raise ValueError(
                f"could not find distinct output names for: {[sources[i].location for i in sorted(bad)]}"
            )
        problems.extend(Problem(sources[i].location, _no_free_name(names[i])) for i in sorted(bad))
    items = []
    for index, source in enumerate(sources):
        if index in bad:
            continue
        relative = names[index]
        absolute = {key: join(output_root, *value.split("/")) for key, value in relative.items()}
        required = [absolute[key] for key in ("json", "overlay", "photo_copy") if key in absolute]
        required.append(absolute["final"])
        items.append(
            WorkItem(
                source=source,
                stem=stems[index],
                final=absolute["final"],
                json=absolute.get("json"),
                overlay=absolute.get("overlay"),
                photo_copy=absolute.get("photo_copy"),
                frames_dir=absolute.get("frames_dir"),
                required=tuple(required),
            )
        )
    return items


def _no_free_name(names: dict[str, str]) -> str:
    """Why a source got no output name (the reason of its :class:`Problem`)."""
    if any(name.lower().startswith(METADATA_FILE + "/") for name in names.values()):
        return (
            f"its outputs would be written inside {METADATA_FILE}, the file --metadata writes (an input "
            "folder of that name); rename that folder, or render without --metadata"
        )
    return "no output name that differs from every other output could be found; rename the file"


def frame_name(index: int) -> str:
    """Per-frame file stem inside a video's frames folder: ``000042``."""
    return f"{index:06d}"


def is_done(item: WorkItem, storage: Storage) -> bool:
    """An item is done when every required output is a file (each was written atomically)."""
    return all(storage.is_file(location) for location in item.required)
