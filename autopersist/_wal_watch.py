"""Whether anybody committed to a WAL-mode SQLite database since a given moment,
told by one ``pread`` (~0.5 µs) of the WAL-index header in its ``-shm`` file,
instead of SQLite's file locking around a read transaction (~2.5 µs).

The header (the first 48 bytes of the ``-shm`` file, a documented part of
SQLite's file format: https://sqlite.org/walformat.html) holds a counter that
every commit changes, together with the last frame of the WAL and its salts. A
reader that saves those bytes just before it starts a read transaction knows
that its snapshot is still the newest while they are unchanged. A torn read
(a writer halfway through updating the header) only looks like a change. The
file is read, not mapped: a mapping could fault if the file were truncated.

Also the home of ``kept_fd``: descriptors that this process never closes, because
closing any descriptor of a file drops every POSIX lock the process holds on it,
SQLite's included (its connections would lose their locks on the database or
on its ``-shm`` file while still using them, and another process could then
reset the ``-shm`` file under them).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Bytes of the first copy of the WAL-index header.
HEADER_BYTES = 48

_kept_fds: dict[str, int] = {}


def kept_fd(path: Path | str) -> int:
    """A read-only descriptor of ``path``, opened once per process and never
    closed (see the module's docstring); a new one if the file was replaced.

    :raises OSError: the file cannot be opened.
    """
    key = str(path)
    fd = _kept_fds.get(key)
    if fd is not None:
        try:
            if os.fstat(fd).st_ino == os.stat(key).st_ino:
                return fd
        except OSError:
            pass
        # The file was replaced: the old descriptor belongs to another inode, whose
        # locks do not matter any more; keep it open anyway (never close).
    fd = os.open(key, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    _kept_fds[key] = fd
    return fd


class WalWatch:
    """The WAL-index header of one database, read on demand."""

    __slots__ = ("_fd",)

    def __init__(self, db_path: Path) -> None:
        """:raises OSError, ValueError: no usable ``-shm`` file (the database is
        not in WAL mode, or keeps its WAL index in heap memory)."""
        self._fd = kept_fd(f"{db_path}-shm")
        if os.fstat(self._fd).st_size < HEADER_BYTES:
            msg = "the WAL index is not initialized"
            raise ValueError(msg)

    def header(self) -> bytes:
        """The current header; compare two with ``==`` (b"" when unreadable)."""
        try:
            return os.pread(self._fd, HEADER_BYTES, 0)
        except OSError:
            return b""
