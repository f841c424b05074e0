"""Where files live: local paths and object storage (``s3://``, ``gs://``, ...) behind one small API.

Local paths use the operating system directly. URLs with a scheme go through fsspec (``s3fs`` for
``s3://``), the filesystem layer Ray Data and pyarrow also use. Every write is atomic: on a local
disk the bytes go to a hidden temporary file in the destination folder, which is then renamed over
the final name (``os.replace``); an object store only shows an object once its upload is complete.
So a file under its final name is always whole, whenever the process is killed.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Temporary files end with this suffix; a run removes stale ones left by a killed run.
PARTIAL_SUFFIX = ".dwpose-partial"


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
        if scheme not in self._filesystems:
            self._filesystems[scheme] = fsspec.filesystem(scheme, **self.options)
        return self._filesystems[scheme]

    def _fs_path(self, url: str):
        fs = self.filesystem(url)
        return fs, fs._strip_protocol(url)

    def _url(self, url_like: str, fs_path: str) -> str:
        return f"{url_like.partition('://')[0]}://{fs_path}"

    # reading -----------------------------------------------------------------------------
    def read_bytes(self, location: str) -> bytes:
        if is_url(location):
            fs, path = self._fs_path(location)
            return fs.cat_file(path)
        with open(location, "rb") as handle:
            return handle.read()

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
        """A temporary path beside ``location``; renamed onto it when the block succeeds."""
        folder = os.path.dirname(location) or "."
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(location)}.", suffix=PARTIAL_SUFFIX
        )
        os.close(handle)
        try:
            yield temporary
            os.replace(temporary, location)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

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

    def remove_stale_partials(self, root: str) -> int:
        """Delete temporary files a killed run left below a local ``root``; return how many."""
        if is_url(root) or not os.path.isdir(root):
            return 0
        removed = 0
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(PARTIAL_SUFFIX):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))
                        removed += 1
        return removed


def local_real_path(location: str) -> str | None:
    """The resolved absolute path of a local location, None for URLs."""
    if is_url(location):
        return None
    return str(Path(location).resolve())
