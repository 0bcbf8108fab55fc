"""Reading a blob file without copying it: a private, copy-on-write mapping.

``read_blob`` maps the whole file with ``mmap.ACCESS_COPY`` (``MAP_PRIVATE``):

* pages are read from disk (or the page cache) only when touched, so a reused
  result the program never looks at costs next to nothing;
* the mapping is writable, so numpy arrays that ``_codec.loads`` rebuilds over it
  are writable like after an ordinary unpickle, and a write copies only the page
  it touches, in this process: the file, and so the store and the next caller,
  never see it (memoization rule 2);
* it maps the file's inode, not its name: a blob replaced by another process
  (``os.replace``, same content) or deleted by ``gc`` stays readable through a
  live mapping. Blob files are never written in place (always a new file and a
  rename), which is what makes a mapping safe: truncating a mapped file would make
  touching its lost pages fail with SIGBUS.

A file under ``MAP_FROM`` bytes is read into a new ``bytearray`` instead (also
writable and private, and one copy less than reading ``bytes`` and unpickling
them): mapping and unmapping cost a few system calls, which only pay off from
about half a megabyte. So is a file past ``MAX_MAPPINGS`` live mappings: Python's
``mmap`` keeps a duplicate of the file descriptor until the mapping is freed
(before Python 3.13's ``trackfd``), and a program holding many reused results
must not run out of descriptors. And so is a file that cannot be mapped.
"""

from __future__ import annotations

import io
import mmap
import os
import weakref
from pathlib import Path

__all__ = ["MAP_FROM", "MAX_MAPPINGS", "read_blob"]

#: Smaller files are read (faster up to about this size, measured on Linux).
MAP_FROM = 512 * 1024
#: Live mappings at most (each holds a file descriptor).
MAX_MAPPINGS = 128

_live: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()


def read_blob(path: Path) -> memoryview:
    """The bytes of the file at ``path`` as a writable view private to the caller.

    :raises OSError: the file cannot be opened or read.
    """
    with open(path, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size >= MAP_FROM and len(_live) < MAX_MAPPINGS:
            try:
                mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
            except (OSError, ValueError):
                pass  # a file system without mmap: read it
            else:
                _live.add(mapping)
                return memoryview(mapping)
        return memoryview(_read_into(handle, size))


def _read_into(handle: io.FileIO, size: int) -> bytearray:
    """The file's bytes, read straight into one ``bytearray`` (shorter if the file
    shrank meanwhile: the caller's size check reports it)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        count = handle.readinto(view[done:])
        if not count:
            break
        done += count
    view.release()
    if done < size:
        del buffer[done:]
    return buffer
