"""Arrays whose values are kernel objects named by fds (arraymap.c, fd_array part).

Shared by prog_array, perf_event_array and array_of_maps.  Contract:
key_size 4 and value_size 4 (an fd from user space), max_entries > 0, no
RDONLY_PROG/WRONLY_PROG, no MMAPABLE (EINVAL).  Update takes flags ANY only
(EINVAL), an index >= max_entries is E2BIG, then the fd is resolved through
:attr:`FdArrayMap.resolve_fd` (EBADF when it names nothing, EINVAL when the
object does not fit).  Lookup of an empty or out-of-range slot is ENOENT and
returns the object's id (u32); delete of an out-of-range slot is E2BIG, of
an empty one ENOENT.  :meth:`set` stores an object without an fd.
"""

from __future__ import annotations

import errno

from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ENOTSUPP,
    FdResolver,
    check_lookup_flags,
    next_index,
    resolve,
    u32,
)  # fmt: skip


class FdArrayMap(Map):
    """Slots holding objects (see the module docstring); subclasses say what fits."""

    allowed_flags = MapFlag.NUMA_NODE | MapFlag.RDONLY | MapFlag.WRONLY
    what = "object"
    sys_lookup = True  # user space may look up (ids); perf_event_array may not

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1,
                 resolve_fd: FdResolver | None = None) -> None:  # fmt: skip
        super().__init__(attr, space, ncpus=ncpus)
        self.resolve_fd = resolve_fd
        self._slots: dict[int, object] = {}  # index -> object: sparse, as 1e9 slots may be

    def check_attr(self, attr: MapAttr) -> None:
        if attr.value_size != 4 or attr.map_flags & (MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG):
            raise fail(errno.EINVAL, "fd arrays need value_size 4 and no program access flags")
        super().check_attr(attr)
        if attr.key_size != 4 or attr.max_entries == 0:
            raise fail(errno.EINVAL, "fd arrays need key_size 4 and max_entries > 0")

    def release(self) -> None:
        self._slots = {}

    # --- what a subclass decides ------------------------------------------------------
    def accept(self, obj: object) -> None:
        """Raise EINVAL when ``obj`` may not be stored here."""

    def ident(self, obj: object) -> int:
        """What a user-space lookup returns for ``obj`` (its id)."""
        return int(getattr(obj, "id", 0))

    # --- user space -------------------------------------------------------------------
    def set(self, index: int, obj: object) -> None:
        """Store ``obj`` at ``index`` as an update with its fd would (E2BIG, EINVAL)."""
        self._check_writable_from_user()
        if index >= self.max_entries:
            raise fail(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        self.accept(obj)
        self._slots[index] = obj

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        self._check_writable_from_user()
        if flags & UpdateFlag.F_LOCK:
            raise fail(errno.EINVAL, "no spin lock")
        self._check_key(key)
        self._check_value(value)
        if flags != UpdateFlag.ANY:
            raise fail(errno.EINVAL, "fd arrays take BPF_ANY only")
        index = u32(key)
        if index >= self.max_entries:
            raise fail(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        self.set(index, resolve(self.resolve_fd, u32(value), self.what))

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        check_lookup_flags(flags)
        self._check_readable_from_user()
        self._check_key(key)
        if not self.sys_lookup:
            raise fail(ENOTSUPP, "user space cannot look this map up")
        obj = self.object_at(u32(key))
        if obj is None:
            raise fail(errno.ENOENT, "empty slot")
        return self.ident(obj).to_bytes(4, "little")

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        index = u32(key)
        if index >= self.max_entries:
            raise fail(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        if self._slots.pop(index, None) is None:
            raise fail(errno.ENOENT, "empty slot")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        return next_index(key, self.max_entries)

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        self._check_readable_from_user()
        self._check_writable_from_user()
        raise fail(ENOTSUPP, "fd arrays have no lookup_and_delete")

    def keys(self):
        return iter([i.to_bytes(4, "little") for i in sorted(self._slots)])

    def __len__(self) -> int:
        return len(self._slots)

    def object_at(self, index: int) -> object | None:
        """The object in slot ``index`` (None when empty or out of range)."""
        return self._slots.get(index)

    def occupied(self) -> list[tuple[int, object]]:
        """The filled slots, by index."""
        return sorted(self._slots.items(), key=lambda item: item[0])
