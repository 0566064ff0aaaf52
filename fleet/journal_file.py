"""fleet.journal_file — the journal's file: whose it is, who may read it, and the run lock.

Kept apart from :mod:`fleet.journal` (what is in the database) because it is about the file
and its names: a journal reached through a symlink or a hard link is the same journal, with
the same lock; a journal someone else owns is not ours to use.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError
from .masking import mask_command_line

__all__ = ["make_private", "run_lock"]


def make_private(target: Path, fd: int) -> list[str]:
    """The journal holds (encrypted) keys and every run's record: it must be the user's own
    and readable by no one else. Someone else's file is refused (its keys are not ours to
    use, and its owner can read what we would add); our own file with group or other bits is
    made 0600, with a warning, and so are SQLite's ``-wal`` / ``-shm`` files beside it."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"the journal {target} is not a regular file")
    if info.st_uid != os.geteuid():
        raise InputError(
            f"the journal {target} belongs to uid {info.st_uid}, not to you (uid "
            f"{os.geteuid()}): certfleet keeps keys in it and uses only a journal of its own; "
            "give another --journal"
        )
    warnings: list[str] = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        os.fchmod(fd, 0o600)
        warnings.append(f"the journal {target} was mode {mode:04o} (readable by others); "
                        "made it 0600")
    resolved = Path(os.path.realpath(target))
    for suffix in ("-wal", "-shm"):
        side = resolved.with_name(resolved.name + suffix)
        with contextlib.suppress(OSError):
            side_info = os.lstat(side)
            if stat.S_ISREG(side_info.st_mode) and side_info.st_uid == os.geteuid() \
                    and side_info.st_mode & 0o077:
                os.chmod(side, 0o600)
    return warnings


@contextlib.contextmanager
def run_lock(fd: int, path: Path, command: str) -> Iterator[None]:
    """An exclusive flock on ``fd``, the database file itself, for the time of the block.

    Every name of that file (a symlink, a hard link in another folder) shares it: the lock
    is the file's, not a name's. flock and SQLite's own fcntl locks do not interact on local
    file systems. Who holds it is written, for the message only, to
    ``<resolved database path>.lock`` (the command line masked)."""
    info_path = Path(os.path.realpath(path))
    info_path = info_path.with_name(info_path.name + ".lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = info_path.read_text("utf-8", "replace").strip()[:400]
        except OSError:
            holder = ""
        raise InputError(
            f"another certfleet run is changing devices from the journal {path}"
            f" ({holder or 'another name for the same file'}); wait for it, or use "
            "another --journal"
        ) from None
    try:
        with contextlib.suppress(OSError):
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
            info = os.open(info_path, flags, 0o600)
            try:
                os.write(info, f"pid {os.getpid()}: {mask_command_line(command)}".encode())
            finally:
                os.close(info)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.truncate(info_path, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
