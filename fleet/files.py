"""fleet.files — reading a file the user named, safely.

An inventory, a ``file:`` secret, a PEM argument: each is a path from the user, and a path can
name a FIFO (an ``open`` that waits for a writer forever), a device (``/dev/zero`` reads until
memory runs out) or a file far larger than anything certfleet reads. :func:`read_file` opens
without blocking, checks with ``fstat`` on the open descriptor (no race with a rename) that it
is a regular file, and reads at most ``limit`` bytes; anything else is an :class:`OSError` whose
``strerror`` says what is wrong, so callers' ``except OSError`` paths report it as they report
an unreadable file (naming the path).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = [
    "MAX_INPUT_FILE",
    "FileTooLargeError",
    "NotARegularFileError",
    "read_file",
]

#: the default cap: no inventory, PEM bundle or CA file certfleet reads comes near it
MAX_INPUT_FILE: Final = 16 * 1024 * 1024


class NotARegularFileError(OSError):
    """The path names a FIFO, a socket, a device: not a file to read."""


class FileTooLargeError(OSError):
    """The file is larger than the cap for what it should hold."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


def read_file(
    path: str | Path,
    *,
    limit: int = MAX_INPUT_FILE,
    inspect: Callable[[os.stat_result], None] | None = None,
) -> bytes:
    """The whole content of the regular file at ``path``, at most ``limit`` bytes.
    ``inspect`` is called with the open file's ``fstat`` before it is read (to check its
    mode, say) and may raise.

    Never blocks on a FIFO and never reads a device. Raises :class:`FileNotFoundError`,
    :class:`IsADirectoryError`, :class:`NotARegularFileError`, :class:`FileTooLargeError` or
    another :class:`OSError` (all with ``strerror`` and ``filename`` set).
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(name, flags)
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", name)
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(
                errno.EINVAL, f"is {_kind(mode)}, not a regular file", name)
        too_large = FileTooLargeError(errno.EFBIG, f"is larger than the {_size(limit)} limit",
                                      name)
        if info.st_size > limit:
            raise too_large
        if inspect is not None:
            inspect(info)
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while it is read: never past the limit
            chunk = os.read(fd, min(1024 * 1024, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large
        return b"".join(chunks)
    finally:
        os.close(fd)
