"""Map memory in shared files: ``maps/<id>.<n>`` under the state directory.

An array map's value blocks (one, or one per CPU) are regions of the
simulated address space (:mod:`pybpf.runtime.space`).  Under the persistent
kernel model each block is a ``MAP_SHARED`` mapping of its own file, in the
layout the interpreter and the JIT use (elements ``round_up(value_size, 8)``
apart), so:

* every process using the map reads and writes the same bytes live (a loader
  watching a counter while another process runs the program), as the kernel's
  maps are shared by every fd;
* the file is sparse: creating a 10M-entry array writes nothing, and a page
  costs disk and memory only once touched;
* no command rewrites or reloads the contents: the file is the contents.

The file of block ``n`` of map ``id`` is created (truncated: a command killed
before committing may have left one for an id it never committed) when the
map is created, and opened as it is when a later command restores the map;
files of maps that died are removed by the next writing command.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from pathlib import Path

from pybpf.errors import StateError
from pybpf.vm.memory import mapped_buffer

DIR = "maps"


def block_path(root: Path, map_id: int, block: int) -> Path:
    """The file holding block ``block`` of map ``map_id``."""
    return root / DIR / f"{map_id}.{block}"


class MapFiles:
    """The shared-memory provider for the blocks of one map being created or restored."""

    def __init__(self, root: Path, map_id: int, *, fresh: bool) -> None:
        self.root, self.map_id, self.fresh = root, map_id, fresh
        self.blocks = 0

    def __call__(self, name: str, size: int):
        """A mapping of the next block's file, ``size`` bytes (AddressSpace.shared_memory)."""
        path = block_path(self.root, self.map_id, self.blocks)
        self.blocks += 1
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_TRUNC if self.fresh else 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as err:
            raise StateError(f"cannot open the memory of map {self.map_id} ({path}): "
                             f"{err.strerror}; run 'pybpf state repair'",
                             errno=err.errno) from None  # fmt: skip
        try:
            if self.fresh:
                os.ftruncate(fd, size)  # a hole: nothing is written or allocated
            elif os.fstat(fd).st_size != size:
                raise StateError(f"the memory of map {self.map_id} ({path}) is "
                                 f"{os.fstat(fd).st_size} bytes, not {size}; run "
                                 f"'pybpf state repair'", errno=errno.EIO)  # fmt: skip
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as err:
            raise StateError(f"cannot map the memory of map {self.map_id} ({path}): "
                             f"{err.strerror}", errno=err.errno) from None  # fmt: skip
        finally:
            os.close(fd)
        return mapped_buffer(mapping)  # keeps the mapping alive


def remove_dead(root: Path, live: set[int]) -> None:
    """Remove the files of maps not in ``live`` (a writing command, holding the lock)."""
    for file in (root / DIR).iterdir():
        ident = file.name.split(".", 1)[0]
        if not ident.isdigit() or int(ident) not in live:
            with contextlib.suppress(OSError):
                file.unlink()


__all__ = ["DIR", "MapFiles", "block_path", "remove_dead"]
