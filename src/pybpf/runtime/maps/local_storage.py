"""Local storage: BPF_MAP_TYPE_SK_STORAGE, INODE_STORAGE, TASK_STORAGE and CGRP_STORAGE.

A local-storage map keeps one value per *owner* (a socket, an inode, a task,
a cgroup), created on demand; the map itself has no keys of its own.

Contract at creation (bpf_local_storage_map_alloc_check, after map_create's
generic checks): flags within BPF_F_NO_PREALLOC | BPF_F_CLONE and
BPF_F_NO_PREALLOC present, max_entries 0, key_size 4 (an int), value_size
non-zero and both a BTF key and a BTF value type (the kernel demands BTF so
that user space can dump the values): EINVAL otherwise; a value_size above
BPF_LOCAL_STORAGE_MAX_VALUE_SIZE (65407: U16_MAX minus the element header) is
E2BIG.  pybpf has no BTF object at creation, so "has BTF" is "names non-zero
BTF type ids"; the kernel further wants the key type to be a 32-bit int.

User space names an owner by a file descriptor in the key: a socket for
sk_storage (anything else: ENOTSOCK), any open file for inode_storage (its
inode), a pidfd for task_storage and a cgroup directory for cgrp_storage
(anything else: EBADF).  ``resolve_fd`` turns the fd into the owner object;
without one, or when it names nothing, the command is EBADF — what the kernel
answers for a descriptor that is not open.  An object with a ``kind``
attribute is checked against :attr:`LocalStorageMap.owner_kind`.  The owner's
identity is its ``address`` attribute when it has one (the pointer programs
hold), else the object itself.

Element commands after the syscall's own checks (EPERM for a frozen or
read-only map, EINVAL for BPF_F_LOCK: values hold no spin lock): lookup is
ENOENT when the owner has no value; update resolves the fd first, then
refuses flags beyond BPF_EXIST (EINVAL), NOEXIST on a present value (EEXIST)
and EXIST on an absent one (ENOENT); delete is ENOENT when absent;
get_next_key and lookup_and_delete are ENOTSUPP (524).

Programs: :meth:`storage_get` (bpf_*_storage_get: the value's address; with
BPF_LOCAL_STORAGE_GET_F_CREATE a missing value is created from the given
bytes or zeros; other flags give NULL) and :meth:`storage_delete`
(bpf_*_storage_delete: 0 or -ENOENT).  Each value is its own region, stable
while it exists.
"""

from __future__ import annotations

import errno

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ALL_FLAGS,
    ENOTSUPP,
    LOCAL_STORAGE_MAX_VALUE_SIZE,
    FdResolver,
    check_generic,
    s32,
    sys_lookup,
    sys_lookup_and_delete,
    sys_update,
)  # fmt: skip
from pybpf.vm.memory import Region

CREATE_FLAGS = MapFlag.NO_PREALLOC | MapFlag.CLONE  # BPF_LOCAL_STORAGE_CREATE_FLAG_MASK
GET_F_CREATE = 1  # BPF_LOCAL_STORAGE_GET_F_CREATE (BPF_SK_STORAGE_GET_F_CREATE)


def check_local_storage(attr: MapAttr) -> None:
    """bpf_local_storage_map_alloc_check, after map_create's generic checks."""
    check_generic(attr)
    flags = attr.map_flags
    if (flags & ~CREATE_FLAGS or not flags & MapFlag.NO_PREALLOC or attr.max_entries
            or attr.key_size != 4 or not attr.value_size
            or not attr.btf_key_type_id or not attr.btf_value_type_id):  # fmt: skip
        raise fail(errno.EINVAL, "local storage needs BPF_F_NO_PREALLOC, max_entries 0, "
                                 "key_size 4, a value and BTF key and value types")  # fmt: skip
    if attr.value_size > LOCAL_STORAGE_MAX_VALUE_SIZE:
        raise fail(errno.E2BIG, f"value_size {attr.value_size} > "
                                f"{LOCAL_STORAGE_MAX_VALUE_SIZE}")  # fmt: skip


class LocalStorageMap(Map):
    """One value per owner (see the module docstring); subclasses name the owner."""

    allowed_flags = ALL_FLAGS  # checked in check_attr, in the kernel's order
    #: what ``resolve_fd`` must return (the object's ``kind``); None: any object
    owner_kind: str | None = None
    #: the errno of a descriptor that names something else
    wrong_kind = errno.EBADF

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1,
                 resolve_fd: FdResolver | None = None) -> None:  # fmt: skip
        super().__init__(attr, space, ncpus=ncpus)
        self.resolve_fd = resolve_fd
        self._values: dict[object, Region] = {}

    def check_attr(self, attr: MapAttr) -> None:
        check_local_storage(attr)

    def release(self) -> None:
        for region in self._values.values():
            self.space.free(region)
        self._values.clear()

    # --- owners -------------------------------------------------------------------------
    @staticmethod
    def identity(owner: object) -> object:
        """What tells owners apart: an ``address`` attribute, else the object itself."""
        address = getattr(owner, "address", None)
        return address if isinstance(address, int) else owner

    def _owner(self, key: bytes) -> object:
        fd = s32(key)
        obj = self.resolve_fd(fd) if self.resolve_fd is not None else None
        if obj is None:
            raise fail(errno.EBADF, f"fd {fd} is not open")
        kind = getattr(obj, "kind", None)
        if self.owner_kind is not None and kind is not None and kind != self.owner_kind:
            raise fail(self.wrong_kind, f"fd {fd} is a {kind}, not a {self.owner_kind}")
        return self.identity(obj)

    def owners(self) -> list[object]:
        """The owners holding a value of this map, oldest first."""
        return list(self._values)

    def _create(self, owner: object, value: bytes | None) -> Region:
        region = self.space.alloc(f"{self.map_type.name.lower()}:{self.name}", self.value_size)
        if value:
            region.view[: self.value_size] = value[: self.value_size]
        self._values[owner] = region
        return region

    # --- user space -----------------------------------------------------------------------
    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        sys_lookup(self, flags)
        self._check_key(key)
        region = self._values.get(self._owner(key))
        if region is None:
            raise fail(errno.ENOENT, "the owner has no value in this map")
        return bytes(region.view[: self.value_size])

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        sys_update(self, flags)
        self._check_key(key)
        self._check_value(value)
        owner = self._owner(key)
        if flags & ~UpdateFlag.F_LOCK > UpdateFlag.EXIST:
            raise fail(errno.EINVAL, f"update flags {flags:#x}")
        region = self._values.get(owner)
        if region is not None and flags == UpdateFlag.NOEXIST:
            raise fail(errno.EEXIST, "the owner already has a value")
        if region is None and flags == UpdateFlag.EXIST:
            raise fail(errno.ENOENT, "the owner has no value")
        if region is None:
            self._create(owner, bytes(value))
        else:
            region.view[: self.value_size] = bytes(value)

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        if self.storage_delete(self._owner(key)):
            raise fail(errno.ENOENT, "the owner has no value in this map")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        raise fail(ENOTSUPP, "local storage has no keys to walk")

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        sys_lookup_and_delete(self, flags)
        raise fail(ENOTSUPP, "local storage has no lookup_and_delete")

    def keys(self):
        return iter(())  # descriptors are the process's, not the map's

    def items(self):
        return iter(())

    def __len__(self) -> int:
        return len(self._values)

    # --- programs -------------------------------------------------------------------------
    def storage_get(self, owner: object, value: bytes | None = None, flags: int = 0) -> int:
        """bpf_*_storage_get: the address of ``owner``'s value, 0 (NULL) when it has none.

        ``flags`` BPF_LOCAL_STORAGE_GET_F_CREATE creates a missing value from
        ``value`` (zeros when None); any other flag gives NULL, as does a None owner.
        """
        if owner is None or flags & ~GET_F_CREATE:
            return 0
        owner = self.identity(owner)
        region = self._values.get(owner)
        if region is None:
            if not flags & GET_F_CREATE:
                return 0
            region = self._create(owner, value)
        return region.base

    def storage_delete(self, owner: object) -> int:
        """bpf_*_storage_delete: 0, or -ENOENT when ``owner`` has no value."""
        region = self._values.pop(self.identity(owner), None)
        if region is None:
            return -errno.ENOENT
        self.space.free(region)
        return 0

    def storage_of(self, owner: object) -> int:
        """The address of ``owner``'s value, 0 when it has none (no creation)."""
        region = self._values.get(self.identity(owner))
        return region.base if region is not None else 0


@register(MapType.SK_STORAGE)
class SkStorageMap(LocalStorageMap):
    """Values owned by sockets (net/core/bpf_sk_storage.c)."""

    owner_kind = "socket"
    wrong_kind = errno.ENOTSOCK


@register(MapType.INODE_STORAGE)
class InodeStorageMap(LocalStorageMap):
    """Values owned by inodes: any open file names its inode (bpf_inode_storage.c)."""


@register(MapType.TASK_STORAGE)
class TaskStorageMap(LocalStorageMap):
    """Values owned by tasks, named by pidfds (bpf_task_storage.c)."""

    owner_kind = "task"


@register(MapType.CGRP_STORAGE)
class CgrpStorageMap(LocalStorageMap):
    """Values owned by cgroups, named by cgroup directory fds (bpf_cgrp_storage.c)."""

    owner_kind = "cgroup"
