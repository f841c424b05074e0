"""Local files read and written safely: regular files only, capped reads, unique atomic writes.

Shared by the library (OpenPose JSON, model files), the render engines and the trainer, so
that every file is read and written by the same rules:

- Only regular files are read (:func:`open_regular_file`): a FIFO, a device such as
  ``/dev/zero`` or a socket is refused at once (:class:`NotRegularFileError`) instead of
  blocking for ever or never ending; :func:`read_regular_file` also caps the bytes read.
- A file is written under a temporary name unique to the writing process and call
  (:func:`create_temporary`: ``.<name>.<pid>-<random>.dwpose-partial`` in the destination
  folder), then renamed over its final name (:func:`atomic_path`). Two processes writing the same
  file never touch each other's temporary file; the last rename wins and the file is always
  whole. New files get the mode a plain ``open()`` gives (``0o666`` less the umask); a replaced
  file keeps its mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator
from typing import BinaryIO

#: Temporary files end with this suffix; a render run removes stale ones left by a killed run.
PARTIAL_SUFFIX = ".dwpose-partial"

#: Opening a FIFO for reading waits for a writer unless non-blocking (POSIX; absent on Windows).
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

#: Characters of the final name kept in a temporary file's name (file names are limited to 255 bytes).
_TEMPORARY_NAME_CHARS = 80

_TEMPORARY_OWNER = re.compile(r"\.(\d+)-[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX) + "$")

_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """A path that is not a regular file (FIFO, device, socket): it is never read."""


def file_kind_problem(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read, or None for regular files and folders."""
    for test, kind in _FILE_KINDS:
        if test(mode):
            return f"not a regular file ({kind}); only regular files are read"
    return None


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Open a local file for reading in binary mode, refusing anything but a regular file.

    Raises ``FileNotFoundError``, ``IsADirectoryError`` for folders and
    :class:`NotRegularFileError` for FIFOs, devices and sockets, before reading a byte (a FIFO
    is opened non-blocking, so this never waits for a writer).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ENXIO:  # opening a socket
            raise NotRegularFileError(
                errno.ENXIO, "not a regular file (a socket); only regular files are read", os.fspath(path)
            ) from error
        raise
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", os.fspath(path))
        problem = file_kind_problem(mode)
        if problem is not None:
            raise NotRegularFileError(errno.EINVAL, problem, os.fspath(path))
        if _NONBLOCK:
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def regular_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file (``"does not exist"``, ...), or None when it can.

    Looks at the file's type only (``os.stat``, following links): it opens nothing, so it never
    blocks on a FIFO. ``/dev/zero`` or a link to it is ``"is not a regular file (a character device)..."``.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be examined ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    problem = file_kind_problem(mode)
    return None if problem is None else f"is {problem}"


def check_regular_file(path: str | os.PathLike, what: str) -> None:
    """Raise unless ``path`` is an existing regular file, the message naming ``what`` and ``path``.

    ``FileNotFoundError`` when it is missing, ``IsADirectoryError`` for a folder,
    :class:`NotRegularFileError` for a FIFO, a device or a socket (all ``OSError``).
    """
    problem = regular_file_problem(path)
    if problem is None:
        return
    message = f"{what} {os.fspath(path)} {problem}"
    if problem == "does not exist":
        raise FileNotFoundError(message)
    if problem.startswith("is a folder"):
        raise IsADirectoryError(message)
    raise NotRegularFileError(message)


def read_at_most(handle: BinaryIO, limit: int, name: str) -> bytes:
    """Everything ``handle`` holds; ``ValueError`` naming ``name`` once it holds more than ``limit`` bytes."""
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{name!r} is larger than {limit} bytes, the most read from such a file")
    return data


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a local regular file of at most ``limit`` bytes (see :func:`open_regular_file`)."""
    with open_regular_file(path) as handle:
        return read_at_most(handle, limit, os.fspath(path))


def create_temporary(folder: str | os.PathLike, name: str, is_folder: bool = False) -> str:
    """Create a new empty hidden ``*.dwpose-partial`` file (or folder) in ``folder`` for ``name``; its path.

    The name holds this process's id and a random part, so it is unique to this call; ``O_EXCL``
    with mode ``0o666`` (``mkdir`` with ``0o777``) makes the kernel apply the umask exactly as for
    ``open()`` (``mkdir``).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        path = os.path.join(
            folder, f".{name[:_TEMPORARY_NAME_CHARS]}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        )
        try:
            if is_folder:
                os.mkdir(path, 0o777)
            else:
                os.close(os.open(path, flags, 0o666))
        except FileExistsError:
            continue
        return path


def written_by_live_process(name: str) -> bool:
    """True when a temporary file's name holds the PID of another process that is still running."""
    match = _TEMPORARY_OWNER.search(name)
    if match is None or os.name != "posix":
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


@contextlib.contextmanager
def atomic_path(location: str | os.PathLike) -> Iterator[str]:
    """A new temporary path beside ``location``; renamed onto it when the block succeeds.

    The folder must exist. The temporary file is created like ``open(..., "w")`` creates files
    (``0o666`` less the umask), or with the mode of the file it replaces, so outputs never end up
    ``0o600``. On an error the temporary file is removed and ``location`` is left as it was.
    """
    location = os.fspath(location)
    temporary = create_temporary(os.path.dirname(location) or ".", os.path.basename(location))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(location).st_mode))
        yield temporary
        os.replace(temporary, location)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
