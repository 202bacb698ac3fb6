"""What every map is: attributes checked like the kernel's, two faces, errno errors.

A :class:`Map` has the attributes of ``BPF_MAP_CREATE`` (type, key and value
size, max_entries, flags, name, map_extra, inner map) and two interfaces:

* **user space** — the bpf(2) map commands with their exact semantics and
  errno values: :meth:`lookup`, :meth:`update`, :meth:`delete`,
  :meth:`get_next_key`, :meth:`lookup_and_delete`, the batch commands and
  :meth:`freeze`, on ``bytes`` keys and values (per-CPU maps take and give
  ``value_size`` rounded up to 8, times the number of CPUs).  Errors are
  :class:`~pybpf.errors.KernelError` with ``errno`` set (ENOENT, EEXIST,
  E2BIG, EINVAL, EPERM, ENOMEM, ENOSPC...) and nothing is changed by a
  failing call.  A pythonic face (``m[key]``, ``in``, ``len``, iteration)
  sits on top.
* **programs** — the helpers' view on addresses: :meth:`prog_lookup` returns
  the address of the value (0 when absent) in the kernel's
  :class:`~pybpf.runtime.space.AddressSpace`, stable while the element
  exists; :meth:`prog_update` / :meth:`prog_delete` return 0 or ``-errno``.

Subclasses implement the ``_``-prefixed primitives; the base class does the
argument checks every map shares.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from pybpf.errors import KernelError
from pybpf.runtime.space import AddressSpace


class MapType(IntEnum):
    """``enum bpf_map_type`` (include/uapi/linux/bpf.h)."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


class MapFlag(IntFlag):
    """``map_flags`` of BPF_MAP_CREATE."""

    NO_PREALLOC = 1 << 0
    NO_COMMON_LRU = 1 << 1
    NUMA_NODE = 1 << 2
    RDONLY = 1 << 3
    WRONLY = 1 << 4
    STACK_BUILD_ID = 1 << 5
    ZERO_SEED = 1 << 6
    RDONLY_PROG = 1 << 7
    WRONLY_PROG = 1 << 8
    CLONE = 1 << 9
    MMAPABLE = 1 << 10
    PRESERVE_ELEMS = 1 << 11
    INNER_MAP = 1 << 12
    LINK = 1 << 13
    PATH_FD = 1 << 14
    VTYPE_BTF_OBJ_FD = 1 << 15
    TOKEN_FD = 1 << 16
    SEGV_ON_FAULT = 1 << 17
    NO_USER_CONV = 1 << 18


class UpdateFlag(IntFlag):
    """``flags`` of BPF_MAP_UPDATE_ELEM."""

    ANY = 0
    NOEXIST = 1
    EXIST = 2
    F_LOCK = 4


KEY_SIZE_MAX = 512  # MAX_BPF_STACK: a key must fit a program's stack
VALUE_SIZE_MAX = 1 << 20  # KMALLOC_MAX_SIZE-ish bound the kernel applies to most maps


# plain ints for the per-element checks (an IntFlag operator costs a Python call)
_RDONLY, _WRONLY = int(MapFlag.RDONLY), int(MapFlag.WRONLY)


def fail(err: int, message: str) -> KernelError:
    """A KernelError with ``errno`` ``err`` and a message naming the cause."""
    return KernelError(f"{message} ({errno.errorcode.get(err, err)})", errno=err)


@dataclass(frozen=True)
class MapAttr:
    """The BPF_MAP_CREATE attributes a map is created from."""

    map_type: MapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    name: str = ""
    map_extra: int = 0
    inner_map: Map | None = None
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0


class Map:
    """Base of every map type (see the module docstring for the contract)."""

    #: flags this map type accepts at creation; others give EINVAL
    allowed_flags: int = MapFlag.NUMA_NODE | MapFlag.RDONLY | MapFlag.WRONLY \
        | MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG  # fmt: skip

    def __init__(self, attr: MapAttr, space: AddressSpace, *, ncpus: int = 1) -> None:
        self.attr = attr
        self.space = space
        self.ncpus = ncpus
        self.id = 0  # set by the kernel when registered
        self.pointer = None  # the Region whose address programs hold (set by the kernel)
        self.frozen = False
        self.check_attr(attr)

    def release(self) -> None:
        """Free the map's storage in the address space (override when holding regions)."""

    # --- attributes --------------------------------------------------------
    @property
    def map_type(self) -> MapType:
        return self.attr.map_type

    @property
    def key_size(self) -> int:
        return self.attr.key_size

    @property
    def value_size(self) -> int:
        return self.attr.value_size

    @property
    def max_entries(self) -> int:
        return self.attr.max_entries

    @property
    def map_flags(self) -> int:
        return self.attr.map_flags

    @property
    def name(self) -> str:
        return self.attr.name

    def check_attr(self, attr: MapAttr) -> None:
        """Refuse bad creation attributes with the kernel's errno (EINVAL, E2BIG)."""
        if attr.map_flags & ~self.allowed_flags:
            raise fail(errno.EINVAL, f"map_flags {attr.map_flags:#x} not allowed for this map type")
        if attr.key_size < 0 or attr.value_size < 0 or attr.max_entries < 0:
            raise fail(errno.EINVAL, "negative size")
        if len(attr.name.encode()) > 15:
            raise fail(errno.EINVAL, f"map name {attr.name!r} is longer than 15 characters")
        if attr.map_extra and attr.map_type not in (MapType.BLOOM_FILTER, MapType.ARENA):
            raise fail(errno.EINVAL, "map_extra is only for bloom filters and arenas")
        both = MapFlag.RDONLY | MapFlag.WRONLY, MapFlag.RDONLY_PROG | MapFlag.WRONLY_PROG
        if any(attr.map_flags & pair == pair for pair in both):
            raise fail(errno.EINVAL, "a map cannot be both read-only and write-only")

    # --- user space: bpf(2) map commands --------------------------------------
    def _check_key(self, key: bytes) -> None:
        if len(key) != self.key_size:
            raise fail(
                errno.EINVAL,
                f"key is {len(key)} bytes, map {self.name!r} has key_size {self.key_size}",
            )

    def _check_value(self, value: bytes) -> None:
        if len(value) != self.user_value_size:
            raise fail(
                errno.EINVAL,
                f"value is {len(value)} bytes, map {self.name!r} takes {self.user_value_size}",
            )

    @property
    def user_value_size(self) -> int:
        """Bytes of a value as user space reads and writes it (per-CPU maps: ×ncpus)."""
        return self.value_size

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_ELEM: the value, or KernelError(ENOENT)."""
        raise fail(errno.EINVAL, f"lookup is not supported by {self.map_type.name.lower()} maps")

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        """BPF_MAP_UPDATE_ELEM with ANY / NOEXIST / EXIST (and F_LOCK)."""
        raise fail(errno.EINVAL, f"update is not supported by {self.map_type.name.lower()} maps")

    def delete(self, key: bytes) -> None:
        """BPF_MAP_DELETE_ELEM: KernelError(ENOENT) when absent, EINVAL for arrays."""
        raise fail(errno.EINVAL, f"delete is not supported by {self.map_type.name.lower()} maps")

    def get_next_key(self, key: bytes | None) -> bytes:
        """BPF_MAP_GET_NEXT_KEY: the first key for None or a missing key, ENOENT at the end."""
        raise fail(
            errno.EINVAL, f"get_next_key is not supported by {self.map_type.name.lower()} maps"
        )

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM (queue/stack pop with key None)."""
        raise fail(
            errno.EINVAL, f"lookup_and_delete is not supported by {self.map_type.name.lower()} maps"
        )

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: user space may no longer write.

        The kernel checks write permission first, so freezing a frozen or
        BPF_F_RDONLY map is EPERM (not EBUSY).
        """
        self._check_writable_from_user()
        self.frozen = True

    def _check_writable_from_user(self) -> None:
        if self.frozen or self.attr.map_flags & _RDONLY:
            raise fail(errno.EPERM, f"map {self.name!r} is frozen or read-only for user space")

    def _check_readable_from_user(self) -> None:
        if self.attr.map_flags & _WRONLY:
            raise fail(errno.EPERM, f"map {self.name!r} is write-only for user space")

    # batch commands, generic over the element commands (atomic per element, as the kernel)
    def lookup_batch(
        self, in_batch: bytes | None, count: int
    ) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """BPF_MAP_LOOKUP_BATCH: up to ``count`` (key, value) pairs and the next batch token."""
        out: list[tuple[bytes, bytes]] = []
        key = self.get_next_key(in_batch) if in_batch is not None else self._first_key()
        while key is not None and len(out) < count:
            out.append((key, self.lookup(key)))
            key = self._next_or_none(key)
        return out, key

    def update_batch(self, items: list[tuple[bytes, bytes]], flags: int = UpdateFlag.ANY) -> int:
        """BPF_MAP_UPDATE_BATCH; returns how many were applied before an error (raised)."""
        for done, (key, value) in enumerate(items):
            try:
                self.update(key, value, flags)
            except KernelError as err:
                err.count = done  # type: ignore[attr-defined]
                raise
        return len(items)

    def delete_batch(self, keys: list[bytes]) -> int:
        """BPF_MAP_DELETE_BATCH; stops at the first error (raised)."""
        for done, key in enumerate(keys):
            try:
                self.delete(key)
            except KernelError as err:
                err.count = done  # type: ignore[attr-defined]
                raise
        return len(keys)

    def _first_key(self) -> bytes | None:
        try:
            return self.get_next_key(None)
        except KernelError as err:
            if err.errno == errno.ENOENT:
                return None
            raise

    def _next_or_none(self, key: bytes) -> bytes | None:
        try:
            return self.get_next_key(key)
        except KernelError as err:
            if err.errno == errno.ENOENT:
                return None
            raise

    # --- programs: addresses ------------------------------------------------
    # ``cpu`` is the CPU the program runs on (ExecEnv.cpu): per-CPU maps use it
    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        """map_lookup_elem from a program: the value's address, or 0."""
        return 0

    def prog_update(self, key_addr: int, value_addr: int, flags: int, *, cpu: int = 0) -> int:
        """map_update_elem from a program: 0 or -errno."""
        return -errno.EINVAL

    def prog_delete(self, key_addr: int, *, cpu: int = 0) -> int:
        """map_delete_elem from a program: 0 or -errno."""
        return -errno.EINVAL

    def read(self, address: int, size: int) -> bytes:
        """Bytes at ``address`` in the kernel's address space (for key/value arguments)."""
        return self.space.memory.read(address, size)

    # --- pythonic face --------------------------------------------------------
    def keys(self) -> Iterator[bytes]:
        """Keys in get_next_key order."""
        key = self._first_key()
        while key is not None:
            yield key
            key = self._next_or_none(key)

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            yield key, self.lookup(key)

    def __getitem__(self, key: bytes) -> bytes:
        try:
            return self.lookup(key)
        except KernelError as err:
            if err.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.update(key, value)

    def __delitem__(self, key: bytes) -> None:
        try:
            self.delete(key)
        except KernelError as err:
            if err.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes | bytearray):
            return False
        try:
            self.lookup(bytes(key))
        except KernelError:
            return False
        return True

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} id={self.id} name={self.name!r} key={self.key_size}B "
            f"value={self.value_size}B max_entries={self.max_entries} flags={self.map_flags:#x}>"
        )
