"""Memory a program may touch: named regions of real host memory.

Every buffer a program can reach (its stack, the input memory or packet, a
context, map values) is a :class:`Region`: a writable Python buffer whose
host address is real (``ctypes.addressof``), so registers hold the same
pointers a native JIT or a helper written in C would see.  A region pins its
buffer (a bytearray cannot be resized while ctypes holds it), so an address
stays valid for the region's lifetime.

:class:`Memory` checks every access against its regions and raises
:class:`~pybpf.errors.MemoryFault` naming pc, address, size and the nearest
region; nothing outside the regions is ever read or written.

A Region subclass may take over its loads and stores: when it sets the class
attribute ``custom_access`` to True, :meth:`Memory.load` / :meth:`Memory.store`
call its ``load(pc, offset, size) -> int`` / ``store(pc, offset, size, value)``
(``offset`` from the region's base) instead of reading its buffer — this is
how a program type's context converts field accesses as the kernel's
``convert_ctx_access`` does.  Plain regions keep the direct path;
:meth:`Memory.read` / :meth:`Memory.write` (helpers) always see the raw buffer.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import ClassVar

from sortedcontainers import SortedKeyList

from pybpf.errors import MemoryFault
from pybpf.isa import AtomicOp

_UNSIGNED = {
    1: struct.Struct("<B"),
    2: struct.Struct("<H"),
    4: struct.Struct("<I"),
    8: struct.Struct("<Q"),
}


def native_buffer(size: int) -> ctypes.Array:
    """A zeroed ctypes byte array of ``size`` bytes (C-allocated, fixed address)."""
    return (ctypes.c_ubyte * size)()


def mapped_buffer(mapping) -> ctypes.Array:
    """A ctypes byte array over a writable buffer such as an ``mmap`` (same memory, no
    copy; the array keeps the mapping alive)."""
    return (ctypes.c_ubyte * len(mapping)).from_buffer(mapping)


def buffer_address(buf: bytearray | ctypes.Array) -> tuple[int, object]:
    """The host address of ``buf`` and an object that keeps it pinned."""
    if isinstance(buf, ctypes.Array):
        return ctypes.addressof(buf), buf
    if not buf:
        raise ValueError("an empty buffer has no address")
    pin = (ctypes.c_char * len(buf)).from_buffer(buf)
    return ctypes.addressof(pin), pin


@dataclass(eq=False)
class Region:
    """A named, bounds-checked window of host memory.

    ``buf`` is a writable buffer (bytearray or ctypes array) of ``size`` bytes
    at host address ``base``; ``writable`` False makes stores fault (a frozen
    .rodata map, a read-only context).
    """

    name: str
    buf: bytearray | ctypes.Array
    writable: bool = True
    custom_access: ClassVar[bool] = False  # True: Memory.load/store call self.load/store
    #: ``(address, size, op, value, r0) -> old``: hardware atomics for memory other
    #: processes share (set by the owner); None: Memory.atomic's load and store
    native_atomic: Callable[[int, int, int, int, int], int] | None = field(
        default=None, init=False, repr=False, compare=False)
    base: int = field(init=False)
    size: int = field(init=False)
    _pin: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        buf = self.buf
        if isinstance(buf, ctypes.Array):  # C memory: fixed address, viewed as bytes
            self.base, self._pin, self.size = ctypes.addressof(buf), buf, ctypes.sizeof(buf)
            self.view = memoryview(buf).cast("B")
        else:
            self.base, self._pin = buffer_address(buf)
            self.size = len(buf)
            self.view = buf if isinstance(buf, bytearray) else memoryview(self._pin).cast("B")

    @property
    def end(self) -> int:
        """One past the last address of the region."""
        return self.base + self.size


_base = attrgetter("base")  # the key regions are sorted by


class Memory:
    """The set of regions one program run may access, with checked accessors.

    Regions never overlap (they are distinct host buffers).  ``load`` and
    ``store`` are the interpreter's slow path; ``read``/``write`` serve
    helpers that take (pointer, length) arguments.

    The regions are kept sorted by base address in a ``SortedKeyList``
    (sortedcontainers): adding, removing and finding the region of an address
    are logarithmic, so a map holding a million elements (one region each)
    inserts and deletes them in near-constant time instead of moving a
    million-entry list every time.
    """

    def __init__(self, regions: list[Region] | None = None) -> None:
        self._sorted: SortedKeyList = SortedKeyList(key=_base)
        self._last: Region | None = None
        for region in regions or ():
            self.add(region)

    def add(self, region: Region) -> Region:
        """Make ``region`` accessible; returns it."""
        self._sorted.add(region)
        return region

    def _index(self, region: Region) -> int | None:
        """The position of ``region`` (this very object), or None."""
        ordered = self._sorted
        i = ordered.bisect_key_right(region.base) - 1
        while i >= 0:  # regions may share a base (empty ones): walk back over them
            other = ordered[i]
            if other is region:
                return i
            if other.base != region.base:
                return None
            i -= 1
        return None

    def remove(self, region: Region) -> None:
        """Make ``region`` inaccessible (a deleted map element, a finished run)."""
        i = self._index(region)
        if i is None:
            raise ValueError(f"region {region.name!r} is not in this memory")
        del self._sorted[i]
        self._last = None

    def __contains__(self, region: object) -> bool:
        """Whether ``region`` (this very object) is accessible."""
        return isinstance(region, Region) and self._index(region) is not None

    @property
    def regions(self) -> tuple[Region, ...]:
        """The regions, by address."""
        return tuple(self._sorted)

    def _below(self, address: int) -> Region | None:
        """The region with the highest base at or below ``address``, or None."""
        i = self._sorted.bisect_key_right(address) - 1
        return self._sorted[i] if i >= 0 else None

    def find(self, address: int, size: int) -> Region | None:
        """The region holding all of [address, address+size), or None."""
        last = self._last
        if last is not None and last.base <= address and address + size <= last.base + last.size:
            return last
        region = self._below(address)
        if region is not None and address + size <= region.base + region.size:
            self._last = region
            return region
        return None

    def _fault(
        self, pc: int, address: int, size: int, write: bool, reason: str | None = None
    ) -> MemoryFault:
        near, why = None, "outside every region"
        below = self._below(address)
        if below is not None and address < below.end:
            near, why = below.name, "crosses the end of"
        elif self._sorted:
            best = min(
                self.regions, key=lambda r: min(abs(address - r.base), abs(address - r.end))
            )
            near, why = best.name, "outside every region; nearest is"
        if reason:
            why = reason
        return MemoryFault(pc=pc, address=address, size=size, write=write, region=near, reason=why)

    def load(self, pc: int, address: int, size: int) -> int:
        """Read an unsigned little-endian integer of ``size`` bytes."""
        region = self.find(address, size)
        if region is None:
            raise self._fault(pc, address, size, False)
        if region.custom_access:
            return region.load(pc, address - region.base, size)
        return _UNSIGNED[size].unpack_from(region.view, address - region.base)[0]

    def store(self, pc: int, address: int, size: int, value: int) -> None:
        """Write the low ``size`` bytes of ``value``, little-endian."""
        region = self.find(address, size)
        if region is None:
            raise self._fault(pc, address, size, True)
        if region.custom_access:
            region.store(pc, address - region.base, size, value)
            return
        if not region.writable:
            raise self._fault(pc, address, size, True, "read-only region")
        _UNSIGNED[size].pack_into(
            region.view, address - region.base, value & ((1 << (8 * size)) - 1)
        )

    def atomic(self, pc: int, address: int, size: int, op: int, value: int, r0: int) -> int:
        """BPF_ATOMIC ``op`` on ``size`` bytes at ``address``; returns the old value.

        ADD/OR/AND/XOR (with or without FETCH) and XCHG store their result;
        CMPXCHG stores ``value`` only when the old value equals ``r0``.  The
        caller decides what lands in a register (the fetch forms, r0).
        """
        region = self.find(address, size)
        if region is not None and region.native_atomic is not None and region.writable \
                and size in (4, 8) and not region.custom_access:  # fmt: skip
            return region.native_atomic(address, size, op, value, r0)  # atomic across processes
        old = self.load(pc, address, size)
        mask = (1 << (8 * size)) - 1
        kind = op & ~AtomicOp.FETCH
        if op == AtomicOp.CMPXCHG:
            if old == r0 & mask:
                self.store(pc, address, size, value)
            return old
        if op == AtomicOp.XCHG:
            new = value
        elif kind == AtomicOp.ADD:
            new = old + value
        elif kind == AtomicOp.OR:
            new = old | value
        elif kind == AtomicOp.AND:
            new = old & value
        else:
            new = old ^ value
        self.store(pc, address, size, new)
        return old

    def read(self, address: int, size: int, pc: int = -1) -> bytes:
        """Copy ``size`` bytes out (for helpers); faults like a load."""
        if size == 0:
            return b""
        region = self.find(address, size)
        if region is None or size < 0:
            raise self._fault(pc, address, max(size, 0), False)
        off = address - region.base
        return bytes(region.view[off : off + size])

    def write(self, address: int, data: bytes, pc: int = -1) -> None:
        """Copy ``data`` in (for helpers); faults like a store."""
        if not data:
            return
        region = self.find(address, len(data))
        if region is None:
            raise self._fault(pc, address, len(data), True)
        if not region.writable:
            raise self._fault(pc, address, len(data), True, "read-only region")
        off = address - region.base
        region.view[off : off + len(data)] = data
