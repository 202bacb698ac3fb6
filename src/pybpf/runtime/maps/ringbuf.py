"""BPF_MAP_TYPE_RINGBUF: a multi-producer ring of variable-length records.

Contract (kernel/bpf/ringbuf.c): key_size and value_size 0, max_entries a
power of two and a multiple of the page size, flags NUMA_NODE only (else
EINVAL).  The element commands are ENOTSUPP (524).

The data area is one region at a stable address, twice max_entries long:
like the kernel's double mapping of the data pages, a record that wraps
past the end stays contiguous for the program.  Each record starts with
the kernel's 8-byte header — u32 ``len`` with BPF_RINGBUF_BUSY_BIT (1 << 31)
while reserved and BPF_RINGBUF_DISCARD_BIT (1 << 30) once discarded, then
u32 ``pg_off`` — and occupies ``round_up(len + 8, 8)`` bytes.  A reserve
fails (address 0) when the record would make the unconsumed span exceed
max_entries - 1 bytes (the kernel's ``> mask`` test) or when flags are set.

Programs: :meth:`reserve` (record address or 0), :meth:`submit`,
:meth:`discard`, :meth:`output` (0, -EINVAL for flags, -EAGAIN when full).
Consumer: :meth:`consume` returns submitted records in order, skips
discarded ones and stops at the first busy one.
"""

from __future__ import annotations

import errno
import struct

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, fail
from pybpf.runtime.maps.common import ALLOC_LIMIT, ENOTSUPP, PAGE_SIZE, round8

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
MAX_RECORD = 0x0FFFFFFF  # RINGBUF_MAX_RECORD_SZ (UINT_MAX / 4)
BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP = 1, 2
_HDR = struct.Struct("<II")


def check_ring_size(attr: MapAttr) -> None:
    """ringbuf_map_alloc's size rules (RINGBUF and USER_RINGBUF): key and value size 0,
    max_entries a power-of-2 multiple of the page size (EINVAL)."""
    n = attr.max_entries
    if attr.key_size or attr.value_size or n < PAGE_SIZE or n & (n - 1) or n % PAGE_SIZE:
        raise fail(errno.EINVAL, "ringbuf: key/value size 0, max_entries a power-of-2 "
                                 "multiple of the page size")  # fmt: skip
    if 2 * n > ALLOC_LIMIT:
        raise fail(errno.ENOMEM, "ring exceeds pybpf's allocation limit")


def libbpf_ring_size(map_type: int, max_entries: int) -> int:
    """libbpf's adjust_ringbuf_sz: the max_entries libbpf creates a ring buffer with.

    For RINGBUF and USER_RINGBUF, a size that is not a power-of-2 multiple of the
    page size becomes the smallest such size above it (0, and sizes no such
    product can exceed, are passed on for the kernel to refuse); other map
    types keep theirs.
    """
    if map_type not in (MapType.RINGBUF, MapType.USER_RINGBUF) or not max_entries:
        return max_entries
    pages, rest = divmod(max_entries, PAGE_SIZE)
    if not rest and not pages & (pages - 1):
        return max_entries
    mul = 1
    while mul * PAGE_SIZE <= 0xFFFFFFFF:
        if mul * PAGE_SIZE > max_entries:
            return mul * PAGE_SIZE
        mul <<= 1
    return max_entries


@register(MapType.RINGBUF)
class RingbufMap(Map):
    """A ring of records in the address space (see the module docstring)."""

    allowed_flags = MapFlag.NUMA_NODE

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.size = attr.max_entries
        self.mask = self.size - 1
        self.region = space.alloc(f"ringbuf:{attr.name}", 2 * self.size)
        self.producer_pos = 0
        self.consumer_pos = 0

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        check_ring_size(attr)

    def release(self) -> None:
        self.space.free(self.region)

    # --- the ring -------------------------------------------------------------------
    def _header(self, pos: int) -> tuple[int, int]:
        return _HDR.unpack_from(self.region.view, pos & self.mask)

    def _set_len(self, pos: int, value: int) -> None:
        struct.pack_into("<I", self.region.view, pos & self.mask, value)

    def reserve(self, size: int, flags: int = 0) -> int:
        """bpf_ringbuf_reserve: the record's data address, or 0."""
        if flags or size > MAX_RECORD:
            return 0
        length = round8(size + HDR_SIZE)
        if length > self.size:
            return 0
        if self.producer_pos + length - self.consumer_pos > self.mask:
            return 0
        pos = self.producer_pos
        off = pos & self.mask
        _HDR.pack_into(self.region.view, off, size | BUSY_BIT, off // PAGE_SIZE)
        self.producer_pos += length
        return self.region.base + off + HDR_SIZE

    def _commit(self, addr: int, discard: bool) -> int:
        off = addr - HDR_SIZE - self.region.base
        if not 0 <= off < self.size:
            return -errno.EINVAL
        (length,) = struct.unpack_from("<I", self.region.view, off)
        if not length & BUSY_BIT:
            return -errno.EINVAL
        length &= ~BUSY_BIT
        struct.pack_into("<I", self.region.view, off, length | (DISCARD_BIT if discard else 0))
        return 0

    def submit(self, addr: int, flags: int = 0) -> int:
        """bpf_ringbuf_submit: the record becomes visible (0, -EINVAL if not reserved)."""
        return self._commit(addr, discard=False)

    def discard(self, addr: int, flags: int = 0) -> int:
        """bpf_ringbuf_discard: the consumer will skip the record."""
        return self._commit(addr, discard=True)

    def output(self, data: bytes, flags: int = 0) -> int:
        """bpf_ringbuf_output: reserve, copy, submit; 0, -EINVAL or -EAGAIN."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -errno.EINVAL
        addr = self.reserve(len(data))
        if not addr:
            return -errno.EAGAIN
        self.space.memory.write(addr, bytes(data))
        return self.submit(addr)

    def consume(self) -> list[bytes]:
        """Take submitted records in order; skip discarded; stop at a busy one."""
        out = []
        while self.consumer_pos < self.producer_pos:
            length, _ = self._header(self.consumer_pos)
            if length & BUSY_BIT:
                break
            size = length & ~DISCARD_BIT
            if not length & DISCARD_BIT:
                off = (self.consumer_pos & self.mask) + HDR_SIZE
                out.append(bytes(self.region.view[off : off + size]))
            self.consumer_pos += round8(size + HDR_SIZE)
        return out

    def avail_data(self) -> int:
        """BPF_RB_AVAIL_DATA: bytes produced and not consumed."""
        return self.producer_pos - self.consumer_pos

    # --- user space: no element commands ---------------------------------------------
    def lookup(self, key: bytes | None, flags: int = 0) -> bytes:
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def update(self, key: bytes | None, value: bytes, flags: int = 0) -> None:
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def delete(self, key: bytes | None) -> None:
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def get_next_key(self, key: bytes | None) -> bytes:
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def keys(self):
        return iter(())

    def __len__(self) -> int:
        return 0
