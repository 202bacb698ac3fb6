"""BPF_MAP_TYPE_ARRAY (global data included) and BPF_MAP_TYPE_PERCPU_ARRAY.

Contract (kernel/bpf/arraymap.c): key_size 4, value_size > 0, max_entries
> 0; values are zero-initialised and never deleted (delete is EINVAL);
update of an index >= max_entries is E2BIG, lookup of one is ENOENT,
NOEXIST is always EEXIST; get_next_key goes 0, 1, ... and a missing or
out-of-range key restarts at 0.  The values live in one region per CPU with
elements ``round_up(value_size, 8)`` apart, so a value address stays valid
for the map's lifetime and :meth:`ArrayMap.direct_value_address` (element 0)
serves ld_imm64 MAP_VALUE.  BPF_F_RDONLY_PROG makes that region read-only
for programs (stores fault; user space writes through :meth:`update`);
BPF_F_MMAPABLE is accepted on plain arrays only.  The blocks are allocated
``shared``: under the persistent kernel model they are mappings of files, which
every process using the map reads and writes live.  :meth:`ArrayMap.jit_shape`
hands the same blocks to JIT-compiled code, which indexes them natively.

Per-CPU arrays give user space ``round_up(value_size, 8) * ncpus`` bytes
(padding included, as the kernel copies whole 8-byte words) and programs
the element of the CPU they run on (``cpu`` argument).
"""

from __future__ import annotations

import errno

from pybpf.jit import maps_ir
from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ACCESS_MASK,
    ALLOC_LIMIT,
    ENOTSUPP,
    PCPU_MIN_UNIT_SIZE,
    check_lookup_flags,
    check_update_flags,
    next_index,
    round8,
    u32,
)  # fmt: skip


@register(MapType.ARRAY)
class ArrayMap(Map):
    """A fixed array of zeroed values indexed by a u32 key."""

    allowed_flags = MapFlag.NUMA_NODE | MapFlag.MMAPABLE | ACCESS_MASK | MapFlag.INNER_MAP
    percpu = False

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.stride = round8(attr.value_size)
        writable = not attr.map_flags & MapFlag.RDONLY_PROG
        copies = ncpus if self.percpu else 1
        self.regions = [
            space.alloc(f"array:{attr.name}" + (f":cpu{c}" if self.percpu else ""),
                        self.stride * attr.max_entries, writable=writable, shared=True)
            for c in range(copies)
        ]  # fmt: skip

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        if attr.key_size != 4 or attr.value_size == 0 or attr.max_entries == 0:
            raise fail(errno.EINVAL, "arrays need key_size 4, value_size > 0, max_entries > 0")
        if self.percpu and round8(attr.value_size) > PCPU_MIN_UNIT_SIZE:
            raise fail(errno.E2BIG, f"per-CPU value of {attr.value_size} bytes is too large")
        size = round8(attr.value_size) * attr.max_entries
        if size > 1 << 32:
            raise fail(errno.E2BIG, f"array of {size} bytes is too large")
        shared_files = self.space.shared_memory is not None  # sparse: touched pages only
        if size * (self.ncpus if self.percpu else 1) > ALLOC_LIMIT and not shared_files:
            raise fail(errno.ENOMEM, f"array of {size} bytes exceeds pybpf's allocation limit")

    def release(self) -> None:
        for region in self.regions:
            self.space.free(region)
        self.regions = []

    # --- helpers ------------------------------------------------------------------
    def direct_value_address(self) -> int:
        """Address of element 0 (ld_imm64 BPF_PSEUDO_MAP_VALUE)."""
        return self.regions[0].base

    def _get(self, index: int, cpu: int) -> bytes:
        off = index * self.stride
        size = self.stride if self.percpu else self.value_size
        return bytes(self.regions[cpu].view[off : off + size])

    def _put(self, index: int, cpu: int, data: bytes) -> None:
        off = index * self.stride
        self.regions[cpu].view[off : off + len(data)] = data

    @property
    def user_value_size(self) -> int:
        return self.stride * self.ncpus if self.percpu else self.value_size

    # --- user space -------------------------------------------------------------------
    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        check_lookup_flags(flags)
        self._check_readable_from_user()
        self._check_key(key)
        index = u32(key)
        if index >= self.max_entries:
            raise fail(errno.ENOENT, f"index {index} >= max_entries {self.max_entries}")
        return b"".join(self._get(index, c) for c in range(len(self.regions)))

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        self._check_writable_from_user()
        check_update_flags(flags)
        self._check_key(key)
        self._check_value(value)
        index = u32(key)
        if index >= self.max_entries:
            raise fail(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        if flags == UpdateFlag.NOEXIST:
            raise fail(errno.EEXIST, "array elements always exist")
        if not self.percpu:
            self._put(index, 0, value)
            return
        for c in range(self.ncpus):
            self._put(index, c, value[c * self.stride : (c + 1) * self.stride])

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        raise fail(errno.EINVAL, "array elements cannot be deleted")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        if key is not None:
            self._check_key(key)
        return next_index(key, self.max_entries)

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        self._check_readable_from_user()
        self._check_writable_from_user()
        if flags:
            raise fail(errno.EINVAL, f"flags {flags:#x}")
        raise fail(ENOTSUPP, "lookup_and_delete is not supported by arrays")

    def __len__(self) -> int:
        return self.max_entries

    def jit_shape(self) -> maps_ir.ArrayShape | None:
        """How JIT-compiled code reaches this map natively (its value blocks, one per CPU).

        None for a subclass whose programs see something else than the blocks.
        """
        cls = type(self)
        if self.pointer is None or not self.regions or cls.prog_lookup is not ArrayMap.prog_lookup \
                or cls.prog_update is not ArrayMap.prog_update:  # fmt: skip
            return None
        return maps_ir.ArrayShape(pointer=self.pointer.base, max_entries=self.max_entries,
                                  value_size=self.value_size, stride=self.stride,
                                  bases=tuple(r.base for r in self.regions),
                                  writable=not self.map_flags & MapFlag.RDONLY_PROG)  # fmt: skip

    # --- programs -------------------------------------------------------------------
    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        index = u32(self.read(key_addr, 4))
        if index >= self.max_entries:
            return 0
        return self.regions[cpu if self.percpu else 0].base + index * self.stride

    def prog_update(self, key_addr: int, value_addr: int, flags: int, *, cpu: int = 0) -> int:
        # the verifier refuses writes to a RDONLY_PROG map; at run time pybpf says EPERM
        if self.map_flags & MapFlag.RDONLY_PROG:
            return -errno.EPERM
        if flags & ~4 > 2:
            return -errno.EINVAL
        index = u32(self.read(key_addr, 4))
        if index >= self.max_entries:
            return -errno.E2BIG
        if flags & UpdateFlag.NOEXIST:
            return -errno.EEXIST
        if flags & UpdateFlag.F_LOCK:
            return -errno.EINVAL
        self._put(index, cpu if self.percpu else 0, self.read(value_addr, self.value_size))
        return 0

    def prog_delete(self, key_addr: int, *, cpu: int = 0) -> int:
        return -errno.EINVAL


@register(MapType.PERCPU_ARRAY)
class PercpuArrayMap(ArrayMap):
    """An array with one value per CPU (see the module docstring)."""

    allowed_flags = MapFlag.NUMA_NODE | ACCESS_MASK
    percpu = True

    def direct_value_address(self) -> int:
        raise fail(errno.EINVAL, "per-CPU arrays have no direct value address")
