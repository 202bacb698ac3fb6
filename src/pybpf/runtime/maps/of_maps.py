"""BPF_MAP_TYPE_ARRAY_OF_MAPS and BPF_MAP_TYPE_HASH_OF_MAPS (map_in_map.c).

Created with an inner-map template (``MapAttr.inner_map``; none, or a
template that is itself a map of maps, is EINVAL) and value_size 4.  Values
from user space are map fds resolved by ``resolve_fd`` (EBADF when unknown;
:meth:`set` takes a Map).  A stored map must match the template: same type,
key_size, value_size and map_flags, and same max_entries unless the
template has BPF_F_INNER_MAP (else EINVAL).  A user-space lookup returns
the inner map's id; a program's lookup returns the inner map's pointer
(``inner.pointer.base``), what the kernel hands the program.  The array
variant follows :mod:`fd_array` (flags ANY only, E2BIG, ENOENT); the hash
variant follows :mod:`hash` (NOEXIST/EXIST, E2BIG when full), resolving the
fd first as the kernel does.
"""

from __future__ import annotations

import errno

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import ENOTSUPP, FdResolver, check_update_flags, resolve, u32
from pybpf.runtime.maps.fd_array import FdArrayMap
from pybpf.runtime.maps.hash import HashMap

OF_MAPS = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)


def check_template(attr: MapAttr) -> None:
    """EINVAL without an inner-map template or with a nested one."""
    if attr.inner_map is None:
        raise fail(errno.EINVAL, "a map of maps needs an inner map template")
    if attr.inner_map.map_type in OF_MAPS:
        raise fail(errno.EINVAL, "maps of maps do not nest")


def check_inner(template: Map, inner: object) -> Map:
    """``inner`` if it may be stored under ``template``, else EINVAL."""
    if not isinstance(inner, Map):
        raise fail(errno.EINVAL, f"{inner!r} is not a map")
    t = template.attr
    same = (inner.map_type, inner.key_size, inner.value_size, inner.map_flags) == (
        t.map_type, t.key_size, t.value_size, t.map_flags)  # fmt: skip
    if not same or (
        not t.map_flags & MapFlag.INNER_MAP and inner.max_entries != t.max_entries
    ):
        raise fail(errno.EINVAL, f"map {inner.name!r} does not match the inner map template")
    return inner


def _pointer(inner: Map | None) -> int:
    return inner.pointer.base if inner is not None and inner.pointer is not None else 0


@register(MapType.ARRAY_OF_MAPS)
class ArrayOfMapsMap(FdArrayMap):
    """Inner maps by index (see the module docstring)."""

    what = "map"
    allowed_flags = FdArrayMap.allowed_flags | MapFlag.INNER_MAP

    def check_attr(self, attr: MapAttr) -> None:
        check_template(attr)
        super().check_attr(attr)

    def accept(self, obj: object) -> None:
        check_inner(self.attr.inner_map, obj)

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return _pointer(self.object_at(u32(self.read(key_addr, 4))))


@register(MapType.HASH_OF_MAPS)
class HashOfMapsMap(HashMap):
    """Inner maps by key; each element's region holds the inner map's pointer."""

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1,
                 resolve_fd: FdResolver | None = None) -> None:  # fmt: skip
        super().__init__(attr, space, ncpus=ncpus)
        self.resolve_fd = resolve_fd
        self._inner: dict[bytes, Map] = {}

    def check_attr(self, attr: MapAttr) -> None:
        check_template(attr)
        if attr.value_size != 4:
            raise fail(errno.EINVAL, "maps of maps have value_size 4 (an fd)")
        super().check_attr(attr)

    def set(self, key: bytes, inner: Map, flags: int = UpdateFlag.ANY) -> None:
        """Store ``inner`` under ``key`` as an update with its fd would."""
        self._check_writable_from_user()
        check_update_flags(flags)
        self._check_key(key)
        check_inner(self.attr.inner_map, inner)
        err = self._insert(bytes(key), flags, _pointer(inner).to_bytes(8, "little"), None)
        if err:
            raise fail(-err, f"update of key {bytes(key).hex()} failed")
        self._inner[bytes(key)] = inner

    def _new_region(self, key: bytes):
        return self.space.alloc(f"hash_of_maps:{self.name}:{key.hex()}", 8, writable=False)

    def _remove(self, key: bytes) -> None:
        super()._remove(key)
        self._inner.pop(key, None)

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        self._check_value(value)
        self.set(key, resolve(self.resolve_fd, u32(value), "map"), flags)

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        super().lookup(key, flags)
        return self._inner[bytes(key)].id.to_bytes(4, "little")

    def map_at(self, key: bytes) -> Map | None:
        """The inner map stored under ``key``."""
        return self._inner.get(bytes(key))

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return _pointer(self._inner.get(self.read(key_addr, self.key_size)))

    def prog_update(self, key_addr: int, value_addr: int, flags: int, *, cpu: int = 0) -> int:
        return -errno.EINVAL  # programs cannot store maps

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        self._check_readable_from_user()
        self._check_writable_from_user()
        raise fail(ENOTSUPP, "maps of maps have no lookup_and_delete")
