"""BPF_MAP_TYPE_CPUMAP: XDP redirect targets that are CPUs (kernel/bpf/cpumap.c).

Contract at creation, after map_create's generic checks: max_entries > 0,
key_size 4, value_size 4 (``struct bpf_cpumap_val``'s qsize) or 8 (qsize and
a program fd), flags NUMA_NODE only: EINVAL; max_entries above NR_CPUS (256
on the reference kernel) E2BIG.

The key is a CPU number, the value the size of the queue feeding that CPU's
kthread.  Update (after the syscall's EPERM and BPF_F_LOCK checks): flags
beyond EXIST EINVAL, a key >= max_entries E2BIG, NOEXIST always EEXIST (EXIST
needs no entry), a qsize above 16384 EOVERFLOW, a CPU that is not possible
(>= the kernel's CPUs) ENODEV, qsize 0 empties the slot; with an 8-byte value
a program fd > 0 must name an XDP program (``resolve_fd``; anything else
fails the entry's allocation: ENOMEM).  Lookup answers the value with the
program's id in place of its fd (ENOENT for an empty slot); delete is EINVAL
out of range, else 0; get_next_key walks indexes as arrays do;
lookup_and_delete is ENOTSUPP (524).  :meth:`target` serves
bpf_redirect_map: the CPU, or None.
"""

from __future__ import annotations

import errno

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ALL_FLAGS,
    ENOTSUPP,
    NR_CPUS,
    FdResolver,
    check_generic,
    next_index,
    s32,
    sys_lookup,
    sys_lookup_and_delete,
    sys_update,
    u32,
)  # fmt: skip

QSIZE_MAX = 16384  # cpu_map_update_elem's sanity limit


@register(MapType.CPUMAP)
class CpuMap(Map):
    """Queues to CPUs by CPU number (see the module docstring)."""

    allowed_flags = ALL_FLAGS  # checked in check_attr, in the kernel's order

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1,
                 resolve_fd: FdResolver | None = None) -> None:  # fmt: skip
        super().__init__(attr, space, ncpus=ncpus)
        self.resolve_fd = resolve_fd
        self._entries: dict[int, tuple[int, object | None]] = {}  # cpu -> (qsize, program)

    def check_attr(self, attr: MapAttr) -> None:
        check_generic(attr)
        if (not attr.max_entries or attr.key_size != 4 or attr.value_size not in (4, 8)
                or attr.map_flags & ~MapFlag.NUMA_NODE):  # fmt: skip
            raise fail(errno.EINVAL, "cpumap: max_entries > 0, key_size 4, value_size 4 or 8, "
                                     "flags NUMA_NODE only")  # fmt: skip
        if attr.max_entries > NR_CPUS:
            raise fail(errno.E2BIG, f"max_entries {attr.max_entries} > NR_CPUS {NR_CPUS}")

    def release(self) -> None:
        self._entries.clear()

    def target(self, key: int) -> int | None:
        """bpf_redirect_map's target: the CPU ``key`` when it has a queue, else None."""
        return key if key in self._entries else None

    def _value(self, cpu: int) -> bytes:
        qsize, prog = self._entries[cpu]
        out = qsize.to_bytes(4, "little")
        if self.value_size == 8:
            out += int(getattr(prog, "id", 0) if prog is not None else 0).to_bytes(4, "little")
        return out

    # --- user space -----------------------------------------------------------------------
    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        sys_update(self, flags)
        self._check_key(key)
        self._check_value(value)
        cpu, qsize = u32(key), u32(value)
        if flags > UpdateFlag.EXIST:
            raise fail(errno.EINVAL, f"update flags {flags:#x}")
        if cpu >= self.max_entries:
            raise fail(errno.E2BIG, f"cpu {cpu} >= max_entries {self.max_entries}")
        if flags == UpdateFlag.NOEXIST:
            raise fail(errno.EEXIST, "cpumap slots always exist")
        if qsize > QSIZE_MAX:
            raise fail(errno.EOVERFLOW, f"qsize {qsize} > {QSIZE_MAX}")
        if cpu >= self.ncpus:
            raise fail(errno.ENODEV, f"cpu {cpu} is not a possible CPU")
        if not qsize:
            self._entries.pop(cpu, None)
            return
        prog = None
        fd = s32(value[4:8]) if self.value_size == 8 else 0
        if fd > 0:
            prog = self.resolve_fd(fd) if self.resolve_fd is not None else None
            if prog is None or getattr(prog, "prog_type", None) is None:
                raise fail(errno.ENOMEM, f"fd {fd} is not an XDP program: no entry allocated")
        self._entries[cpu] = (qsize, prog)

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        sys_lookup(self, flags)
        self._check_key(key)
        cpu = u32(key)
        if cpu not in self._entries:
            raise fail(errno.ENOENT, f"no queue to cpu {cpu}")
        return self._value(cpu)

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        cpu = u32(key)
        if cpu >= self.max_entries:
            raise fail(errno.EINVAL, f"cpu {cpu} >= max_entries {self.max_entries}")
        self._entries.pop(cpu, None)

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        return next_index(key, self.max_entries)

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        sys_lookup_and_delete(self, flags)
        raise fail(ENOTSUPP, "cpumaps have no lookup_and_delete")

    def keys(self):
        return iter([k.to_bytes(4, "little") for k in sorted(self._entries)])

    def __len__(self) -> int:
        return len(self._entries)

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return 0  # the verifier allows only bpf_redirect_map on cpumaps
