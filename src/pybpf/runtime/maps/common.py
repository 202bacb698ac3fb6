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


# --- what the map types added for sockets, cgroups, tasks and stacks share ------------------
ALL_FLAGS = 0xFFFFFFFF  # allowed_flags of a type that checks its flags itself, in its own order
S32_MAX = (1 << 31) - 1
MAX_BPF_STACK = 512  # the largest key a program can build on its stack
NR_CPUS = 256  # CONFIG_NR_CPUS of the reference kernel: cpumap's E2BIG bound
#: BPF_LOCAL_STORAGE_MAX_VALUE_SIZE: U16_MAX minus the 128-byte bpf_local_storage_elem
LOCAL_STORAGE_MAX_VALUE_SIZE = 0xFFFF - 128


def s32(data: bytes) -> int:
    """The little-endian s32 at the start of ``data`` (a file descriptor)."""
    return int.from_bytes(data[:4], "little", signed=True)


def check_generic(attr) -> None:
    """map_create's checks before the type's own (syscall.c), in the kernel's order.

    A BTF key type without a value type, ``map_extra`` on a type that takes
    none, BPF_F_RDONLY with BPF_F_WRONLY (bpf_get_file_flag): EINVAL.  Negative
    sizes and names longer than 15 bytes are EINVAL too (the kernel's u32 fields
    and name copy cannot hold them).  The program-side pair (RDONLY_PROG with
    WRONLY_PROG) is the type's own check.
    """
    if attr.btf_key_type_id and not attr.btf_value_type_id:
        raise fail(errno.EINVAL, "a BTF key type needs a BTF value type")
    if attr.map_extra:
        raise fail(errno.EINVAL, "map_extra is only for bloom filters and arenas")
    pair = MapFlag.RDONLY | MapFlag.WRONLY
    if attr.map_flags & pair == pair:
        raise fail(errno.EINVAL, "a map cannot be both read-only and write-only")
    if min(attr.key_size, attr.value_size, attr.max_entries) < 0:
        raise fail(errno.EINVAL, "negative size")
    if len(attr.name.encode()) > 15:
        raise fail(errno.EINVAL, f"map name {attr.name!r} is longer than 15 characters")


def access_ok(flags: int) -> bool:
    """bpf_map_flags_access_ok: not both BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG."""
    pair = MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG
    return flags & pair != pair


def sys_lookup(m, flags: int) -> None:
    """map_lookup_elem's checks before the type's own: flags other than BPF_F_LOCK
    (EINVAL), read permission (EPERM), BPF_F_LOCK without a spin lock (EINVAL)."""
    if flags & ~4:
        raise fail(errno.EINVAL, f"lookup flags {flags:#x}")
    m._check_readable_from_user()
    if flags:
        raise fail(errno.EINVAL, "BPF_F_LOCK: no spin lock in this map's values")


def sys_update(m, flags: int) -> None:
    """map_update_elem's checks before the type's own: write permission (EPERM), then
    BPF_F_LOCK without a spin lock (EINVAL)."""
    m._check_writable_from_user()
    if flags & 4:
        raise fail(errno.EINVAL, "BPF_F_LOCK: no spin lock in this map's values")


def sys_lookup_and_delete(m, flags: int) -> None:
    """map_lookup_and_delete_elem's checks before the type's own (EINVAL, EPERM, EINVAL)."""
    if flags & ~4:
        raise fail(errno.EINVAL, f"lookup_and_delete flags {flags:#x}")
    m._check_readable_from_user()
    m._check_writable_from_user()
    if flags:
        raise fail(errno.EINVAL, "BPF_F_LOCK: no spin lock in this map's values")
