"""What several map families share: kernel constants, flag masks, fd resolution.

No map type is registered here.  ``ENOTSUPP`` (524) is the kernel-internal
errno several map commands return to user space (it has no name in libc).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable

from pybpf.runtime.maps.base import MapFlag, fail

ENOTSUPP = 524
KMALLOC_MAX_SIZE = 1 << 22  # x86_64: 1 << (MAX_PAGE_ORDER + PAGE_SHIFT)
PCPU_MIN_UNIT_SIZE = 32 << 10  # largest per-CPU value (rounded up to 8)
PAGE_SIZE = 4096
ALLOC_LIMIT = 1 << 28  # pybpf's own bound on one map's storage (ENOMEM beyond)

ACCESS_MASK = MapFlag.RDONLY | MapFlag.WRONLY | MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG
U32 = struct.Struct("<I")

#: turns a file descriptor found in a map value into the object it names
#: (a Map, a Program, a socket...), or None when the fd names nothing
FdResolver = Callable[[int], object]


def round8(n: int) -> int:
    """``round_up(n, 8)``: the stride of per-CPU values and array elements."""
    return (n + 7) & ~7


def u32(data: bytes) -> int:
    """The little-endian u32 at the start of ``data``."""
    return U32.unpack_from(data)[0]


def next_index(key: bytes | None, max_entries: int) -> bytes:
    """get_next_key of array-like maps: index 0 after None or an out-of-range key."""
    index = u32(key) if key is not None else max_entries
    if index >= max_entries:
        return bytes(4)
    if index == max_entries - 1:
        raise fail(errno.ENOENT, "last index")
    return (index + 1).to_bytes(4, "little")


def check_update_flags(flags: int) -> None:
    """EINVAL for anything beyond ANY/NOEXIST/EXIST (F_LOCK needs a spin lock: none here)."""
    if flags & ~4 > 2 or flags & 4:
        raise fail(errno.EINVAL, f"update flags {flags:#x} not supported")


def check_lookup_flags(flags: int) -> None:
    """EINVAL for any lookup flag (only F_LOCK exists, and no map here has a spin lock)."""
    if flags:
        raise fail(errno.EINVAL, f"lookup flags {flags:#x} not supported")


def resolve(resolver: FdResolver | None, fd: int, what: str) -> object:
    """The object ``fd`` names through ``resolver``; EBADF when it names nothing."""
    obj = resolver(fd) if resolver is not None else None
    if obj is None:
        raise fail(errno.EBADF, f"fd {fd} is not a {what}")
    return obj
