"""A simulated kernel/user address space for the probe_read family of helpers.

A real tracing program reads memory it cannot touch directly — a
``task_struct`` behind ``bpf_get_current_task()``, a user buffer a syscall
was given — through ``bpf_probe_read_kernel`` / ``_user`` and their ``_str``
variants, which never fault: an unreadable address zero-fills the
destination and returns ``-EFAULT``.  pybpf has no kernel memory, so
:class:`KernelMemory` holds *fake* addresses mapped to bytes that tests and
tools place there::

    kmem = kmem_of(kernel)                       # kernel.kmem, created on first use
    task = kmem.place(b"...task_struct bytes...")  # a kernel address (0xffff88...)
    buf = kmem.place(b"hello\\0", user=True)        # a user address (0x10000000...)
    kmem.map(0xffffffff81000000, b"\\x90" * 16)       # or at an address of your choice

Addresses follow x86-64: below ``TASK_SIZE_MAX`` (``0x7ffffffff000``) is user
space, from ``0xffff800000000000`` kernel space.  The helpers decide what a
read of the wrong kind gives (see :mod:`pybpf.runtime.helpers.probe`); this
module only stores bytes.  Segments never overlap; a read may span adjacent
segments but fails as a whole when any byte is unmapped, as
``copy_from_kernel_nofault`` does.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

TASK_SIZE_MAX = (1 << 47) - 4096  # x86-64, 4-level paging
PAGE_SIZE = 4096
KERNEL_BASE = 0xFFFF_8880_0000_0000  # the direct map, where kmalloc'ed objects live
USER_BASE = 0x1000_0000


def is_user_address(address: int) -> bool:
    """True for an address below TASK_SIZE_MAX (user space on x86-64)."""
    return address < TASK_SIZE_MAX


@dataclass(eq=False)
class Segment:
    """``data`` mapped at ``base`` (a writable bytearray)."""

    base: int
    data: bytearray
    name: str = ""

    @property
    def end(self) -> int:
        return self.base + len(self.data)


class KernelMemory:
    """Fake kernel and user memory: segments of bytes at chosen addresses."""

    def __init__(self) -> None:
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._next = {False: KERNEL_BASE, True: USER_BASE}

    # --- placing memory --------------------------------------------------------------
    def map(self, address: int, data: bytes | int, name: str = "") -> Segment:
        """Map ``data`` (or that many zero bytes) at ``address``; ValueError on overlap."""
        buf = bytearray(data)  # an int gives that many zero bytes
        if not buf:
            raise ValueError("cannot map an empty segment")
        if address < 0 or address + len(buf) > 1 << 64:
            raise ValueError(f"segment at {address:#x} is outside the 64-bit address space")
        i = bisect_right(self._bases, address)
        if i > 0 and self._segments[i - 1].end > address:
            raise ValueError(f"segment at {address:#x} overlaps {self._segments[i - 1].name!r}")
        if i < len(self._segments) and self._segments[i].base < address + len(buf):
            raise ValueError(f"segment at {address:#x} overlaps {self._segments[i].name!r}")
        seg = Segment(address, buf, name)
        self._segments.insert(i, seg)
        self._bases.insert(i, address)
        return seg

    def place(self, data: bytes | int, *, user: bool = False, name: str = "",
              align: int = 64) -> int:  # fmt: skip
        """Map ``data`` at the next free address of kernel (or user) space; returns it."""
        size = data if isinstance(data, int) else len(data)
        address = -(-self._next[user] // align) * align
        self.map(address, data, name)
        self._next[user] = address + max(size, 1) + PAGE_SIZE  # an unmapped gap after it
        return address

    def unmap(self, address: int) -> None:
        """Remove the segment starting at ``address`` (KeyError if none)."""
        i = bisect_right(self._bases, address) - 1
        if i < 0 or self._bases[i] != address:
            raise KeyError(f"no segment starts at {address:#x}")
        del self._segments[i], self._bases[i]

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    # --- access ------------------------------------------------------------------
    def _segment(self, address: int) -> Segment | None:
        i = bisect_right(self._bases, address) - 1
        if i >= 0 and address < self._segments[i].end:
            return self._segments[i]
        return None

    def read(self, address: int, size: int) -> bytes | None:
        """The ``size`` bytes at ``address``, or None when any of them is unmapped."""
        out = bytearray()
        while len(out) < size:
            seg = self._segment(address + len(out))
            if seg is None:
                return None
            off = address + len(out) - seg.base
            out += seg.data[off : off + size - len(out)]
        return bytes(out)

    def write(self, address: int, data: bytes) -> bool:
        """Store ``data`` at ``address``; False (nothing written) when any byte is unmapped."""
        if self.read(address, len(data)) is None:
            return False
        done = 0
        while done < len(data):
            seg = self._segment(address + done)
            assert seg is not None
            off = address + done - seg.base
            chunk = data[done : done + len(seg.data) - off]
            seg.data[off : off + len(chunk)] = chunk
            done += len(chunk)
        return True

    def read_str(self, address: int, limit: int) -> tuple[bytes, bool]:
        """Bytes from ``address`` up to a NUL (excluded) or ``limit`` bytes.

        Returns (bytes, complete): ``complete`` is False when an unmapped
        byte was reached before the NUL or the limit.
        """
        out = bytearray()
        while len(out) < limit:
            seg = self._segment(address + len(out))
            if seg is None:
                return bytes(out), False
            off = address + len(out) - seg.base
            chunk = seg.data[off : off + limit - len(out)]
            nul = chunk.find(0)
            if nul >= 0:
                out += chunk[:nul]
                return bytes(out), True
            out += chunk
        return bytes(out), True


def kmem_of(kernel) -> KernelMemory:
    """``kernel.kmem``, created (and attached to the kernel) on first use."""
    kmem = getattr(kernel, "kmem", None)
    if kmem is None:
        kmem = KernelMemory()
        kernel.kmem = kmem
    return kmem
