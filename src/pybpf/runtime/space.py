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

from collections.abc import Callable

from pybpf.vm.memory import Memory, Region, native_buffer


class AddressSpace:
    """Allocation of named regions inside one shared Memory.

    ``shared_memory``, when set (by the persistent kernel model while it creates a
    map), provides the buffers of regions allocated ``shared=True``: a callable
    ``(name, size) -> ctypes array`` returning a mapping of a file, so other
    processes mapping the same file see the same bytes live.
    """

    def __init__(self) -> None:
        self.memory = Memory()
        self.shared_memory: Callable[[str, int], object] | None = None

    def alloc(self, name: str, size: int, *, writable: bool = True, native: bool = False,
              shared: bool = False) -> Region:  # fmt: skip
        """A zeroed region of ``size`` bytes (at least 1), now reachable by programs.

        ``native`` allocates a ctypes array instead of a bytearray (for
        buffers a native JIT or mmap-like sharing will use directly);
        ``shared`` takes the buffer from :attr:`shared_memory` when it is set
        (a map's values other processes may map: not necessarily zeroed).
        """
        size = max(1, size)
        if shared and self.shared_memory is not None:
            region = Region(name, self.shared_memory(name, size), writable)
            region.native_atomic = _shared_atomic  # other processes write it too
            return self.memory.add(region)
        buf = native_buffer(size) if native else bytearray(size)
        return self.memory.add(Region(name, buf, writable))

    def free(self, region: Region) -> None:
        """Make ``region`` unreachable; its address must not be used again."""
        self.memory.remove(region)

    def find(self, address: int, size: int = 1) -> Region | None:
        """The region holding [address, address+size), or None."""
        return self.memory.find(address, size)


def _shared_atomic(address: int, size: int, op: int, value: int, r0: int) -> int:
    """BPF_ATOMIC on shared memory with the hardware's atomics (compiled on first use)."""
    from pybpf.jit.atomics import host_atomics

    return host_atomics()(address, size, op, value, r0)
