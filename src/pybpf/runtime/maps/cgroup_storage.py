"""BPF_MAP_TYPE_CGROUP_STORAGE and PERCPU_CGROUP_STORAGE (kernel/bpf/local_storage.c).

The storage of a cgroup program: one value per (cgroup, attach type), which
the kernel allocates when a program using the map is attached to a cgroup
(and for the duration of a test run), and which the program reaches through
bpf_get_local_storage.

Contract at creation (cgroup_storage_map_alloc, after map_create's generic
checks, in this order): key_size 16 (struct bpf_cgroup_storage_key: u64
cgroup inode id, u32 attach type, padding) or 8 (the cgroup id alone: one
storage per cgroup, shared by its attach types), else EINVAL; value_size 0
EINVAL; a value_size above 65407 (per-CPU: 32768) E2BIG; flags other than
NUMA_NODE and the access flags, or RDONLY_PROG with WRONLY_PROG, EINVAL;
max_entries other than 0 EINVAL.  No BTF is needed.

User space sees the storages that are linked (:meth:`link`, what attaching
does): lookup is ENOENT for any other key; update never creates (ENOENT)
and takes flags ANY and EXIST only (the shared flavour also lets
BPF_F_LOCK through to the spin-lock check; anything else EINVAL); delete is
always EINVAL; get_next_key walks the storages newest first and is ENOENT
for a key that is not linked; lookup_and_delete is ENOTSUPP (524).  Keys
compare on the cgroup id and attach type only (padding ignored).  Per-CPU
values are exchanged as ``round_up(value_size, 8)`` bytes per CPU.

Programs: :meth:`CgroupStorage.address` is what bpf_get_local_storage
returns for the storage the program runs with (per CPU for the per-CPU
flavour); :meth:`detached` makes the storage of a test run, which user
space never sees.
"""

from __future__ import annotations

import errno
import struct

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ACCESS_MASK,
    ALL_FLAGS,
    ENOTSUPP,
    LOCAL_STORAGE_MAX_VALUE_SIZE,
    PCPU_MIN_UNIT_SIZE,
    access_ok,
    check_generic,
    round8,
    sys_lookup,
    sys_lookup_and_delete,
    sys_update,
)  # fmt: skip
from pybpf.vm.memory import Region

KEY_ISOLATED = 16  # sizeof(struct bpf_cgroup_storage_key)
KEY_SHARED = 8  # a bare u64 cgroup inode id
_KEY = struct.Struct("<QI4x")


class CgroupStorage:
    """One storage: a value (per CPU for the per-CPU flavour) in the address space."""

    def __init__(self, m: CgroupStorageMap, ident: tuple[int, int]) -> None:
        self.map = m
        self.ident = ident  # (cgroup id, attach type); attach type 0 for 8-byte keys
        count = m.ncpus if m.percpu else 1
        self.regions: list[Region] = [
            m.space.alloc(f"{m.map_type.name.lower()}:{m.name}:{ident[0]}", m.stride)
            for _ in range(count)
        ]

    def address(self, cpu: int = 0) -> int:
        """bpf_get_local_storage: this storage's value (on ``cpu`` for per-CPU storage)."""
        return self.regions[cpu % len(self.regions)].base

    def read(self) -> bytes:
        """The value as user space reads it (per-CPU: every CPU's, rounded up to 8)."""
        if not self.map.percpu:
            return bytes(self.regions[0].view[: self.map.value_size])
        return b"".join(bytes(r.view[: self.map.stride]) for r in self.regions)

    def write(self, value: bytes) -> None:
        if not self.map.percpu:
            self.regions[0].view[: self.map.value_size] = value
            return
        stride = self.map.stride
        for i, r in enumerate(self.regions):
            r.view[:stride] = value[i * stride : (i + 1) * stride]

    def free(self) -> None:
        for r in self.regions:
            self.map.space.free(r)
        self.regions = []


@register(MapType.CGROUP_STORAGE)
class CgroupStorageMap(Map):
    """Storages by (cgroup, attach type) (see the module docstring)."""

    allowed_flags = ALL_FLAGS  # checked in check_attr, in the kernel's order
    percpu = False

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.stride = round8(attr.value_size) if self.percpu else attr.value_size
        self._linked: dict[tuple[int, int], CgroupStorage] = {}  # oldest first

    def check_attr(self, attr: MapAttr) -> None:
        check_generic(attr)
        limit = LOCAL_STORAGE_MAX_VALUE_SIZE
        if self.percpu:
            limit = min(limit, PCPU_MIN_UNIT_SIZE)
        if attr.key_size not in (KEY_ISOLATED, KEY_SHARED) or not attr.value_size:
            raise fail(errno.EINVAL, "cgroup storage: key_size 16 or 8, a value")
        if attr.value_size > limit:
            raise fail(errno.E2BIG, f"value_size {attr.value_size} > {limit}")
        flags = attr.map_flags
        if flags & ~(MapFlag.NUMA_NODE | ACCESS_MASK) or not access_ok(flags):
            raise fail(errno.EINVAL, f"map_flags {flags:#x} not allowed for cgroup storage")
        if attr.max_entries:
            raise fail(errno.EINVAL, "cgroup storage takes max_entries 0")

    def release(self) -> None:
        for st in self._linked.values():
            st.free()
        self._linked.clear()

    @property
    def user_value_size(self) -> int:
        return self.stride * self.ncpus if self.percpu else self.value_size

    # --- keys -----------------------------------------------------------------------------
    @property
    def isolated(self) -> bool:
        """Whether storages are per attach type (16-byte keys)."""
        return self.key_size == KEY_ISOLATED

    def _ident(self, cgroup_id: int, attach_type: int = 0) -> tuple[int, int]:
        return (cgroup_id, attach_type if self.isolated else 0)

    def _ident_of(self, key: bytes) -> tuple[int, int]:
        if self.isolated:
            cgroup_id, attach_type = _KEY.unpack_from(key)
            return cgroup_id, attach_type
        return int.from_bytes(key[:8], "little"), 0

    def _key_of(self, ident: tuple[int, int]) -> bytes:
        return _KEY.pack(*ident) if self.isolated else ident[0].to_bytes(8, "little")

    # --- storages ---------------------------------------------------------------------------
    def link(self, cgroup_id: int, attach_type: int = 0) -> CgroupStorage:
        """The storage of a program attached to ``cgroup_id`` (bpf_cgroup_storage_link).

        With 8-byte keys one storage serves every attach type of a cgroup:
        linking again returns it.  With 16-byte keys a second link of the same
        pair is EEXIST.
        """
        ident = self._ident(cgroup_id, attach_type)
        st = self._linked.get(ident)
        if st is not None:
            if self.isolated:
                raise fail(errno.EEXIST, f"cgroup {cgroup_id} attach type {attach_type} "
                                         "already has a storage")  # fmt: skip
            return st
        st = CgroupStorage(self, ident)
        self._linked[ident] = st
        return st

    def unlink(self, cgroup_id: int, attach_type: int = 0) -> None:
        """Free the storage of a detached program (ENOENT when there is none)."""
        st = self._linked.pop(self._ident(cgroup_id, attach_type), None)
        if st is None:
            raise fail(errno.ENOENT, f"no storage for cgroup {cgroup_id}")
        st.free()

    def storage_at(self, cgroup_id: int, attach_type: int = 0) -> CgroupStorage | None:
        """The linked storage of (``cgroup_id``, ``attach_type``), or None."""
        return self._linked.get(self._ident(cgroup_id, attach_type))

    def detached(self) -> CgroupStorage:
        """A zeroed storage no cgroup links (what a test run gets); free it when done."""
        return CgroupStorage(self, (0, 0))

    # --- user space -----------------------------------------------------------------------
    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        sys_lookup(self, flags)
        self._check_key(key)
        st = self._linked.get(self._ident_of(key))
        if st is None:
            raise fail(errno.ENOENT, "no storage linked under this key")
        return st.read()

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        sys_update(self, flags)
        self._check_key(key)
        self._check_value(value)
        allowed = (UpdateFlag.ANY, UpdateFlag.EXIST)
        if flags not in allowed:
            raise fail(errno.EINVAL, f"update flags {flags:#x}: ANY or EXIST only")
        st = self._linked.get(self._ident_of(key))
        if st is None:
            raise fail(errno.ENOENT, "no storage linked under this key")
        st.write(bytes(value))

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        raise fail(errno.EINVAL, "cgroup storage is freed by detaching, not deleted")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        order = list(reversed(self._linked))  # newest first: the kernel adds at the head
        if not order:
            raise fail(errno.ENOENT, "no storage linked")
        if key is None:
            return self._key_of(order[0])
        self._check_key(key)
        ident = self._ident_of(key)
        if ident not in self._linked:
            raise fail(errno.ENOENT, "no storage linked under this key")
        i = order.index(ident) + 1
        if i == len(order):
            raise fail(errno.ENOENT, "last storage")
        return self._key_of(order[i])

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        sys_lookup_and_delete(self, flags)
        raise fail(ENOTSUPP, "cgroup storage has no lookup_and_delete")

    def __len__(self) -> int:
        return len(self._linked)


@register(MapType.PERCPU_CGROUP_STORAGE)
class PercpuCgroupStorageMap(CgroupStorageMap):
    """A value per CPU in each storage."""

    percpu = True
