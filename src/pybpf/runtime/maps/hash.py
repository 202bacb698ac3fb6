"""BPF_MAP_TYPE_HASH and BPF_MAP_TYPE_PERCPU_HASH (kernel/bpf/hashtab.c).

Contract: key_size, value_size and max_entries > 0 (EINVAL), key_size +
value_size below KMALLOC_MAX_SIZE - 48 (E2BIG), per-CPU values at most 32
KiB; flags NO_PREALLOC, NUMA_NODE, ZERO_SEED and the access flags.  Update
checks the flags (EINVAL beyond EXIST), then NOEXIST on a present key
(EEXIST) and EXIST on a missing one (ENOENT), then room (E2BIG when full,
preallocated or not).  Delete and lookup_and_delete of a missing key are
ENOENT; get_next_key of None or of a missing key gives the first key.

Each element's value is its own region, allocated on insert and freed on
delete, so a program's value pointer is valid exactly while the element
exists.  An update of a present key writes in place (the address stays);
the kernel instead swaps in a fresh element, so a program holding the old
pointer would keep seeing the old value there.  Iteration follows insertion
order; the kernel's follows its seeded hash buckets, which user space cannot
predict (compare as sets).

Plain and per-CPU hashes (not the LRU ones, whose lookups must mark recency)
keep a :class:`NativeIndex` of their elements in step on every insert and
delete: an open-addressing table in native memory, laid out as
:mod:`pybpf.jit.maps_ir` describes, over which JIT-compiled programs look
keys up without calling back into Python (:meth:`HashMap.jit_shape`).
"""

from __future__ import annotations

import errno
import struct

from pybpf.jit import maps_ir
from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ACCESS_MASK,
    ALLOC_LIMIT,
    ENOTSUPP,
    KMALLOC_MAX_SIZE,
    PCPU_MIN_UNIT_SIZE,
    check_lookup_flags,
    check_update_flags,
    round8,
)  # fmt: skip
from pybpf.vm.memory import Region, native_buffer

HTAB_ELEM_SIZE = 48  # sizeof(struct htab_elem): the E2BIG bound on key_size + value_size
_WORDS2 = struct.Struct("<QQ")
_WORD = struct.Struct("<Q")


class NativeIndex:
    """The native lookup table of one hash map (layout: :mod:`pybpf.jit.maps_ir`).

    Maps each key to the address of its value buffer.  :attr:`header` stays
    at one address for the index's lifetime (generated code embeds it); the
    table it points to is replaced when it grows, so the load factor stays at
    most one half and a probe always meets an empty slot (replaced tables
    stay allocated until :meth:`clear`, as native code may still be reading
    one).  The caller keeps
    it in step: :meth:`insert` a key that is absent, :meth:`remove` one that
    is present.
    """

    MIN_SLOTS = 16

    def __init__(self, key_size: int) -> None:
        self.key_size = key_size
        self.slot = maps_ir.slot_size(key_size)
        self.header = Region("hash index header", native_buffer(maps_ir.HEADER_SIZE))
        self.count = 0
        self._retired: list[Region] = []
        self._reset(self.MIN_SLOTS)

    def _reset(self, slots: int) -> None:
        old = getattr(self, "table", None)
        if old is not None:
            # native code on another thread may still be probing the old table (ctypes
            # calls drop the GIL): keep it; doubling bounds the retired bytes by the live ones
            self._retired.append(old)
        self.table = Region("hash index", native_buffer(slots * self.slot))
        self.mask = slots - 1
        _WORDS2.pack_into(self.header.view, maps_ir.HDR_TABLE, self.table.base, self.mask)
        _WORD.pack_into(self.header.view, maps_ir.HDR_COUNT, self.count)

    def _probe(self, key: bytes, h: int) -> tuple[int, bool]:
        """(slot index, found): the key's slot or the empty slot ending its probe."""
        view, size, padded = self.table.view, self.slot, key.ljust(self.slot - 16, b"\0")
        i = h & self.mask
        while True:
            off = i * size
            value, stored = _WORDS2.unpack_from(view, off)
            if value == 0:
                return i, False
            if stored == h and view[off + 16 : off + size] == padded:
                return i, True
            i = (i + 1) & self.mask

    def find(self, key: bytes) -> int:
        """The value address of ``key``, or 0 (what the generated lookup returns)."""
        i, found = self._probe(key, maps_ir.key_hash(key))
        return _WORD.unpack_from(self.table.view, i * self.slot)[0] if found else 0

    def insert(self, key: bytes, address: int) -> None:
        """Add ``key`` (absent) with its value at ``address`` (non-zero)."""
        if 2 * (self.count + 1) > self.mask + 1:
            self._grow()
        h = maps_ir.key_hash(key)
        i, _ = self._probe(key, h)
        off = i * self.slot
        self.table.view[off + 16 : off + self.slot] = key.ljust(self.slot - 16, b"\0")
        _WORDS2.pack_into(self.table.view, off, address, h)
        self._count(self.count + 1)

    def remove(self, key: bytes) -> None:
        """Drop ``key`` (present), shifting the rest of its cluster back."""
        i, found = self._probe(key, maps_ir.key_hash(key))
        if not found:
            return
        view, size, mask = self.table.view, self.slot, self.mask
        j = i
        while True:
            j = (j + 1) & mask
            value, h = _WORDS2.unpack_from(view, j * size)
            if value == 0:
                break
            home = h & mask
            # the entry at j may fill the hole at i unless its home lies in (i, j]
            if (i < home <= j) if i <= j else (i < home or home <= j):
                continue
            view[i * size : (i + 1) * size] = view[j * size : (j + 1) * size]
            i = j
        view[i * size : (i + 1) * size] = bytes(size)
        self._count(self.count - 1)

    def clear(self) -> None:
        """Forget every key (the table shrinks back to its minimum; old tables are freed)."""
        self.count = 0
        self._reset(self.MIN_SLOTS)
        self._retired.clear()  # the map is being released: no program runs on it

    def _count(self, count: int) -> None:
        self.count = count
        _WORD.pack_into(self.header.view, maps_ir.HDR_COUNT, count)

    def _grow(self) -> None:
        old, size = self.table.view, self.slot
        entries = [bytes(old[off : off + size]) for off in range(0, len(old), size)
                   if _WORD.unpack_from(old, off)[0]]  # fmt: skip
        self._reset(2 * (self.mask + 1))
        view, mask = self.table.view, self.mask
        for entry in entries:
            i = _WORD.unpack_from(entry, 8)[0] & mask
            while _WORD.unpack_from(view, i * size)[0]:
                i = (i + 1) & mask
            view[i * size : (i + 1) * size] = entry


@register(MapType.HASH)
class HashMap(Map):
    """Keys to values, each value in its own region."""

    allowed_flags = (MapFlag.NO_PREALLOC | MapFlag.NO_COMMON_LRU | MapFlag.NUMA_NODE
                     | ACCESS_MASK | MapFlag.ZERO_SEED)  # fmt: skip
    percpu = False
    lru = False

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.stride = round8(attr.value_size)
        self._elems: dict[bytes, Region] = {}
        self.native_index = None if self.lru else NativeIndex(attr.key_size)

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        if attr.map_flags & MapFlag.NO_COMMON_LRU and not self.lru:
            raise fail(errno.EINVAL, "BPF_F_NO_COMMON_LRU is for LRU maps")
        if self.lru and attr.map_flags & MapFlag.NO_PREALLOC:
            raise fail(ENOTSUPP, "LRU maps are always preallocated")
        if attr.map_flags & MapFlag.NUMA_NODE and (
            self.percpu or attr.map_flags & MapFlag.NO_COMMON_LRU
        ):
            raise fail(errno.EINVAL, "per-CPU maps take no NUMA node")
        if attr.max_entries == 0 or attr.key_size == 0 or attr.value_size == 0:
            raise fail(errno.EINVAL, "hash maps need key_size, value_size, max_entries > 0")
        if attr.key_size + attr.value_size >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
            raise fail(errno.E2BIG, "key and value too large")
        if self.percpu and round8(attr.value_size) > PCPU_MIN_UNIT_SIZE:
            raise fail(errno.E2BIG, f"per-CPU value of {attr.value_size} bytes is too large")
        if (self.lru or not attr.map_flags & MapFlag.NO_PREALLOC) and (
            attr.max_entries * (attr.key_size + self._value_bytes(attr)) > ALLOC_LIMIT
        ):
            raise fail(errno.ENOMEM, "preallocation exceeds pybpf's allocation limit")

    def _value_bytes(self, attr: MapAttr) -> int:
        return round8(attr.value_size) * self.ncpus if self.percpu else attr.value_size

    def release(self) -> None:
        for region in self._elems.values():
            self.space.free(region)
        self._elems.clear()
        if self.native_index is not None:
            self.native_index.clear()

    @property
    def user_value_size(self) -> int:
        return self.stride * self.ncpus if self.percpu else self.value_size

    # --- storage primitives (LRU overrides the node accounting) ---------------------
    def _new_region(self, key: bytes) -> Region:
        size = self.stride * self.ncpus if self.percpu else self.value_size
        return self.space.alloc(f"hash:{self.name}:{key.hex()}", size, native=True)

    def _remove(self, key: bytes) -> None:
        self.space.free(self._elems.pop(key))
        if self.native_index is not None:
            self.native_index.remove(key)

    def _insert(self, key: bytes, flags: int, data: bytes, cpu: int | None) -> int:
        """Insert or replace; ``cpu`` None writes every CPU's value. 0 or -errno."""
        region = self._elems.get(key)
        if region is not None and flags == UpdateFlag.NOEXIST:
            return -errno.EEXIST
        if region is None and flags == UpdateFlag.EXIST:
            return -errno.ENOENT
        if region is None:
            if len(self._elems) >= self.max_entries:
                return -errno.E2BIG
            region = self._elems[key] = self._new_region(key)
            if self.native_index is not None:
                self.native_index.insert(key, region.base)
        self._write(region, data, cpu)
        return 0

    def _write(self, region: Region, data: bytes, cpu: int | None) -> None:
        if not self.percpu or cpu is None:
            region.view[: len(data)] = data
            return
        off = cpu * self.stride
        region.view[off : off + len(data)] = data

    def _touch(self, key: bytes) -> None:
        """A program used ``key`` (LRU maps remember it)."""

    # --- user space -------------------------------------------------------------------
    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        check_lookup_flags(flags)
        self._check_readable_from_user()
        self._check_key(key)
        region = self._elems.get(bytes(key))
        if region is None:
            raise fail(errno.ENOENT, f"key {bytes(key).hex()} not found")
        return bytes(region.view)

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        self._check_writable_from_user()
        check_update_flags(flags)
        self._check_key(key)
        self._check_value(value)
        err = self._insert(bytes(key), flags, bytes(value), None)
        if err:
            raise fail(-err, f"update of key {bytes(key).hex()} failed")

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        if bytes(key) not in self._elems:
            raise fail(errno.ENOENT, f"key {bytes(key).hex()} not found")
        self._remove(bytes(key))

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        keys = list(self._elems)
        if key is not None:
            self._check_key(key)
            key = bytes(key)
        if key is None or key not in self._elems:
            if not keys:
                raise fail(errno.ENOENT, "map is empty")
            return keys[0]
        i = keys.index(key) + 1
        if i == len(keys):
            raise fail(errno.ENOENT, "last key")
        return keys[i]

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        check_lookup_flags(flags)
        self._check_readable_from_user()
        self._check_writable_from_user()
        self._check_key(key if key is not None else b"")
        value = self.lookup(key)
        self._remove(bytes(key))
        return value

    def __len__(self) -> int:
        return len(self._elems)

    def jit_shape(self) -> maps_ir.HashShape | None:
        """How JIT-compiled code reaches this map natively (None: trampoline only).

        None for LRU maps (a lookup marks recency) and for subclasses whose
        programs see something else than the value buffers (hash of maps).
        """
        cls = type(self)
        if self.native_index is None or self.pointer is None \
                or cls.prog_lookup is not HashMap.prog_lookup \
                or cls.prog_update is not HashMap.prog_update:  # fmt: skip
            return None
        return maps_ir.HashShape(pointer=self.pointer.base, header=self.native_index.header.base,
                                 key_size=self.key_size, value_size=self.value_size,
                                 stride=self.stride, percpu=self.percpu)  # fmt: skip

    # --- programs -------------------------------------------------------------------
    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        key = self.read(key_addr, self.key_size)
        region = self._elems.get(key)
        if region is None:
            return 0
        self._touch(key)
        return region.base + (cpu * self.stride if self.percpu else 0)

    def prog_update(self, key_addr: int, value_addr: int, flags: int, *, cpu: int = 0) -> int:
        if flags & ~4 > 2:
            return -errno.EINVAL
        if flags & UpdateFlag.F_LOCK:
            return -errno.EINVAL
        key = self.read(key_addr, self.key_size)
        return self._insert(key, flags, self.read(value_addr, self.value_size), cpu)

    def prog_delete(self, key_addr: int, *, cpu: int = 0) -> int:
        key = self.read(key_addr, self.key_size)
        if key not in self._elems:
            return -errno.ENOENT
        self._remove(key)
        return 0


@register(MapType.PERCPU_HASH)
class PercpuHashMap(HashMap):
    """A hash map with one value per CPU in each element's region.

    A program's update of a new key sets its CPU's value and zeroes the
    others (pcpu_init_value); of a present key, its CPU's value only.
    """

    percpu = True
