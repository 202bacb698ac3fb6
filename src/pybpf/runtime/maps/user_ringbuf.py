"""BPF_MAP_TYPE_USER_RINGBUF: a ring user space produces into and programs drain.

Contract at creation: as BPF_MAP_TYPE_RINGBUF (ringbuf_map_alloc serves
both): key_size and value_size 0, max_entries a power-of-2 multiple of the
page size, flags NUMA_NODE only (EINVAL otherwise).  The element commands are
ENOTSUPP (524) after the syscall's own checks; user space writes the ring
through its mmap()ed pages, which :meth:`UserRingbufMap.user_reserve`,
:meth:`~UserRingbufMap.user_submit`, :meth:`~UserRingbufMap.user_discard`
and :meth:`~UserRingbufMap.write` stand for (libbpf's
``user_ring_buffer__reserve/submit/discard``: a size using the header's two
flag bits, or a record larger than the ring, is E2BIG; a ring without room is
ENOSPC).

Records carry the kernel's 8-byte header (u32 ``len`` with
BPF_RINGBUF_BUSY_BIT while user space writes it and
BPF_RINGBUF_DISCARD_BIT once discarded, u32 pad) and take
``round_up(len + 8, 8)`` bytes.  The data area is one region twice the ring
long, each byte mirrored, so a record that wraps is contiguous for a
program, as with the kernel's double mapping.

Programs: :meth:`drain` is bpf_user_ringbuf_drain: flags other than
BPF_RB_NO_WAKEUP / BPF_RB_FORCE_WAKEUP are -EINVAL, a drain already under way
-EBUSY; it hands each submitted record (address, length) to the callback in
order, skipping discarded ones, stops at a busy record, at an empty ring or
when the callback returns non-zero (that record still counts), and answers
how many records it handed over — or the -errno of a malformed record
(-EINVAL, -E2BIG) with the records before it consumed.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, fail
from pybpf.runtime.maps.common import (
    ENOTSUPP,
    round8,
    sys_lookup,
    sys_lookup_and_delete,
    sys_update,
)  # fmt: skip
from pybpf.runtime.maps.ringbuf import (
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BUSY_BIT,
    DISCARD_BIT,
    HDR_SIZE,
    check_ring_size,
)  # fmt: skip

MAX_SAMPLES = 128 * 1024  # BPF_MAX_USER_RINGBUF_SAMPLES
DYNPTR_MAX_SIZE = (1 << 24) - 1  # bpf_dynptr_check_size: DYNPTR_MAX_SIZE
_U32 = struct.Struct("<I")


@register(MapType.USER_RINGBUF)
class UserRingbufMap(Map):
    """A ring written by user space, drained by programs (see the module docstring)."""

    allowed_flags = MapFlag.NUMA_NODE

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.size = attr.max_entries
        self.mask = self.size - 1
        self.region = space.alloc(f"user_ringbuf:{attr.name}", 2 * self.size)
        self.producer_pos = 0
        self.consumer_pos = 0
        self.busy = False

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        check_ring_size(attr)

    def release(self) -> None:
        self.space.free(self.region)

    # --- the ring's bytes -----------------------------------------------------------------
    def _put(self, pos: int, data: bytes) -> None:
        """Write ``data`` at ring position ``pos`` into both copies of the data area."""
        off = pos & self.mask
        view = self.region.view
        first, rest = data[: self.size - off], data[self.size - off :]
        view[off : off + len(first)] = first
        view[off + self.size : off + self.size + len(first)] = first
        view[: len(rest)] = rest
        view[self.size : self.size + len(rest)] = rest

    def _len_at(self, pos: int) -> int:
        return _U32.unpack_from(self.region.view, pos & self.mask)[0]

    # --- user space: the producer ---------------------------------------------------------
    def user_reserve(self, size: int) -> int:
        """Reserve a record of ``size`` bytes; its position (E2BIG, ENOSPC)."""
        if size < 0 or size & (BUSY_BIT | DISCARD_BIT):
            raise fail(errno.E2BIG, f"record size {size} uses the header's flag bits")
        total = round8(size + HDR_SIZE)
        if total > self.size:
            raise fail(errno.E2BIG, f"a {size}-byte record does not fit a {self.size}-byte ring")
        if self.size - (self.producer_pos - self.consumer_pos) < total:
            raise fail(errno.ENOSPC, "the ring is full")
        pos = self.producer_pos
        self._put(pos, struct.pack("<II", size | BUSY_BIT, 0))
        self.producer_pos += total
        return pos

    def user_fill(self, pos: int, data: bytes, offset: int = 0) -> None:
        """Write ``data`` into the record reserved at ``pos``, ``offset`` bytes in."""
        size = self._len_at(pos) & ~(BUSY_BIT | DISCARD_BIT)
        if offset < 0 or offset + len(data) > size:
            raise ValueError(f"{len(data)} bytes at {offset} overflow a {size}-byte record")
        self._put(pos + HDR_SIZE + offset, bytes(data))

    def _commit(self, pos: int, discard: bool) -> None:
        length = self._len_at(pos)
        if not length & BUSY_BIT:
            raise ValueError(f"no record reserved at position {pos}")
        length &= ~BUSY_BIT
        self._put(pos, _U32.pack(length | (DISCARD_BIT if discard else 0)))

    def user_submit(self, pos: int) -> None:
        """Make the record at ``pos`` visible to programs."""
        self._commit(pos, discard=False)

    def user_discard(self, pos: int) -> None:
        """Have programs skip the record at ``pos``."""
        self._commit(pos, discard=True)

    def write(self, data: bytes) -> None:
        """Reserve, fill and submit one record holding ``data`` (E2BIG, ENOSPC)."""
        pos = self.user_reserve(len(data))
        self.user_fill(pos, data)
        self.user_submit(pos)

    def avail_data(self) -> int:
        """Bytes produced and not yet drained."""
        return self.producer_pos - self.consumer_pos

    # --- programs: the consumer ----------------------------------------------------------
    def peek(self) -> tuple[int, int] | int:
        """__bpf_user_ringbuf_peek: (address, length) of the next record, or -errno.

        -ENODATA: nothing submitted yet; -EAGAIN: a discarded record was
        skipped; -EINVAL / -E2BIG: a record that overruns what was produced,
        or the ring, or a dynptr's size.
        """
        if self.producer_pos % 8:
            return -errno.EINVAL
        cons, prod = self.consumer_pos, self.producer_pos
        if cons >= prod:
            return -errno.ENODATA
        hdr = self._len_at(cons)
        flags = hdr & (BUSY_BIT | DISCARD_BIT)
        length = hdr & ~flags
        total = round8(length + HDR_SIZE)
        if total > prod - cons:
            return -errno.EINVAL
        if total > self.size or length > DYNPTR_MAX_SIZE:
            return -errno.E2BIG
        if flags & DISCARD_BIT:
            self.consumer_pos = cons + total
            return -errno.EAGAIN
        if flags & BUSY_BIT:
            return -errno.ENODATA
        return self.region.base + ((cons + HDR_SIZE) & self.mask), length

    def release_sample(self, length: int) -> None:
        """The drained record of ``length`` bytes is consumed."""
        self.consumer_pos += round8(length + HDR_SIZE)

    def drain(self, callback: Callable[[int, int], int], flags: int = 0) -> int:
        """bpf_user_ringbuf_drain: ``callback(address, length)`` per record (see the module)."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -errno.EINVAL
        if self.busy:
            return -errno.EBUSY
        self.busy = True
        try:
            samples = discarded = ret = 0
            while samples < MAX_SAMPLES and ret == 0:
                got = self.peek()
                if isinstance(got, int):
                    if got == -errno.ENODATA:
                        break
                    if got != -errno.EAGAIN:
                        return got
                    discarded += 1
                else:
                    address, length = got
                    ret = callback(address, length)
                    self.release_sample(length)
                samples += 1
            return samples - discarded
        finally:
            self.busy = False

    # --- user space: no element commands ---------------------------------------------------
    def lookup(self, key: bytes | None, flags: int = 0) -> bytes:
        sys_lookup(self, flags)
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def update(self, key: bytes | None, value: bytes, flags: int = 0) -> None:
        sys_update(self, flags)
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def delete(self, key: bytes | None) -> None:
        self._check_writable_from_user()
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        sys_lookup_and_delete(self, flags)
        raise fail(ENOTSUPP, "ring buffers have no elements")

    def keys(self):
        return iter(())

    def items(self):
        return iter(())

    def __len__(self) -> int:
        return 0
