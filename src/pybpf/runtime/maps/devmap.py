"""Redirect targets: BPF_MAP_TYPE_DEVMAP, DEVMAP_HASH and XSKMAP (for bpf_redirect_map).

devmap / devmap_hash (kernel/bpf/devmap.c): key_size 4, value 4 bytes (an
ifindex) or 8 (struct bpf_devmap_val: ifindex, then a program fd), flags
NUMA_NODE/RDONLY/WRONLY (the kernel adds RDONLY_PROG itself: programs may
only read).  Update: flags beyond EXIST EINVAL; devmap: index >=
max_entries E2BIG, NOEXIST always EEXIST, ifindex 0 empties the slot;
devmap_hash: a new key in a full map E2BIG, NOEXIST/EXIST as hashes, ifindex
0 EINVAL.  A program fd > 0 in the value is EINVAL unless ``resolve_fd``
names a program.  An ifindex is accepted when :attr:`DevMap.valid_ifindex`
says so (default: any non-zero; the kernel says EINVAL for devices that do
not exist).  Delete: devmap EINVAL out of range, else 0; devmap_hash ENOENT
when absent.

xskmap (kernel/bpf/xskmap.c): key 4, value 4 (an AF_XDP socket fd resolved
by ``resolve_fd``, EBADF unknown); lookup from user space is EOPNOTSUPP;
delete EINVAL out of range, else 0.

:meth:`target` is what bpf_redirect_map needs: the ifindex, or the socket.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    FdResolver,
    check_lookup_flags,
    check_update_flags,
    next_index,
    resolve,
    u32,
)  # fmt: skip

DEV_FLAGS = MapFlag.NUMA_NODE | MapFlag.RDONLY | MapFlag.WRONLY


class _Targets(Map):
    """Slots or keys -> (value bytes, target); the shared user-space face."""

    allowed_flags = DEV_FLAGS
    hashed = False
    value_sizes = (4, 8)

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1,
                 resolve_fd: FdResolver | None = None) -> None:  # fmt: skip
        super().__init__(attr, space, ncpus=ncpus)
        self.resolve_fd = resolve_fd
        self.valid_ifindex: Callable[[int], bool] = lambda ifindex: ifindex > 0
        self._entries: dict[int, tuple[bytes, object]] = {}

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        if attr.key_size != 4 or attr.max_entries == 0 or attr.value_size not in self.value_sizes:
            raise fail(errno.EINVAL, f"key_size 4, value_size in {self.value_sizes}")

    def target(self, key: int) -> object | None:
        """The redirect target at ``key`` (ifindex or socket), None when empty."""
        entry = self._entries.get(key)
        return entry[1] if entry else None

    def _value(self, value: bytes) -> object:
        """Validate a user value; the target it names."""
        raise NotImplementedError

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        self._check_writable_from_user()
        check_update_flags(flags)
        self._check_key(key)
        self._check_value(value)
        k = u32(key)
        present = k in self._entries
        if not self.hashed and k >= self.max_entries:
            raise fail(errno.E2BIG, f"index {k} >= max_entries {self.max_entries}")
        if self.hashed and not present and len(self._entries) >= self.max_entries:
            raise fail(errno.E2BIG, "map is full")
        if flags == UpdateFlag.NOEXIST and (present or self.map_type == MapType.DEVMAP):
            raise fail(errno.EEXIST, "slot in use")
        if flags == UpdateFlag.EXIST and not present and self.map_type != MapType.DEVMAP:
            raise fail(errno.ENOENT, "no such key")
        target = self._value(bytes(value))
        if target is None:
            self._entries.pop(k, None)
        else:
            self._entries[k] = (bytes(value), target)

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        check_lookup_flags(flags)
        self._check_readable_from_user()
        self._check_key(key)
        entry = self._entries.get(u32(key))
        if entry is None:
            raise fail(errno.ENOENT, "empty")
        return entry[0]

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        k = u32(key)
        if self.hashed:
            if k not in self._entries:
                raise fail(errno.ENOENT, "no such key")
        elif k >= self.max_entries:
            raise fail(errno.EINVAL, f"index {k} >= max_entries {self.max_entries}")
        self._entries.pop(k, None)

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        if self.hashed:
            keys = list(self._entries)
            k = u32(key) if key is not None else None
            if k is None or k not in self._entries:
                if not keys:
                    raise fail(errno.ENOENT, "empty")
                return keys[0].to_bytes(4, "little")
            i = keys.index(k) + 1
            if i == len(keys):
                raise fail(errno.ENOENT, "last key")
            return keys[i].to_bytes(4, "little")
        return next_index(key, self.max_entries)

    def keys(self):
        return iter([k.to_bytes(4, "little") for k in sorted(self._entries)]
                    if not self.hashed else [k.to_bytes(4, "little") for k in self._entries])

    def __len__(self) -> int:
        return len(self._entries)

    def prog_update(self, key_addr: int, value_addr: int, flags: int, *, cpu: int = 0) -> int:
        return -errno.EINVAL  # the verifier refuses updates of these maps from programs


@register(MapType.DEVMAP)
class DevMap(_Targets):
    """Net devices by index (see the module docstring)."""

    def _value(self, value: bytes) -> object:
        ifindex = u32(value)
        prog_fd = int.from_bytes(value[4:8], "little", signed=True) if len(value) == 8 else 0
        if ifindex == 0:
            if prog_fd > 0 or self.hashed:
                raise fail(errno.EINVAL, "ifindex 0")
            return None
        if not self.valid_ifindex(ifindex):
            raise fail(errno.EINVAL, f"no device with ifindex {ifindex}")
        if prog_fd > 0:
            prog = resolve(self.resolve_fd, prog_fd, "program")
            if getattr(prog, "prog_type", None) is None:
                raise fail(errno.EINVAL, "devmap programs must be XDP programs")
        return ifindex

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return 0  # pybpf keeps no per-entry region; bpf_redirect_map uses target()


@register(MapType.DEVMAP_HASH)
class DevMapHash(DevMap):
    """Net devices by arbitrary u32 key."""

    hashed = True


@register(MapType.XSKMAP)
class XskMap(_Targets):
    """AF_XDP sockets by index."""

    value_sizes = (4,)

    def _value(self, value: bytes) -> object:
        return resolve(self.resolve_fd, u32(value), "socket")

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        self._check_writable_from_user()
        check_update_flags(flags)
        self._check_key(key)
        self._check_value(value)
        k = u32(key)
        if k >= self.max_entries:
            raise fail(errno.E2BIG, f"index {k} >= max_entries {self.max_entries}")
        target = self._value(bytes(value))
        present = k in self._entries
        if flags == UpdateFlag.NOEXIST and present:
            raise fail(errno.EEXIST, "slot in use")
        if flags == UpdateFlag.EXIST and not present:
            raise fail(errno.ENOENT, "slot empty")
        self._entries[k] = (bytes(value), target)

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        raise fail(errno.EOPNOTSUPP, "xskmap lookups are for programs only")

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        if u32(key) >= self.max_entries:
            raise fail(errno.EINVAL, "index out of range")
        self._entries.pop(u32(key), None)
