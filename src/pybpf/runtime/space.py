"""The simulated kernel's address space: every buffer programs may reach.

One :class:`AddressSpace` belongs to one :class:`~pybpf.runtime.kernel.Kernel`.
Maps allocate their value storage here (array values in one block, each hash
element in its own buffer), the kernel allocates map "objects" (the pointer
an ld_imm64 of a map fd yields) and contexts here, and every interpreter the
kernel creates checks its accesses against this one
:class:`~pybpf.vm.memory.Memory`.  An address stays valid until its owner
frees it — a hash element's value until the element is deleted — exactly the
lifetime the kernel guarantees a program.
"""

from __future__ import annotations

from pybpf.vm.memory import Memory, Region, native_buffer


class AddressSpace:
    """Allocation of named regions inside one shared Memory."""

    def __init__(self) -> None:
        self.memory = Memory()

    def alloc(self, name: str, size: int, *, writable: bool = True, native: bool = False) -> Region:
        """A zeroed region of ``size`` bytes (at least 1), now reachable by programs.

        ``native`` allocates a ctypes array instead of a bytearray (for
        buffers a native JIT or mmap-like sharing will use directly).
        """
        size = max(1, size)
        buf = native_buffer(size) if native else bytearray(size)
        return self.memory.add(Region(name, buf, writable))

    def free(self, region: Region) -> None:
        """Make ``region`` unreachable; its address must not be used again."""
        self.memory.remove(region)

    def find(self, address: int, size: int = 1) -> Region | None:
        """The region holding [address, address+size), or None."""
        return self.memory.find(address, size)
