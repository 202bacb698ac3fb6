"""The map types of sockets, cgroups, tasks, inodes, stacks and CPUs against the kernel.

Local storage (sk, inode, task, cgrp), cgroup storage (shared and per-CPU),
sockmap, sockhash, reuseport_sockarray, cpumap, stack_trace, cgroup_array and
user_ringbuf: each test runs one sequence of bpf(2) commands on pybpf maps and
compares every answer (an errno name, "ok", or the bytes a command returned)
with the kernel's answers to the same sequence, recorded in
``kernel_facts/maps_more.json`` (``pytest --record-kernel`` re-records them as
root; where bpf(2) works the sequence also runs live, a different answer being
drift).  Creations that name BTF types load a small BTF blob into the kernel
whose key and value types have the map's sizes (an int for 4-byte keys, u64
for 8, ``struct bpf_cgroup_storage_key`` for 16, char arrays otherwise);
pybpf is handed non-zero type ids.  The descriptors in keys and values are
ones no test process has open (9999, -1, 2^31 - 1), so the kernel answers
EBADF where pybpf, which has no descriptors, does too.  The unit tests at the
end drive what user space cannot reach: program-side storage, linked cgroup
storage, user ring buffer records, stack ids, sockets through a resolver.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import pytest

import map_diff
from pybpf.errors import KernelError
from pybpf.kernel import linux
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType

NP = MapFlag.NO_PREALLOC
NUMA, RDONLY, WRONLY = MapFlag.NUMA_NODE, MapFlag.RDONLY, MapFlag.WRONLY
RO_PROG, WO_PROG = MapFlag.RDONLY_PROG, MapFlag.WRONLY_PROG
CLONE, MMAP, BUILD_ID = MapFlag.CLONE, MapFlag.MMAPABLE, MapFlag.STACK_BUILD_ID
PRESERVE = MapFlag.PRESERVE_ELEMS
BAD_FDS = (9999, -1, 0x7FFFFFFF)  # never open in a test process
STORAGES = (MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE,
            MapType.CGRP_STORAGE)  # fmt: skip
CGROUP_STORAGES = (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE)


def k32(i: int) -> bytes:
    return struct.pack("<I", i & 0xFFFFFFFF)


def errno_name(number: int | None) -> str:
    return {524: "ENOTSUPP"}.get(number or 0) or errno.errorcode.get(number or 0, f"E{number}")


# --- BTF for the kernel side ----------------------------------------------------------------------
class _Cmd(IntEnum):
    MAP_CREATE = 0
    BTF_LOAD = 18


class _BtfLoadAttr(ctypes.Structure):
    _fields_ = (("btf", ctypes.c_uint64), ("btf_log_buf", ctypes.c_uint64),
                ("btf_size", ctypes.c_uint32), ("btf_log_size", ctypes.c_uint32),
                ("btf_log_level", ctypes.c_uint32))  # fmt: skip


def _btf_type(name_off: int, kind: int, vlen: int, size_or_type: int) -> bytes:
    return struct.pack("<III", name_off, (kind << 24) | vlen, size_or_type)


def btf_blob(key_size: int, value_size: int) -> tuple[bytes, int, int]:
    """A BTF blob with a key and a value type of these sizes: (blob, key id, value id)."""
    strings = b"\0int\0u64\0u32\0char\0key\0id\0at\0"
    types = (
        _btf_type(1, 1, 0, 4) + struct.pack("<I", (1 << 24) | 32)  # [1] int
        + _btf_type(5, 1, 0, 8) + struct.pack("<I", 64)  # [2] u64
        + _btf_type(9, 1, 0, 4) + struct.pack("<I", 32)  # [3] u32
        + _btf_type(13, 1, 0, 1) + struct.pack("<I", 8)  # [4] char
        + _btf_type(18, 4, 2, 16) + struct.pack("<IIIIII", 22, 2, 0, 25, 3, 64)  # [5] key
    )  # fmt: skip
    ids = {4: 1, 8: 2, 16: 5}
    key_id = ids.get(key_size, 6)
    types += _btf_type(0, 3, 0, 0) + struct.pack("<III", 4, 1, max(key_size, 1))  # [6]
    value_id = 7 if value_size else 1
    types += _btf_type(0, 3, 0, 0) + struct.pack("<III", 4, 1, max(value_size, 1))  # [7]
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                         len(strings))  # fmt: skip
    return header + types + strings, key_id, value_id


def btf_load(blob: bytes) -> int:
    buf = ctypes.create_string_buffer(blob, len(blob))
    attr = _BtfLoadAttr(btf=ctypes.addressof(buf), btf_size=len(blob))
    return linux._bpf(_Cmd.BTF_LOAD, attr)  # type: ignore[arg-type]


class KMapX(linux.KMap):
    """A kernel map whose per-CPU cgroup storage values are per CPU."""

    @property
    def user_value_size(self) -> int:
        if self.map_type == MapType.PERCPU_CGROUP_STORAGE:
            return (self.value_size + 7) // 8 * 8 * linux.possible_cpus()
        return super().user_value_size


# --- where a sequence runs -----------------------------------------------------------------------
class Maps:
    """Where a command sequence runs; ``answers`` is what it records (see test_maps_kernel)."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.commands: list[str] = []

    def call(self, fn: Callable, *args: Any) -> str:
        try:
            result = fn(*args)
        except KernelError as err:
            return errno_name(err.errno)
        return result.hex() if isinstance(result, bytes) and result else "ok"

    def do(self, fn: Callable, *args: Any) -> str:
        answer = self.call(fn, *args)
        words = [a.hex() if isinstance(a, bytes) else repr(a) for a in args]
        self.note(answer, f"{getattr(fn, '__name__', fn)}({', '.join(words)})")
        return answer

    def note(self, value: Any, what: str) -> None:
        self.answers.append(value)
        self.commands.append(what)

    def create(self, t: int, key: int, value: int, n: int, flags: int = 0,
               btf: str = "") -> Any:  # fmt: skip
        """A map; ``btf`` "kv" names key and value types, "v" a value type, "k" a key type."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class KernelMaps(Maps):
    def __init__(self) -> None:
        super().__init__()
        self.fds: list[int] = []
        self.opened: list[linux.KMap] = []

    def create(self, t, key, value, n, flags=0, btf=""):
        btf_fd = key_id = value_id = 0
        if btf:
            blob, key_id, value_id = btf_blob(key, value)
            btf_fd = btf_load(blob)
            self.fds.append(btf_fd)
            key_id = key_id if "k" in btf else 0
            value_id = value_id if "v" in btf else 0
        attr = linux._MapCreateAttr(map_type=t, key_size=key, value_size=value, max_entries=n,
                                    map_flags=flags, btf_fd=btf_fd, btf_key_type_id=key_id,
                                    btf_value_type_id=value_id)  # fmt: skip
        m = KMapX(linux._bpf(_Cmd.MAP_CREATE, attr), t, key, value, n, flags)  # type: ignore[arg-type]
        self.opened.append(m)
        return m

    def close(self):
        for m in self.opened:
            m.close()
        for fd in self.fds:
            os.close(fd)


class PybpfMaps(Maps):
    def __init__(self, ncpus: int) -> None:
        super().__init__()
        self.kernel = Kernel(ncpus=ncpus, seed=1)

    def create(self, t, key, value, n, flags=0, btf=""):
        attr = MapAttr(MapType(t), key, value, n, flags,
                       btf_key_type_id=1 if "k" in btf else 0,
                       btf_value_type_id=2 if "v" in btf else 0)  # fmt: skip
        m = self.kernel.map_create(attr)
        m.resolve_fd = {}.get  # no descriptor is open
        return m


def check(facts, key: str, sequence: Callable[..., None], *args: Any) -> list[Any]:
    """pybpf's answers to ``sequence`` are the kernel's recorded ones (map_diff.check)."""
    return map_diff.check(facts, key, sequence, *args, pybpf_maps=PybpfMaps,
                          kernel_maps=KernelMaps)  # fmt: skip


# --- creation -------------------------------------------------------------------------------------
def _storage_cases(t: MapType) -> list[tuple]:
    return [
        (t, 4, 8, 0, NP, "kv"), (t, 4, 8, 0, 0, "kv"), (t, 4, 8, 1, NP, "kv"),
        (t, 8, 8, 0, NP, "kv"), (t, 4, 0, 0, NP, "kv"), (t, 4, 8, 0, NP, ""),
        (t, 4, 8, 0, NP, "v"), (t, 4, 8, 0, NP, "k"), (t, 4, 8, 0, NP | CLONE, "kv"),
        (t, 4, 8, 0, NP | RDONLY, "kv"), (t, 4, 8, 0, NP | NUMA, "kv"),
        (t, 4, 65407, 0, NP, "kv"), (t, 4, 65408, 0, NP, "kv"), (t, 4, 65408, 0, 0, "kv"),
    ]  # fmt: skip


def _cgroup_storage_cases(t: MapType) -> list[tuple]:
    return [
        (t, 16, 8, 0), (t, 8, 8, 0), (t, 12, 8, 0), (t, 4, 8, 0), (t, 16, 0, 0), (t, 16, 8, 1),
        (t, 16, 32768, 0), (t, 16, 32769, 0), (t, 16, 65407, 0), (t, 16, 65408, 0),
        (t, 16, 65408, 0, NP), (t, 16, 8, 0, NP), (t, 16, 8, 0, NUMA), (t, 16, 8, 0, RDONLY),
        (t, 16, 8, 0, RO_PROG), (t, 16, 8, 0, RO_PROG | WO_PROG), (t, 16, 8, 0, RDONLY | WRONLY),
        (t, 16, 8, 0, MMAP), (t, 16, 8, 1, NP), (t, 16, 8, 0, 0, "kv"), (t, 8, 8, 0, 0, "kv"),
    ]  # fmt: skip


S, H, R = MapType.SOCKMAP, MapType.SOCKHASH, MapType.REUSEPORT_SOCKARRAY
C, T, G, U = MapType.CPUMAP, MapType.STACK_TRACE, MapType.CGROUP_ARRAY, MapType.USER_RINGBUF
CREATE_CASES = [
    *(c for t in STORAGES for c in _storage_cases(t)),
    *(c for t in CGROUP_STORAGES for c in _cgroup_storage_cases(t)),
    (S, 4, 4, 1), (S, 4, 8, 1), (S, 4, 12, 1), (S, 8, 4, 1), (S, 4, 4, 0), (S, 0, 4, 1),
    (S, 4, 4, 1, NP), (S, 4, 4, 1, NUMA), (S, 4, 4, 1, RDONLY), (S, 4, 4, 1, WRONLY),
    (S, 4, 4, 1, RO_PROG), (S, 4, 4, 1, RDONLY | WRONLY), (S, 4, 4, 1 << 20),
    (H, 4, 4, 1), (H, 4, 8, 1), (H, 1, 4, 1), (H, 0, 4, 1), (H, 512, 4, 1), (H, 513, 4, 1),
    (H, 513, 12, 1), (H, 4, 4, 0), (H, 4, 4, 1, NP), (H, 4, 4, 1, RDONLY), (H, 4, 4, 1, RO_PROG),
    (H, 600, 4, 0),
    (R, 4, 4, 1), (R, 4, 8, 1), (R, 4, 12, 1), (R, 8, 8, 1), (R, 4, 8, 0), (R, 4, 8, 1, NP),
    (R, 4, 8, 1, RDONLY), (R, 4, 8, 1, RO_PROG), (R, 4, 8, 1, RO_PROG | WO_PROG),
    (R, 4, 8, 1, MMAP), (R, 4, 8, 1, PRESERVE), (R, 8, 12, 0),
    (C, 4, 4, 1), (C, 4, 8, 1), (C, 4, 12, 1), (C, 8, 4, 1), (C, 4, 4, 0), (C, 4, 4, 1, NP),
    (C, 4, 4, 1, NUMA), (C, 4, 4, 1, RDONLY), (C, 4, 4, 256), (C, 4, 4, 257), (C, 4, 12, 257),
    (T, 4, 8, 1), (T, 4, 16, 1), (T, 4, 12, 1), (T, 4, 4, 1), (T, 4, 0, 1), (T, 8, 8, 1),
    (T, 4, 8, 0), (T, 4, 1016, 1), (T, 4, 1024, 1), (T, 4, 8, 1, NP), (T, 4, 8, 1, NUMA),
    (T, 4, 8, 1, RDONLY), (T, 4, 8, 1, BUILD_ID), (T, 4, 32, 1, BUILD_ID),
    (T, 4, 40, 1, BUILD_ID), (T, 4, 4064, 1, BUILD_ID), (T, 4, 4096, 1, BUILD_ID),
    (T, 4, 8, 1, RO_PROG), (T, 4, 8, (1 << 31) + 1), (T, 4, 8, 0xFFFFFFFF), (T, 4, 8, 1 << 20),
    (G, 4, 4, 1), (G, 4, 8, 1), (G, 8, 4, 1), (G, 4, 4, 0), (G, 4, 4, 1, NP),
    (G, 4, 4, 1, RDONLY), (G, 4, 4, 1, RO_PROG), (G, 4, 4, 1, MMAP), (G, 4, 4, 1, PRESERVE),
    (U, 0, 0, 4096), (U, 0, 0, 8192), (U, 0, 0, 12288), (U, 0, 0, 8), (U, 0, 0, 0),
    (U, 4, 0, 4096), (U, 0, 4, 4096), (U, 0, 0, 4096, NUMA), (U, 0, 0, 4096, NP),
    (U, 0, 0, 4096, RDONLY), (U, 0, 0, 4096, MMAP),
]  # fmt: skip


def create_key(t: MapType, key: int, value: int, n: int, flags: int = 0, btf: str = "") -> str:
    return f"{t.name.lower()}/{key}/{value}/{n}/flags-{int(flags):#x}" + (f"/btf-{btf}" if btf
                                                                          else "")  # fmt: skip


def create(maps: Maps, *args: Any) -> None:
    maps.do(maps.create, *args)


@pytest.mark.parametrize("args", CREATE_CASES, ids=lambda args: create_key(*args))
def test_create_errno(kernel_facts, args):
    check(kernel_facts, f"create/{create_key(*args)}", create, *args)


# --- element commands ---------------------------------------------------------------------------
def local_storage_ops(maps: Maps, t: MapType) -> None:
    m = maps.create(t, 4, 8, 0, NP, "kv")
    v = bytes(range(8))
    for fd in BAD_FDS:
        maps.do(m.lookup, k32(fd))
        maps.do(m.update, k32(fd), v, 0)
        maps.do(m.delete, k32(fd))
    for flags in (1, 2, 3, 4, 5):
        maps.do(m.update, k32(9999), v, flags)
    for flags in (1, 4, 5):
        maps.do(m.lookup, k32(9999), flags)
    maps.do(m.get_next_key, None)
    maps.do(m.get_next_key, k32(9999))
    maps.do(m.lookup_and_delete, k32(9999))
    maps.do(m.lookup_and_delete, k32(9999), 4)
    maps.do(m.lookup_and_delete, k32(9999), 1)
    maps.do(m.freeze)
    maps.do(m.update, k32(9999), v, 0)
    maps.do(m.delete, k32(9999))
    maps.do(m.lookup, k32(9999))
    ro = maps.create(t, 4, 8, 0, NP | CLONE, "kv")
    maps.do(ro.update, k32(9999), v, 4)


@pytest.mark.parametrize("t", STORAGES, ids=lambda t: t.name.lower())
def test_local_storage_ops(kernel_facts, t):
    check(kernel_facts, f"ops/{t.name.lower()}", local_storage_ops, t)


def cgroup_storage_ops(maps: Maps, t: MapType, key_size: int) -> None:
    m = maps.create(t, key_size, 12, 0)
    key = bytes(range(key_size))
    value = bytes(m.user_value_size)
    maps.do(m.lookup, key)
    for flags in (1, 4, 5):
        maps.do(m.lookup, key, flags)
    for flags in range(6):
        maps.do(m.update, key, value, flags)
    maps.do(m.delete, key)
    maps.do(m.get_next_key, None)
    maps.do(m.get_next_key, key)
    maps.do(m.lookup_and_delete, key)
    maps.do(m.lookup_and_delete, key, 4)
    maps.do(m.freeze)
    maps.do(m.update, key, value, 0)
    maps.do(m.delete, key)
    wo = maps.create(t, key_size, 12, 0, WRONLY)
    maps.do(wo.lookup, key)
    maps.do(wo.lookup, key, 4)
    maps.do(wo.get_next_key, None)


@pytest.mark.parametrize("key_size", [16, 8])
@pytest.mark.parametrize("t", CGROUP_STORAGES, ids=lambda t: t.name.lower())
def test_cgroup_storage_ops(kernel_facts, t, key_size):
    check(kernel_facts, f"ops/{t.name.lower()}/key-{key_size}", cgroup_storage_ops, t, key_size)


def _fd_value(fd: int, size: int) -> bytes:
    return (fd & (2**64 - 1)).to_bytes(8, "little")[:size] if size == 8 else k32(fd)


def socket_map_ops(maps: Maps, t: MapType, value_size: int) -> None:
    m = maps.create(t, 4, value_size, 2)
    for key in (k32(0), k32(5)):
        maps.do(m.lookup, key)
    maps.do(m.lookup, k32(0), 4)
    for fd in (*BAD_FDS, 0x80000000, *((1 << 32,) if value_size == 8 else ())):
        for key in (k32(0), k32(5)):
            maps.do(m.update, key, _fd_value(fd, value_size), 0)
    for flags in (1, 2, 3, 4, 7):
        maps.do(m.update, k32(0), _fd_value(9999, value_size), flags)
    for key in (k32(0), k32(5)):
        maps.do(m.delete, key)
    for start in (None, k32(0), k32(1), k32(9)):
        maps.do(m.get_next_key, start)
    maps.do(m.lookup_and_delete, k32(0))
    maps.do(m.freeze)
    maps.do(m.update, k32(0), _fd_value(9999, value_size), 0)
    maps.do(m.delete, k32(0))
    maps.do(m.lookup, k32(0))
    ro = maps.create(t, 4, value_size, 2, RDONLY)
    maps.do(ro.update, k32(0), _fd_value(9999, value_size), 0)
    maps.do(ro.lookup, k32(0))
    wo = maps.create(t, 4, value_size, 2, WRONLY)
    maps.do(wo.lookup, k32(0))
    maps.do(wo.get_next_key, None)
    maps.do(wo.delete, k32(0))


@pytest.mark.parametrize("value_size", [4, 8])
@pytest.mark.parametrize("t", [S, H, R], ids=lambda t: t.name.lower())
def test_socket_map_ops(kernel_facts, t, value_size):
    check(kernel_facts, f"ops/{t.name.lower()}/value-{value_size}", socket_map_ops, t,
          value_size)  # fmt: skip


def cpumap_ops(maps: Maps, value_size: int) -> None:
    m = maps.create(C, 4, value_size, 8)

    def val(qsize: int, fd: int = 0) -> bytes:
        return k32(qsize) + (k32(fd) if value_size == 8 else b"")

    maps.do(m.lookup, k32(0))
    maps.do(m.update, k32(0), val(100), 0)
    maps.do(m.lookup, k32(0))
    maps.do(m.update, k32(0), val(100), 1)  # EEXIST
    maps.do(m.update, k32(1), val(50), 2)  # EXIST needs no entry
    maps.do(m.lookup, k32(1))
    maps.do(m.update, k32(8), val(100), 0)  # E2BIG
    maps.do(m.update, k32(8), val(100), 1)
    for flags in (3, 4, 5):
        maps.do(m.update, k32(0), val(100), flags)
    maps.do(m.update, k32(0), val(16385), 0)  # EOVERFLOW
    maps.do(m.update, k32(0), val(16384), 0)
    maps.do(m.update, k32(7), val(100), 0)  # ENODEV: not a possible CPU
    maps.do(m.update, k32(7), val(0), 0)
    maps.do(m.update, k32(7), val(16385), 0)
    maps.do(m.update, k32(1), val(0), 0)  # empties the slot
    maps.do(m.lookup, k32(1))
    maps.do(m.update, k32(1), val(10, 9999), 0)  # a program fd that is not open
    maps.do(m.lookup, k32(1))
    maps.do(m.update, k32(1), val(10, -1), 0)
    maps.do(m.lookup, k32(1))
    maps.do(m.lookup, k32(0), 4)
    maps.do(m.delete, k32(0))
    maps.do(m.lookup, k32(0))
    maps.do(m.delete, k32(0))
    maps.do(m.delete, k32(8))
    for start in (None, k32(6), k32(7), k32(9)):
        maps.do(m.get_next_key, start)
    maps.do(m.lookup_and_delete, k32(1))
    maps.do(m.freeze)
    maps.do(m.update, k32(0), val(100), 0)
    maps.do(m.lookup, k32(1))


@pytest.mark.parametrize("value_size", [4, 8])
def test_cpumap_ops(kernel_facts, value_size):
    check(kernel_facts, f"ops/cpumap/value-{value_size}", cpumap_ops, value_size)


def stack_trace_ops(maps: Maps, flags: int) -> None:
    for n in (4, 5):
        m = maps.create(T, 4, 32, n, flags)
        for key in (0, 3, 4, 7, 8, 9):
            maps.do(m.lookup, k32(key))
            maps.do(m.delete, k32(key))
            maps.do(m.lookup_and_delete, k32(key))
        maps.do(m.update, k32(0), bytes(32), 0)
        maps.do(m.update, k32(0), bytes(32), 4)
        maps.do(m.lookup, k32(0), 4)
        maps.do(m.lookup_and_delete, k32(0), 4)
        maps.do(m.lookup_and_delete, k32(0), 1)
        for start in (None, k32(0), k32(9)):
            maps.do(m.get_next_key, start)
        maps.do(m.freeze)
        maps.do(m.delete, k32(0))
        maps.do(m.lookup_and_delete, k32(0))
        maps.do(m.lookup, k32(0))


@pytest.mark.parametrize("flags", [0, BUILD_ID])
def test_stack_trace_ops(kernel_facts, flags):
    check(kernel_facts, f"ops/stack_trace/flags-{int(flags):#x}", stack_trace_ops, flags)


def cgroup_array_ops(maps: Maps) -> None:
    m = maps.create(G, 4, 4, 2)
    for key in (k32(0), k32(5)):
        maps.do(m.lookup, key)
        for fd in BAD_FDS:
            maps.do(m.update, key, k32(fd), 0)
        maps.do(m.update, key, k32(9999), 1)
        maps.do(m.delete, key)
    maps.do(m.update, k32(0), k32(9999), 4)
    for start in (None, k32(0), k32(1), k32(7)):
        maps.do(m.get_next_key, start)
    maps.do(m.lookup_and_delete, k32(0))
    maps.do(m.freeze)
    maps.do(m.update, k32(0), k32(9999), 0)


def test_cgroup_array_ops(kernel_facts):
    check(kernel_facts, "ops/cgroup_array", cgroup_array_ops)


def user_ringbuf_ops(maps: Maps) -> None:
    m = maps.create(U, 0, 0, 4096)
    maps.do(m.lookup, None)
    maps.do(m.lookup, None, 4)
    maps.do(m.lookup, None, 1)
    maps.do(m.update, None, b"", 0)
    maps.do(m.update, None, b"", 4)
    maps.do(m.delete, None)
    maps.do(m.get_next_key, None)
    maps.do(m.lookup_and_delete, None)
    maps.do(m.lookup_and_delete, None, 1)
    maps.do(m.freeze)
    maps.do(m.update, None, b"", 0)
    maps.do(m.delete, None)
    maps.do(m.lookup, None)


def test_user_ringbuf_ops(kernel_facts):
    check(kernel_facts, "ops/user_ringbuf", user_ringbuf_ops)


def generic_checks(maps: Maps) -> None:
    """map_create's own checks come before the type's (EINVAL where the type says E2BIG)."""
    maps.do(maps.create, MapType.CGROUP_STORAGE, 16, 65408, 0, RDONLY | WRONLY)
    maps.do(maps.create, MapType.SOCKHASH, 513, 4, 1, RDONLY | WRONLY)
    maps.do(maps.create, MapType.CPUMAP, 4, 4, 257, RDONLY | WRONLY)
    maps.do(maps.create, MapType.SK_STORAGE, 4, 65408, 0, NP | RDONLY | WRONLY, "kv")
    maps.do(maps.create, MapType.STACK_TRACE, 4, 8, (1 << 31) + 1, RDONLY | WRONLY)


def test_generic_checks_first(kernel_facts):
    answers = check(kernel_facts, "create/generic_first", generic_checks)
    assert set(answers) == {"EINVAL"}


# --- what user space cannot reach ---------------------------------------------------------------
class Obj:
    """A kernel object a descriptor names (a socket, a task, a cgroup, a program)."""

    def __init__(self, kind: str, address: int = 0, **attrs: Any) -> None:
        self.kind = kind
        self.address = address
        self.__dict__.update(attrs)


def _pybpf(t: MapType, key: int, value: int, n: int, flags: int = 0, *, btf: bool = False,
           ncpus: int = 2):  # fmt: skip
    kernel = Kernel(ncpus=ncpus, seed=1)
    m = kernel.map_create(MapAttr(t, key, value, n, flags, btf_key_type_id=int(btf),
                                  btf_value_type_id=int(btf)))  # fmt: skip
    return kernel, m


def _err(fn: Callable, *args: Any) -> int | None:
    try:
        fn(*args)
    except KernelError as err:
        return err.errno
    return None


@pytest.mark.parametrize("t", STORAGES, ids=lambda t: t.name.lower())
def test_local_storage_owners(t):
    kernel, m = _pybpf(t, 4, 8, 0, NP, btf=True)
    kind = {MapType.SK_STORAGE: "socket", MapType.TASK_STORAGE: "task",
            MapType.CGRP_STORAGE: "cgroup"}.get(t, "file")  # fmt: skip
    owner = Obj(kind, address=0x1000)
    stranger = Obj("pipe" if t != MapType.INODE_STORAGE else "file", address=0x2000)
    m.resolve_fd = {5: owner, 6: stranger}.get
    assert _err(m.lookup, k32(5)) == errno.ENOENT
    assert _err(m.update, k32(5), bytes(8), 2) == errno.ENOENT
    m.update(k32(5), bytes(range(8)), 1)
    assert _err(m.update, k32(5), bytes(8), 1) == errno.EEXIST
    assert m.lookup(k32(5)) == bytes(range(8))
    wrong = {MapType.SK_STORAGE: errno.ENOTSOCK, MapType.INODE_STORAGE: errno.ENOENT}
    assert _err(m.lookup, k32(6)) == wrong.get(t, errno.EBADF)
    # programs see the value user space wrote, by the owner's address
    address = m.storage_get(0x1000)
    assert address and kernel.space.memory.read(address, 8) == bytes(range(8))
    assert m.storage_get(0x3000) == 0
    assert m.storage_get(0x3000, b"\x07" * 8, 2) == 0  # an unknown flag: NULL
    created = m.storage_get(0x3000, b"\x07" * 8, 1)
    assert kernel.space.memory.read(created, 8) == b"\x07" * 8
    assert m.storage_get(0x3000, None, 1) == created
    assert m.storage_delete(0x3000) == 0 and m.storage_delete(0x3000) == -errno.ENOENT
    assert len(m) == 1 and list(m.items()) == []
    m.delete(k32(5))
    assert _err(m.delete, k32(5)) == errno.ENOENT
    kernel.map_free(m)


@pytest.mark.parametrize("t", CGROUP_STORAGES, ids=lambda t: t.name.lower())
def test_cgroup_storage_linked(t):
    kernel, m = _pybpf(t, 16, 12, 0, ncpus=2)
    percpu = t == MapType.PERCPU_CGROUP_STORAGE
    first = m.link(7, attach_type=2)
    second = m.link(8, attach_type=2)
    with pytest.raises(KernelError) as err:
        m.link(7, attach_type=2)
    assert err.value.errno == errno.EEXIST
    key7 = struct.pack("<QI4x", 7, 2)
    assert m.lookup(key7) == bytes(m.user_value_size)
    value = bytes(range(m.user_value_size))
    m.update(key7, value, 2)
    assert m.lookup(key7[:12] + b"\xff" * 4) == value  # padding is not part of the key
    expected = value[16:28] if percpu else value[:12]  # CPU 1's value: the second stride
    assert kernel.space.memory.read(first.address(1), 12) == expected
    assert m.get_next_key(None) == struct.pack("<QI4x", 8, 2)  # newest first
    assert m.get_next_key(struct.pack("<QI4x", 8, 2)) == key7
    assert _err(m.get_next_key, key7) == errno.ENOENT
    run = m.detached()
    assert run.address() not in (first.address(), second.address())
    run.free()
    m.unlink(8, 2)
    assert _err(m.lookup, struct.pack("<QI4x", 8, 2)) == errno.ENOENT
    shared = _pybpf(t, 8, 4, 0)[1]
    assert shared.link(3, 1) is shared.link(3, 2)  # one storage per cgroup
    kernel.map_free(m)


def test_user_ringbuf_records():
    kernel, m = _pybpf(MapType.USER_RINGBUF, 0, 0, 4096)
    seen: list[bytes] = []

    def visit(address: int, length: int) -> int:
        seen.append(kernel.space.memory.read(address, length))
        return 0

    assert m.drain(visit) == 0
    m.write(b"hello")
    pos = m.user_reserve(3)
    m.user_fill(pos, b"abc")
    m.user_discard(pos)
    busy = m.user_reserve(2)
    assert m.drain(visit) == 1 and seen == [b"hello"]
    m.user_fill(busy, b"zz")
    m.user_submit(busy)
    assert m.drain(visit, 4) == -errno.EINVAL
    assert m.drain(visit) == 1 and seen[-1] == b"zz"
    # a record that wraps past the ring's end is contiguous for the program
    for _ in range(4000 // 104):
        m.write(bytes(96))
    assert m.drain(lambda a, n: 0) == 4000 // 104
    m.write(bytes(range(200)))
    assert m.drain(visit) == 1 and seen[-1] == bytes(range(200))
    with pytest.raises(KernelError) as err:
        m.user_reserve(4096)
    assert err.value.errno == errno.E2BIG
    for _ in range(4096 // 16):  # user space may fill the whole ring
        m.write(b"12345678")
    with pytest.raises(KernelError) as err:
        m.write(b"12345678")
    assert err.value.errno == errno.ENOSPC
    assert m.drain(lambda a, n: 1) == 1  # the callback stops the drain; its record counts
    kernel.map_free(m)


def test_stack_trace_record():
    kernel, m = _pybpf(MapType.STACK_TRACE, 4, 16, 2)
    first = m.record([0x1000, 0x2000])
    assert first >= 0 and m.record([0x1000, 0x2000]) == first
    assert m.lookup(k32(first)) == struct.pack("<QQ", 0x1000, 0x2000)
    assert m.record([0x1000], 1) == -errno.EFAULT  # every frame skipped
    assert m.record([0x1000], 1 << 11) == -errno.EINVAL
    others = [m.record([0x3000 + i]) for i in range(8)]
    assert -errno.EEXIST in others or -errno.ENOMEM in others
    assert m.get_next_key(None) == k32(min(i for i in range(m.n_buckets) if m.stack(i)))
    assert m.lookup_and_delete(k32(first)) == struct.pack("<QQ", 0x1000, 0x2000)
    assert _err(m.lookup, k32(first)) == errno.ENOENT
    kernel.map_free(m)


@pytest.mark.parametrize("t", [S, H, R], ids=lambda t: t.name.lower())
def test_socket_maps_hold_sockets(t):
    kernel, m = _pybpf(t, 4, 8, 2)
    sock = Obj("socket", address=0x5000, cookie=42)
    m.resolve_fd = {3: sock, 4: Obj("file"), 6: Obj("socket", sockmap_ok=False,
                                                     reuseport=False)}.get  # fmt: skip
    assert _err(m.update, k32(0), _fd_value(4, 8), 0) == errno.ENOTSOCK
    bad = errno.EINVAL if t == R else errno.EOPNOTSUPP
    assert _err(m.update, k32(0), _fd_value(6, 8), 0) == bad
    m.update(k32(0), _fd_value(3, 8), 1)
    assert _err(m.update, k32(0), _fd_value(3, 8), 1) == errno.EEXIST
    assert m.lookup(k32(0)) == (42).to_bytes(8, "little")
    assert m.target(0 if t != H else k32(0)) is sock
    if t != R:
        key = kernel.space.alloc("key", 4)
        assert m.prog_lookup(key.base) == 0x5000
        m.resolve_sock = {0x5000: sock}.get
        kernel.space.memory.write(key.base, k32(1))
        assert m.prog_update(key.base, 0x5000, 0) == 0 and len(m) == 2
        assert m.prog_update(key.base, 0x6000, 0) == -errno.EINVAL
        assert m.prog_delete(key.base) == 0
    if t == H:
        m.update(k32(9), _fd_value(3, 8), 0)
        assert _err(m.update, k32(10), _fd_value(3, 8), 0) == errno.E2BIG
    m.delete(k32(0))
    kernel.map_free(m)


def test_cpumap_programs_and_targets():
    _, m = _pybpf(MapType.CPUMAP, 4, 8, 4, ncpus=4)
    prog = Obj("prog", prog_type=6, id=17)
    m.resolve_fd = {3: prog}.get
    m.update(k32(2), k32(64) + k32(3), 0)
    assert m.lookup(k32(2)) == k32(64) + k32(17)  # the program's id, not its fd
    assert m.target(2) == 2 and m.target(1) is None
    assert list(m.keys()) == [k32(2)]


def test_cgroup_array_takes_cgroups():
    _, m = _pybpf(MapType.CGROUP_ARRAY, 4, 4, 2)
    cg = Obj("cgroup")
    m.resolve_fd = {3: cg, 4: Obj("file")}.get
    assert _err(m.update, k32(0), k32(4), 0) == errno.EBADF
    m.update(k32(0), k32(3), 0)
    assert m.cgroup_at(0) is cg
    assert _err(m.lookup, k32(0)) == 524


# --- the verifier's view: check_map_func_compatibility -------------------------------------------
def test_map_func_compatibility_of_the_new_types():
    from pybpf.verifier import mapcompat as MC

    lookup = 1  # bpf_map_lookup_elem
    # the refusals the kernel's verifier selftests expect
    assert MC.map_func_error(lookup, MapType.SK_STORAGE) == \
        "cannot pass map_type 24 into func bpf_map_lookup_elem#1"  # fmt: skip
    assert MC.map_func_error(lookup, MapType.STACK_TRACE) == \
        "cannot pass map_type 7 into func bpf_map_lookup_elem#1"  # fmt: skip
    assert MC.map_func_error(81, MapType.HASH) == \
        "cannot pass map_type 1 into func bpf_get_local_storage#81"  # fmt: skip
    # each new type with its own helpers, and only with them
    own = {MapType.SK_STORAGE: 107, MapType.INODE_STORAGE: 145, MapType.TASK_STORAGE: 156,
           MapType.CGRP_STORAGE: 210, MapType.CGROUP_STORAGE: 81,
           MapType.PERCPU_CGROUP_STORAGE: 81, MapType.USER_RINGBUF: 209, MapType.STACK_TRACE: 27,
           MapType.CGROUP_ARRAY: 33, MapType.CPUMAP: 51, MapType.REUSEPORT_SOCKARRAY: 82,
           MapType.SOCKMAP: 52, MapType.SOCKHASH: 72}  # fmt: skip
    for t, helper in own.items():
        assert MC.map_func_error(helper, t) is None, t
        assert MC.map_func_error(helper, MapType.ARRAY) is not None, helper
        if t not in (MapType.SOCKMAP, MapType.SOCKHASH):
            assert MC.map_func_error(lookup, t) is not None, t
    assert MC.map_func_error(194, MapType.TASK_STORAGE) is None  # kptr_xchg
    assert MC.map_func_error(209, MapType.RINGBUF) is not None
    assert MC.map_func_error(lookup, MapType.HASH) is None


@pytest.mark.parametrize(("prog_type", "attach", "func", "allowed"), [
    (6, 0, 2, True), (6, 0, 3, True), (3, 0, 2, True), (1, 0, 3, True), (30, 0, 2, True),
    (13, 0, 3, True), (13, 0, 2, False), (17, 0, 2, False), (17, 0, 3, False),
    (26, 28, 2, True), (26, 24, 3, False), (5, 0, 3, False),
])  # fmt: skip
def test_sockmap_updates_by_program_type(prog_type, attach, func, allowed):
    from pybpf.verifier import mapcompat as MC

    for t in (MapType.SOCKMAP, MapType.SOCKHASH):
        error = MC.map_func_error(func, t, prog_type, attach)
        if allowed:
            assert error is None
        else:
            name = "update" if func == 2 else "delete"
            assert error == ("cannot update sockmap in this context\ncannot pass map_type "
                             f"{int(t)} into func bpf_map_{name}_elem#{func}")  # fmt: skip
        assert MC.map_func_error(func, t) is None  # the program type unknown: allowed
    assert MC.map_func_error(2, MapType.HASH, 17) is None


def test_refusal_is_the_kernels():
    from pybpf.verifier import mapcompat as MC

    _, sockmap = _pybpf(MapType.SOCKMAP, 4, 4, 1)
    assert MC.refusal(1, sockmap, 6) is None  # a lookup gives a referenced socket
    assert MC.refusal(52, sockmap, 3) is None  # sk_redirect_map
    assert MC.refusal(2, sockmap, 17) == ("cannot update sockmap in this context\ncannot pass "
                                          "map_type 15 into func bpf_map_update_elem#2",
                                          errno.EINVAL)  # fmt: skip
    _, storage = _pybpf(MapType.SK_STORAGE, 4, 8, 0, NP, btf=True)
    assert MC.refusal(1, storage) == ("cannot pass map_type 24 into func bpf_map_lookup_elem#1",
                                      errno.EINVAL)  # fmt: skip


def test_one_cgroup_storage_of_each_kind_per_program():
    from pybpf.verifier import mapcompat as MC

    kernel = Kernel(ncpus=2)
    kinds = (*CGROUP_STORAGES, MapType.CGROUP_STORAGE)
    shared = [kernel.map_create(MapAttr(t, 16, 8, 0)) for t in kinds]
    assert MC.map_prog_error(shared[:2]) is None
    assert MC.map_prog_error([shared[0], shared[0]]) is None
    assert MC.map_prog_error(shared) == ("only one cgroup storage of each type is allowed",
                                         errno.EBUSY)  # fmt: skip
    assert MC.map_prog_error(shared[:1], sleepable=True)[1] == errno.EINVAL


def test_libbpf_ring_sizes():
    from pybpf.runtime.maps.ringbuf import libbpf_ring_size

    for t in (MapType.RINGBUF, MapType.USER_RINGBUF):
        assert [libbpf_ring_size(t, n) for n in (0, 8, 4096, 4097, 8192, 12288, 1 << 20)] == \
            [0, 4096, 4096, 8192, 8192, 16384, 1 << 20]  # fmt: skip
        assert libbpf_ring_size(t, 0xFFFFF000) == 0xFFFFF000  # no power of 2 above: the kernel says
    assert libbpf_ring_size(MapType.ARRAY, 8) == 8
