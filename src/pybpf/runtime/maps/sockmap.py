"""Maps of sockets: BPF_MAP_TYPE_SOCKMAP, SOCKHASH (net/core/sock_map.c) and
REUSEPORT_SOCKARRAY (kernel/bpf/reuseport_array.c).

Contract at creation, after map_create's generic checks (EINVAL unless told):

* sockmap: max_entries > 0, key_size 4, value_size 4 or 8 (a socket fd as
  u32 or u64), flags within NUMA_NODE | RDONLY | WRONLY;
* sockhash: the same with any key_size > 0; a key_size above 512 is E2BIG
  (checked after the rest);
* reuseport_sockarray: value_size 4 or 8 first, then the array rules:
  max_entries > 0, key_size 4, flags within NUMA_NODE and the access flags
  (not both RDONLY_PROG and WRONLY_PROG).

User space stores sockets by fd (``resolve_fd`` turns the fd into the
socket; nothing: EBADF, an object whose ``kind`` is not "socket": ENOTSOCK).
A u64 fd above S32_MAX is EINVAL.  The syscall's own checks come first (EPERM
for a frozen or read-only map, EINVAL for BPF_F_LOCK).  Update, sockmap and
sockhash: the socket first (fd, then suitability: a socket whose
``sockmap_ok`` is false is EOPNOTSUPP), then flags beyond EXIST EINVAL, an
index out of range E2BIG (sockmap), NOEXIST on a used slot EEXIST, EXIST on
an empty one ENOENT, a new key in a full sockhash E2BIG.  Update,
reuseport_sockarray: flags (EINVAL) and index (E2BIG) before the socket, then
NOEXIST/EXIST, then a socket whose ``reuseport`` is false (not bound with
SO_REUSEPORT) EINVAL.  Lookup answers the socket's cookie (u64, its
``cookie`` attribute) and needs value_size 8 (else ENOSPC, before anything
else); an empty slot or absent key is ENOENT.  Delete: sockmap EINVAL out of
range or empty, sockhash ENOENT when absent, reuseport_sockarray E2BIG out of
range and ENOENT when empty.  get_next_key walks indexes as arrays do (the
sockhash: its keys in insertion order; a missing key restarts).
lookup_and_delete is ENOTSUPP (524).

Programs: :meth:`prog_lookup` gives the socket's ``address`` (sockmap and
sockhash lookups hand programs the socket), :meth:`target` is what the
redirect and reuseport-select helpers need, :meth:`update_socket` is a
program's update with a socket it holds.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ACCESS_MASK,
    ALL_FLAGS,
    ENOTSUPP,
    MAX_BPF_STACK,
    S32_MAX,
    FdResolver,
    access_ok,
    check_generic,
    next_index,
    s32,
    sys_lookup,
    sys_lookup_and_delete,
    sys_update,
    u32,
)  # fmt: skip

SOCK_CREATE_FLAGS = MapFlag.NUMA_NODE | MapFlag.RDONLY | MapFlag.WRONLY


class _SocketMap(Map):
    """What the three socket maps share: fd resolution, values, cookies."""

    allowed_flags = ALL_FLAGS  # checked in check_attr, in the kernel's order

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1,
                 resolve_fd: FdResolver | None = None) -> None:  # fmt: skip
        super().__init__(attr, space, ncpus=ncpus)
        self.resolve_fd = resolve_fd
        #: turns a socket pointer a program passes into the socket (None: no sockets)
        self.resolve_sock: Callable[[int], object] | None = None
        self._socks: dict[object, object] = {}  # key (int index or bytes) -> socket

    def release(self) -> None:
        self._socks.clear()

    # --- values ---------------------------------------------------------------------------
    def _fd(self, value: bytes) -> int:
        """The socket fd in a value: u64 or u32; above S32_MAX is EINVAL."""
        fd = int.from_bytes(value[:8], "little") if self.value_size == 8 else u32(value)
        if fd > S32_MAX:
            raise fail(errno.EINVAL, f"fd {fd} out of range")
        return fd

    def _socket(self, fd: int) -> object:
        sock = self.resolve_fd(fd) if self.resolve_fd is not None else None
        if sock is None:
            raise fail(errno.EBADF, f"fd {fd} is not open")
        kind = getattr(sock, "kind", None)
        if kind is not None and kind != "socket":
            raise fail(errno.ENOTSOCK, f"fd {fd} is a {kind}, not a socket")
        return sock

    def _cookie(self, sock: object) -> bytes:
        return int(getattr(sock, "cookie", 0)).to_bytes(8, "little")

    def _slot(self, key: bytes) -> object:
        return u32(key)

    # --- user space -----------------------------------------------------------------------
    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        sys_lookup(self, flags)
        self._check_key(key)
        if self.value_size != 8:
            raise fail(errno.ENOSPC, "a lookup answers a u64 cookie: value_size must be 8")
        sock = self._socks.get(self._slot(bytes(key)))
        if sock is None:
            raise fail(errno.ENOENT, "no socket there")
        return self._cookie(sock)

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        sys_lookup_and_delete(self, flags)
        raise fail(ENOTSUPP, "socket maps have no lookup_and_delete")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        return next_index(key, self.max_entries)

    def keys(self):
        return iter([k.to_bytes(4, "little") for k in sorted(self._socks)])

    def items(self):
        if self.value_size != 8:
            return iter(())  # a lookup would be ENOSPC: nothing user space can read
        return iter([(k, self.lookup(k)) for k in self.keys()])

    def __len__(self) -> int:
        return len(self._socks)

    # --- programs -------------------------------------------------------------------------
    def target(self, key: object) -> object | None:
        """The socket under ``key`` (an index, or key bytes for a sockhash), or None."""
        return self._socks.get(key if isinstance(key, int) else self._slot(bytes(key)))

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        sock = self._socks.get(self._slot(self.read(key_addr, self.key_size)))
        return int(getattr(sock, "address", 0)) if sock is not None else 0


class _SockMapUpdates(_SocketMap):
    """sock_map_update_elem_sys: the socket first, then the map's own rules."""

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        sys_update(self, flags)
        self._check_key(key)
        self._check_value(value)
        sock = self._socket(self._fd(bytes(value)))
        err = self.update_socket(bytes(key), sock, flags)
        if err:
            raise fail(-err, f"update of key {bytes(key).hex()} failed")

    def update_socket(self, key: bytes, sock: object, flags: int) -> int:
        """Store ``sock`` under ``key`` (sock_map_update_common / sock_hash_update_common)."""
        if not getattr(sock, "sockmap_ok", True):
            return -errno.EOPNOTSUPP
        if flags > UpdateFlag.EXIST:
            return -errno.EINVAL
        slot = self._slot(key)
        err = self._room(slot)
        if err:
            return err
        present = slot in self._socks
        if present and flags == UpdateFlag.NOEXIST:
            return -errno.EEXIST
        if not present and flags == UpdateFlag.EXIST:
            return -errno.ENOENT
        err = self._full(present)
        if err:
            return err
        self._socks[slot] = sock
        return 0

    def _room(self, slot: object) -> int:
        return 0

    def _full(self, present: bool) -> int:
        return 0

    def prog_update(self, key_addr: int, value_addr: int, flags: int, *, cpu: int = 0) -> int:
        """A program's update: ``value_addr`` is the socket it holds (-EINVAL: none)."""
        sock = self.resolve_sock(value_addr) if self.resolve_sock is not None else None
        if sock is None:
            return -errno.EINVAL
        return self.update_socket(self.read(key_addr, self.key_size), sock, flags)

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        err = self._delete(bytes(key))
        if err:
            raise fail(-err, f"delete of key {bytes(key).hex()} failed")

    def prog_delete(self, key_addr: int, *, cpu: int = 0) -> int:
        return self._delete(self.read(key_addr, self.key_size))

    def _delete(self, key: bytes) -> int:
        raise NotImplementedError


@register(MapType.SOCKMAP)
class SockMap(_SockMapUpdates):
    """Sockets by index."""

    def check_attr(self, attr: MapAttr) -> None:
        check_generic(attr)
        if (not attr.max_entries or attr.key_size != 4 or attr.value_size not in (4, 8)
                or attr.map_flags & ~SOCK_CREATE_FLAGS):  # fmt: skip
            raise fail(errno.EINVAL, "sockmap: max_entries > 0, key_size 4, value_size 4 or "
                                     "8, flags NUMA_NODE/RDONLY/WRONLY")  # fmt: skip

    def _room(self, slot: object) -> int:
        return -errno.E2BIG if slot >= self.max_entries else 0  # type: ignore[operator]

    def _delete(self, key: bytes) -> int:
        index = u32(key)
        if index >= self.max_entries or self._socks.pop(index, None) is None:
            return -errno.EINVAL
        return 0


@register(MapType.SOCKHASH)
class SockHash(_SockMapUpdates):
    """Sockets by arbitrary key."""

    def check_attr(self, attr: MapAttr) -> None:
        check_generic(attr)
        if (not attr.max_entries or not attr.key_size or attr.value_size not in (4, 8)
                or attr.map_flags & ~SOCK_CREATE_FLAGS):  # fmt: skip
            raise fail(errno.EINVAL, "sockhash: max_entries > 0, key_size > 0, value_size 4 "
                                     "or 8, flags NUMA_NODE/RDONLY/WRONLY")  # fmt: skip
        if attr.key_size > MAX_BPF_STACK:
            raise fail(errno.E2BIG, f"key_size {attr.key_size} > {MAX_BPF_STACK}")

    def _slot(self, key: bytes) -> object:
        return bytes(key)

    def _full(self, present: bool) -> int:
        return -errno.E2BIG if not present and len(self._socks) >= self.max_entries else 0

    def _delete(self, key: bytes) -> int:
        return 0 if self._socks.pop(bytes(key), None) is not None else -errno.ENOENT

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        keys = list(self._socks)
        if key is not None:
            self._check_key(key)
            if bytes(key) in self._socks:
                i = keys.index(bytes(key)) + 1
                if i == len(keys):
                    raise fail(errno.ENOENT, "last key")
                return keys[i]  # type: ignore[return-value]
        if not keys:
            raise fail(errno.ENOENT, "empty")
        return keys[0]  # type: ignore[return-value]

    def keys(self):
        return iter(list(self._socks))  # type: ignore[arg-type]


@register(MapType.REUSEPORT_SOCKARRAY)
class ReuseportSockarray(_SocketMap):
    """SO_REUSEPORT sockets by index, for bpf_sk_select_reuseport."""

    def check_attr(self, attr: MapAttr) -> None:
        check_generic(attr)
        if attr.value_size not in (4, 8):
            raise fail(errno.EINVAL, "reuseport_sockarray: value_size 4 or 8")
        flags = attr.map_flags
        if (not attr.max_entries or attr.key_size != 4
                or flags & ~(MapFlag.NUMA_NODE | ACCESS_MASK) or not access_ok(flags)):  # fmt: skip
            raise fail(errno.EINVAL, "reuseport_sockarray: max_entries > 0, key_size 4, flags "
                                     "NUMA_NODE and the access flags")  # fmt: skip

    def _fd(self, value: bytes) -> int:
        if self.value_size == 8:
            return super()._fd(value)
        return s32(value)  # an int: a negative fd is simply not open

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        sys_update(self, flags)
        self._check_key(key)
        self._check_value(value)
        if flags > UpdateFlag.EXIST:
            raise fail(errno.EINVAL, f"update flags {flags:#x}")
        index = u32(key)
        if index >= self.max_entries:
            raise fail(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        sock = self._socket(self._fd(bytes(value)))
        present = index in self._socks
        if present and flags == UpdateFlag.NOEXIST:
            raise fail(errno.EEXIST, "slot in use")
        if not present and flags == UpdateFlag.EXIST:
            raise fail(errno.ENOENT, "slot empty")
        if not getattr(sock, "reuseport", True):
            raise fail(errno.EINVAL, "the socket is not a bound SO_REUSEPORT socket")
        self._socks[index] = sock

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        index = u32(key)
        if index >= self.max_entries:
            raise fail(errno.E2BIG, f"index {index} >= max_entries {self.max_entries}")
        if self._socks.pop(index, None) is None:
            raise fail(errno.ENOENT, "slot empty")

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return 0  # the verifier refuses map_lookup_elem on this map
