"""Where files live: local paths and object storage (``s3://``, ``gs://``, ...) behind one small API.

Local paths use the operating system directly. URLs with a scheme go through fsspec (``s3fs`` for
``s3://``), the filesystem layer Ray Data and pyarrow also use. Every write is atomic: on a local
disk the bytes go to a hidden temporary file in the destination folder, which is then renamed over
the final name (``os.replace``); an object store only shows an object once its upload is complete.
So a file under its final name is always whole, whenever the process is killed. New files get the
mode a plain ``open()`` gives (``0o666`` less the umask); a replaced file keeps its mode.

Only regular files are read (:meth:`Storage.open_input`): a FIFO, a device such as ``/dev/zero`` or
a socket is refused at once instead of blocking or never ending. These local rules live in
:mod:`dwpose_ctrl.files`, which the library and the trainer use too. :func:`output_lock` keeps a
second run out of an output folder that a run is writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dwpose_ctrl.engines.report import EngineError
from dwpose_ctrl.extras import require
from dwpose_ctrl.files import PARTIAL_SUFFIX as PARTIAL_SUFFIX
from dwpose_ctrl.files import NotRegularFileError as NotRegularFileError
from dwpose_ctrl.files import (
    atomic_path,
    create_temporary,
    open_regular_file,
    read_at_most,
    written_by_live_process,
)
from dwpose_ctrl.files import file_kind_problem as file_kind_problem


def make_folders(folder: str) -> None:
    """``os.makedirs(folder, exist_ok=True)`` without recursion, so any depth works."""
    missing = []
    current = os.path.abspath(folder)
    while not os.path.isdir(current):
        missing.append(current)
        up = os.path.dirname(current)
        if up == current:
            break
        current = up
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of a folder", path)


def walk_folders(
    root: str, follow_links: bool = False, on_error: Callable[[OSError], None] | None = None
) -> Iterator[tuple[str, list[str], list[str]]]:
    """Like ``os.walk`` (top-down, names sorted, the caller may prune ``folders``), without recursion.

    Python 3.11's ``os.walk`` recurses once per level and fails past ~1000 nested folders; this one
    keeps its own stack, so depth is never a run-wide problem. A folder that cannot be listed goes
    to ``on_error`` (with ``filename`` set) and the walk goes on; without ``on_error`` it raises.
    """
    stack = [root]
    while stack:
        folder = stack.pop()
        folders: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        is_folder = entry.is_dir(follow_symlinks=follow_links)
                    except OSError:
                        is_folder = False
                    (folders if is_folder else files).append(entry.name)
        except OSError as error:
            if on_error is None:
                raise
            if error.filename is None:
                error.filename = folder
            on_error(error)
            continue
        folders.sort()
        files.sort()
        yield folder, folders, files
        stack.extend(os.path.join(folder, name) for name in reversed(folders))


def is_url(location: str) -> bool:
    """True for ``scheme://...`` locations (object storage), False for local paths."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1


def join(base: str, *parts: str) -> str:
    """Join path parts with ``/`` for URLs and the OS separator for local paths."""
    if is_url(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def parent(location: str) -> str:
    """The folder holding ``location``."""
    if is_url(location):
        scheme, _, rest = location.partition("://")
        return f"{scheme}://{posixpath.dirname(rest.rstrip('/'))}"
    return os.path.dirname(location)


def basename(location: str) -> str:
    return posixpath.basename(location.rstrip("/")) if is_url(location) else os.path.basename(location)


@dataclass
class Storage:
    """Reads, lists and atomically writes files, locally or on object storage.

    ``options`` are passed to fsspec for URLs, e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}``
    for an S3-compatible server. A ``Storage`` is cheap to pickle, so Ray workers get their own.
    """

    options: dict = field(default_factory=dict)
    _filesystems: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _listings: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.options = state["options"]
        self._filesystems = {}
        self._listings = {}

    def remember_listing(self, root: str) -> None:
        """List an object-store prefix once, so that :meth:`exists` below it needs no request.

        Checking thousands of outputs one request each is slow on S3; this process's own writes
        keep the listing current. Local roots need no listing.
        """
        if is_url(root):
            prefix = root.rstrip("/") + "/"
            files = set(self.list_files(root.rstrip("/"))) if self.exists(root.rstrip("/")) else set()
            self._listings[prefix] = files

    def _listing_for(self, location: str) -> set | None:
        for prefix, files in self._listings.items():
            if location.startswith(prefix):
                return files
        return None

    def filesystem(self, url: str):
        """The fsspec filesystem for ``url``'s scheme (one per scheme, reused)."""
        import fsspec

        scheme = url.partition("://")[0]
        if scheme in ("s3", "s3a"):
            require("s3fs", "ray", f"{scheme}:// storage")
        if scheme not in self._filesystems:
            self._filesystems[scheme] = fsspec.filesystem(scheme, **self.options)
        return self._filesystems[scheme]

    def _fs_path(self, url: str):
        fs = self.filesystem(url)
        return fs, fs._strip_protocol(url)

    def _url(self, url_like: str, fs_path: str) -> str:
        return f"{url_like.partition('://')[0]}://{fs_path}"

    # reading -----------------------------------------------------------------------------
    def open_input(self, location: str) -> BinaryIO:
        """Open a file for reading; a local path must be a regular file (never blocks on a FIFO).

        Raises ``IsADirectoryError`` for folders and :class:`NotRegularFileError` for FIFOs,
        devices and sockets, before reading a byte.
        """
        if is_url(location):
            fs, path = self._fs_path(location)
            return fs.open(path, "rb")
        return open_regular_file(location)

    def read_bytes(self, location: str, limit: int | None = None) -> bytes:
        """The whole file; with ``limit``, ``ValueError`` once it holds more than ``limit`` bytes."""
        with self.open_input(location) as handle:
            return handle.read() if limit is None else read_at_most(handle, limit, location)

    def is_file(self, location: str) -> bool:
        """True when a file (not a folder) exists at ``location``."""
        if is_url(location):
            return self.exists(location)
        return os.path.isfile(location)

    def exists(self, location: str) -> bool:
        if is_url(location):
            listing = self._listing_for(location)
            if listing is not None:
                return location in listing
            fs, path = self._fs_path(location)
            return fs.exists(path)
        return os.path.exists(location)

    def is_dir(self, location: str) -> bool:
        if is_url(location):
            fs, path = self._fs_path(location)
            return fs.isdir(path)
        return os.path.isdir(location)

    def list_files(self, root: str) -> Iterator[str]:
        """Every file below ``root`` of an object store, as URLs (sorted)."""
        fs, path = self._fs_path(root)
        for found in sorted(fs.find(path)):
            yield self._url(root, found)

    def glob(self, pattern: str) -> list[str]:
        fs, path = self._fs_path(pattern)
        return [self._url(pattern, found) for found in sorted(fs.glob(path)) if not fs.isdir(found)]

    # writing -----------------------------------------------------------------------------
    def write_bytes(self, location: str, data: bytes) -> None:
        """Write ``data`` to ``location`` atomically (whole file or nothing under that name)."""
        if is_url(location):
            fs, path = self._fs_path(location)
            fs.pipe_file(path, data)
            self._written(location)
            return
        with self.atomic_local_path(location) as temporary, open(temporary, "wb") as handle:
            handle.write(data)

    def upload_file(self, local_file: str, location: str) -> None:
        """Copy a finished local file to ``location`` atomically."""
        if is_url(location):
            fs, path = self._fs_path(location)
            fs.put_file(local_file, path)
            self._written(location)
            return
        with (
            self.atomic_local_path(location) as temporary,
            open(local_file, "rb") as source,
            open(temporary, "wb") as target,
        ):
            while chunk := source.read(1 << 22):
                target.write(chunk)

    def _written(self, location: str) -> None:
        listing = self._listing_for(location)
        if listing is not None:
            listing.add(location)

    @contextlib.contextmanager
    def atomic_local_path(self, location: str) -> Iterator[str]:
        """A new temporary path beside ``location``; renamed onto it when the block succeeds.

        The temporary file is created like ``open(..., "w")`` creates files (``0o666`` less the
        umask), or with the mode of the file it replaces, so outputs never end up ``0o600``.
        """
        make_folders(os.path.dirname(location) or ".")
        with atomic_path(location) as temporary:
            yield temporary

    @contextlib.contextmanager
    def staged_output(self, location: str, suffix: str) -> Iterator[str]:
        """A local file to write ``location`` into (e.g. by a video encoder), published on success.

        Local destinations get a temporary file in their own folder and an atomic rename;
        object-store destinations get a local temporary file that is uploaded at the end.
        """
        if not is_url(location):
            with self.atomic_local_path(location) as temporary:
                yield temporary
            return
        handle, temporary = tempfile.mkstemp(suffix=suffix + PARTIAL_SUFFIX)
        os.close(handle)
        try:
            yield temporary
            self.upload_file(temporary, location)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    @contextlib.contextmanager
    def staged_folder(self, location: str) -> Iterator[str]:
        """A local folder to write the files of the folder ``location`` into, published whole on success.

        On success the staged folder replaces ``location`` and everything that was in it (local:
        two renames; object storage: the old objects under the prefix are deleted, then the new
        files uploaded); on failure it is deleted and ``location`` stays as it was.
        """
        if is_url(location):
            staged = tempfile.mkdtemp(suffix=PARTIAL_SUFFIX)
            try:
                yield staged
                fs, path = self._fs_path(location)
                if fs.exists(path):
                    fs.rm(path, recursive=True)
                for name in sorted(os.listdir(staged)):
                    self.upload_file(os.path.join(staged, name), join(location, name))
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            return
        folder = os.path.dirname(location) or "."
        make_folders(folder)
        name = os.path.basename(location)
        staged = create_temporary(folder, name, is_folder=True)
        try:
            yield staged
            if os.path.isdir(location) and not os.path.islink(location):
                retired = create_temporary(folder, name, is_folder=True)
                os.replace(location, os.path.join(retired, "old"))
                os.replace(staged, location)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staged, location)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def remove_stale_partials(self, root: str) -> int:
        """Delete temporary files and folders killed runs left below a local ``root``; return how many.

        Call it while holding :func:`output_lock` on ``root``. A temporary file or folder whose
        writing process is still alive (its name holds the PID) is left alone: it may belong to a
        run into a folder nested inside ``root``.
        """
        if is_url(root) or not os.path.isdir(root):
            return 0
        removed = 0
        for folder, subfolders, files in walk_folders(root, on_error=lambda error: None):
            for name in [name for name in subfolders if name.endswith(PARTIAL_SUFFIX)]:
                subfolders.remove(name)
                if not written_by_live_process(name):
                    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
                    removed += 1
            for name in files:
                if name.endswith(PARTIAL_SUFFIX) and not written_by_live_process(name):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))
                        removed += 1
        return removed

    def check_writable(self, location: str, what: str) -> None:
        """Refuse, before any work, a local file location that cannot be written (``ValueError``)."""
        if is_url(location):
            return
        if os.path.isdir(location):
            raise ValueError(f"the {what} {location!r} is a folder; give a file name")
        self.check_folder_writable(os.path.dirname(location) or ".", f"the {what} {location!r}")

    @staticmethod
    def check_folder_writable(folder: str, what: str) -> None:
        """Create and delete a temporary file in a local ``folder``; ``ValueError`` naming ``what``."""
        if not os.path.isdir(folder):
            raise ValueError(f"cannot write {what}: the folder {folder!r} does not exist")
        try:
            os.unlink(create_temporary(folder, "write-check"))
        except OSError as error:
            raise ValueError(f"cannot write {what}: {error.strerror or error}") from error


@contextlib.contextmanager
def output_lock(root: str) -> Iterator[None]:
    """Hold an advisory lock on a local output folder (created if missing) for the whole run.

    A second run into the same folder raises :class:`~dwpose_ctrl.engines.report.EngineError` at
    once instead of deleting the first run's temporary files. The lock is ``flock`` on the folder
    itself (no lock file is left behind) and goes away with the process, even after ``SIGKILL``.
    Object-store outputs (URLs) and systems without ``fcntl`` are not locked. A folder this call
    created is removed again if the run left it empty.
    """
    if is_url(root):
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    created = not os.path.isdir(root)
    make_folders(root)
    descriptor = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EngineError(
                f"another dwpose-render is writing into {root!r}; wait until it ends or give another "
                "output folder (-o)"
            ) from None
        yield
    finally:
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(root)


def local_real_path(location: str) -> str | None:
    """The resolved absolute path of a local location, None for URLs."""
    if is_url(location):
        return None
    return str(Path(location).resolve())
