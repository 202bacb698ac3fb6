"""A thin bpf(2) backend through ctypes: maps, program load, test run.

Only what differential testing needs: :func:`prog_load` (``BPF_PROG_LOAD``)
returns a :class:`Prog` whose :meth:`Prog.test_run` wraps
``BPF_PROG_TEST_RUN``; :func:`map_create` returns a :class:`KMap` with the
element commands (lookup, update, delete, get_next_key, lookup_and_delete,
freeze) on ``bytes``; :func:`available` says whether bpf(2) can be used
at all.  Every failing command raises :class:`~pybpf.errors.KernelError`
carrying the kernel's ``errno`` (and, for a load, the verifier log);
:class:`~pybpf.errors.KernelUnavailable` when bpf(2) cannot be reached at
all (not Linux, unknown architecture, ``ENOSYS``).  Bad arguments from the
caller (a name the kernel would refuse, a closed program) raise
``ValueError``.

The ``union bpf_attr`` layouts below follow include/uapi/linux/bpf.h: each
command reads its own anonymous struct at offset 0, 64-bit fields are
``__aligned_u64`` (natural ctypes alignment gives the same offsets), and a
size smaller than the kernel's union is accepted (the rest reads as zero).
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import functools
import os
import platform
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from pybpf.errors import KernelError, KernelUnavailable
from pybpf.isa import Instruction, encode

__all__ = [
    "BpfCmd", "KMap", "Prog", "ProgType", "TestRunResult", "available", "map_create",
    "possible_cpus", "prog_load", "syscall_number",
]  # fmt: skip

_SYSCALL_NR = {"x86_64": 321, "amd64": 321, "aarch64": 280, "arm64": 280}

_LOG_MIN = 1 << 16
_LOG_MAX = 1 << 30  # the kernel refuses log_size above UINT_MAX >> 2
_EAGAIN_RETRIES = 5  # libbpf retries BPF_PROG_LOAD this often on EAGAIN
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


class BpfCmd(IntEnum):
    """The bpf(2) commands used here (enum bpf_cmd)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    PROG_TEST_RUN = 10
    OBJ_GET_INFO_BY_FD = 15
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22


class ProgType(IntEnum):
    """A few program types (enum bpf_prog_type)."""

    SOCKET_FILTER = 1
    SCHED_CLS = 3
    XDP = 6


XDP = ProgType.XDP


class _ProgLoadAttr(ctypes.Structure):
    """The BPF_PROG_LOAD member of union bpf_attr, up to expected_attach_type."""

    _fields_ = (
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    )


class _TestRunAttr(ctypes.Structure):
    """The BPF_PROG_TEST_RUN member of union bpf_attr (``test``)."""

    _fields_ = (
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    )


class ProgInfoHead(ctypes.Structure):
    """uapi ``struct bpf_prog_info`` up to ``xlated_prog_insns`` (a short info_len is fine;
    the selftests' libbpf side reads it too)."""

    _fields_ = (
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
    )


class _InfoAttr(ctypes.Structure):
    """The BPF_OBJ_GET_INFO_BY_FD member of union bpf_attr."""

    _fields_ = (("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64))  # fmt: skip


class _MapCreateAttr(ctypes.Structure):
    """The BPF_MAP_CREATE member of union bpf_attr, up to map_token_fd."""

    _fields_ = (
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * 16),
        ("map_ifindex", ctypes.c_uint32),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("value_type_btf_obj_fd", ctypes.c_int32),
        ("map_token_fd", ctypes.c_int32),
    )


class _MapElemAttr(ctypes.Structure):
    """The element-command member of union bpf_attr (key, value or next_key, flags)."""

    _fields_ = (
        ("map_fd", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # union with next_key
        ("flags", ctypes.c_uint64),
    )


if (ctypes.sizeof(_ProgLoadAttr), ctypes.sizeof(_TestRunAttr), ctypes.sizeof(_MapCreateAttr),
        ctypes.sizeof(_MapElemAttr)) != (72, 80, 80, 32):  # pragma: no cover
    raise RuntimeError("bpf_attr layout does not match include/uapi/linux/bpf.h")


def syscall_number() -> int:
    """The bpf(2) syscall number of this machine.

    Raises :class:`KernelUnavailable` off Linux or on an architecture whose
    number is not known here.
    """
    if not sys.platform.startswith("linux"):
        raise KernelUnavailable(
            f"bpf(2) needs Linux, this is {sys.platform}", errno=errno_mod.ENOSYS
        )
    machine = platform.machine()
    nr = _SYSCALL_NR.get(machine)
    if nr is None:
        raise KernelUnavailable(f"bpf(2) syscall number unknown for {machine}",
                                errno=errno_mod.ENOSYS)  # fmt: skip
    return nr


@functools.cache
def _syscall():
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    fn.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint)
    return fn


def _bpf(cmd: BpfCmd, attr: ctypes.Structure) -> int:
    """Issue one bpf(2) command; return its result or raise KernelError."""
    nr = syscall_number()
    while True:
        ctypes.set_errno(0)
        ret = _syscall()(nr, int(cmd), ctypes.addressof(attr), ctypes.sizeof(attr))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != errno_mod.EINTR:
            break
    raise _error(f"bpf({cmd.name})", err)


def _error(what: str, err: int, log: str = "") -> KernelError:
    name = errno_mod.errorcode.get(err, str(err))
    text = f"{what} failed: {name} ({os.strerror(err)})"
    if err == errno_mod.ENOSYS:
        return KernelUnavailable(text, errno=err, log=log)
    return KernelError(text, errno=err, log=log)


@functools.cache
def available() -> str | None:
    """None when bpf(2) can load and run programs here, else a human reason.

    The probe loads ``r0 = 0; exit`` as a socket filter: it fails on
    non-Linux systems, unknown architectures, without CAP_BPF (EPERM) or in
    kernels built without bpf(2) (ENOSYS).  The answer is cached.
    """
    try:
        prog = prog_load(b"\xb7\x00\x00\x00\x00\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00",
                         prog_type=ProgType.SOCKET_FILTER, log_level=0)  # fmt: skip
    except KernelError as err:
        if err.errno == errno_mod.EPERM:
            return f"{err} - bpf(2) needs CAP_BPF/CAP_SYS_ADMIN (run as root)"
        return str(err)
    prog.close()
    return None


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN reports.

    ``retval`` is the program's return value as the kernel keeps it (u32),
    ``data_out`` the packet after the run, ``duration_ns`` the average time
    per repetition, ``ctx_out`` the context after the run (when one was given).
    """

    __test__ = False  # not a pytest test class

    retval: int
    data_out: bytes
    duration_ns: int
    ctx_out: bytes = b""


class Prog:
    """A loaded program: a file descriptor the kernel verified and JIT-compiled.

    Close it with :meth:`close` or a ``with`` block; an unreferenced Prog is
    closed by a finalizer too.
    """

    def __init__(self, fd: int, *, prog_type: int, insn_cnt: int, log: str = "") -> None:
        self.fd = fd
        self.prog_type = prog_type
        self.insn_cnt = insn_cnt
        self.log = log
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def closed(self) -> bool:
        """True once the descriptor was closed."""
        return not self._finalizer.alive

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Prog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"<Prog type={self.prog_type} insns={self.insn_cnt} {state}>"

    def xlated(self) -> bytes:
        """The program as the kernel keeps it (``xlated_prog_insns`` of its info)."""
        info = ProgInfoHead()
        attr = _InfoAttr(bpf_fd=self.fd, info_len=ctypes.sizeof(info),
                         info=ctypes.addressof(info))  # fmt: skip
        _bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
        buf = ctypes.create_string_buffer(max(info.xlated_prog_len, 1))
        info = ProgInfoHead(xlated_prog_len=info.xlated_prog_len,
                             xlated_prog_insns=ctypes.addressof(buf))  # fmt: skip
        attr = _InfoAttr(bpf_fd=self.fd, info_len=ctypes.sizeof(info),
                         info=ctypes.addressof(info))  # fmt: skip
        _bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
        return buf.raw[: info.xlated_prog_len]

    def test_run(
        self,
        data_in: bytes | bytearray,
        *,
        repeat: int = 1,
        ctx_in: bytes | bytearray | None = None,
        data_out_size: int | None = None,
    ) -> TestRunResult:
        """Run the program once (or ``repeat`` times) on ``data_in``.

        ``data_out_size`` bounds the packet copied back (default: the input
        size plus 256 bytes, grown and retried if the kernel answers
        ENOSPC).  Raises :class:`KernelError` when the kernel refuses the run
        (EINVAL for a too-short XDP packet, ENOTSUPP for program types
        without test runs...).
        """
        if self.closed:
            raise ValueError("test_run on a closed program")
        if repeat < 0 or repeat > 0xFFFFFFFF:
            raise ValueError(f"repeat {repeat} does not fit u32")
        data = (ctypes.c_char * max(len(data_in), 1)).from_buffer_copy(bytes(data_in) or b"\0")
        ctx = None
        if ctx_in is not None:
            ctx = (ctypes.c_char * max(len(ctx_in), 1)).from_buffer_copy(bytes(ctx_in) or b"\0")
        out_size = data_out_size if data_out_size is not None else len(data_in) + 256
        for _ in range(4):
            out = ctypes.create_string_buffer(max(out_size, 1))
            ctx_out = ctypes.create_string_buffer(max(len(ctx_in), 1)) if ctx_in else None
            attr = _TestRunAttr(
                prog_fd=self.fd,
                data_size_in=len(data_in),
                data_size_out=out_size,
                data_in=ctypes.addressof(data) if len(data_in) else 0,
                data_out=ctypes.addressof(out),
                repeat=repeat,
                ctx_size_in=len(ctx_in) if ctx_in else 0,
                ctx_size_out=len(ctx_in) if ctx_in else 0,
                ctx_in=ctypes.addressof(ctx) if ctx is not None and ctx_in else 0,
                ctx_out=ctypes.addressof(ctx_out) if ctx_out is not None else 0,
            )
            try:
                _bpf(BpfCmd.PROG_TEST_RUN, attr)
            except KernelError as err:
                if err.errno == errno_mod.ENOSPC and attr.data_size_out > out_size:
                    out_size = attr.data_size_out
                    continue
                raise
            return TestRunResult(
                retval=attr.retval,
                data_out=out.raw[: attr.data_size_out],
                duration_ns=attr.duration,
                ctx_out=ctx_out.raw[: attr.ctx_size_out] if ctx_out is not None else b"",
            )
        raise KernelError("bpf(PROG_TEST_RUN): data_out kept growing", errno=errno_mod.ENOSPC)


def _insn_bytes(insns: Sequence[Instruction] | bytes | bytearray) -> bytes:
    if isinstance(insns, bytes | bytearray):
        data = bytes(insns)
    else:
        data = encode(insns)
    if not data or len(data) % 8:
        raise ValueError(f"program of {len(data)} bytes is not a non-empty list of 8-byte slots")
    return data


def prog_load(
    insns: Sequence[Instruction] | bytes | bytearray,
    prog_type: int = XDP,
    license: str = "GPL",
    log_level: int = 1,
    name: str = "",
    *,
    prog_flags: int = 0,
    expected_attach_type: int = 0,
) -> Prog:
    """Load a program (instructions or raw bytecode) and return it.

    ``log_level`` 1 or 2 asks the verifier for its log (kept as
    :attr:`Prog.log`; the buffer starts at 64 KiB and grows on ENOSPC).
    With ``log_level`` 0 the load runs without a log, and only when it fails
    is it repeated with level 1 to fetch the log for the error (what libbpf
    does: a log slows verification of large programs down).  ``name`` is at
    most 15 characters of ``[A-Za-z0-9_.]``.  Raises :class:`KernelError`
    with the errno and the verifier log when the kernel refuses the program.
    """
    data = _insn_bytes(insns)
    if len(name) > 15 or not set(name) <= _NAME_CHARS:
        raise ValueError(f"program name {name!r}: at most 15 of [A-Za-z0-9_.]")
    if not 0 <= log_level <= 7:
        raise ValueError(f"log_level {log_level} is not in [0, 7]")
    code = ctypes.create_string_buffer(data, len(data))
    lic = ctypes.create_string_buffer(license.encode())
    level, log_size = log_level, _LOG_MIN
    eagain = 0
    while True:
        log = ctypes.create_string_buffer(log_size) if level else None
        attr = _ProgLoadAttr(
            prog_type=int(prog_type),
            insn_cnt=len(data) // 8,
            insns=ctypes.addressof(code),
            license=ctypes.addressof(lic),
            log_level=level,
            log_size=log_size if level else 0,
            log_buf=ctypes.addressof(log) if log is not None else 0,
            prog_flags=prog_flags,
            prog_name=name.encode(),
            expected_attach_type=expected_attach_type,
        )
        try:
            fd = _bpf(BpfCmd.PROG_LOAD, attr)
        except KernelError as err:
            text = log.value.decode(errors="replace") if log is not None else ""
            if err.errno == errno_mod.EAGAIN and eagain < _EAGAIN_RETRIES:
                eagain += 1
                continue
            if err.errno == errno_mod.ENOSPC and level and log_size < _LOG_MAX:
                log_size = min(log_size * 8, _LOG_MAX)
                continue
            if not level and not isinstance(err, KernelUnavailable):
                level = 1  # fetch the verifier's reason
                continue
            raise _error("bpf(PROG_LOAD)", err.errno, text) from None
        text = log.value.decode(errors="replace") if log is not None else ""
        return Prog(fd, prog_type=int(prog_type), insn_cnt=len(data) // 8, log=text)


@functools.cache
def possible_cpus() -> int:
    """How many CPUs the kernel sizes per-CPU map values for (/sys/.../cpu/possible)."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def _buf(data: bytes | None, size: int):
    """A ctypes buffer holding ``data`` (zero-padded to ``size``) and its address (0: NULL)."""
    if data is None:
        return None, 0
    buf = ctypes.create_string_buffer(bytes(data), max(size, len(data), 1))
    return buf, ctypes.addressof(buf)


class KMap:
    """A kernel map: its fd and the element commands on ``bytes``.

    Keys and values are passed as given (the kernel reads ``key_size`` and
    the value size from the pointers, so a wrong length cannot be told to
    it: a short buffer is zero-padded here).  Per-CPU maps take and give
    ``round_up(value_size, 8) * possible_cpus()`` bytes.  Every failing
    command raises :class:`KernelError` with the kernel's errno.
    """

    PERCPU_TYPES = frozenset({5, 6, 10})  # percpu_hash, percpu_array, lru_percpu_hash

    def __init__(self, fd: int, map_type: int, key_size: int, value_size: int,
                 max_entries: int, map_flags: int) -> None:  # fmt: skip
        self.fd = fd
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.map_flags = map_flags
        self._finalizer = weakref.finalize(self, os.close, fd)

    @property
    def user_value_size(self) -> int:
        """Bytes of a value as bpf(2) copies it."""
        if self.map_type in self.PERCPU_TYPES:
            return (self.value_size + 7) // 8 * 8 * possible_cpus()
        return self.value_size

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        self._finalizer()

    def __enter__(self) -> KMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _elem(self, cmd: BpfCmd, key: bytes | None, value: bytes | None, flags: int,
              out_size: int = 0) -> bytes:  # fmt: skip
        kbuf, kaddr = _buf(key, self.key_size)
        vbuf, vaddr = _buf(value if value is not None else (bytes(out_size) if out_size
                                                            else None), out_size)  # fmt: skip
        attr = _MapElemAttr(map_fd=self.fd, key=kaddr, value=vaddr, flags=flags)
        _bpf(cmd, attr)
        del kbuf
        return vbuf.raw[:out_size] if vbuf is not None and out_size else b""

    def lookup(self, key: bytes | None, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_ELEM (``key`` None for queue/stack peek)."""
        return self._elem(BpfCmd.MAP_LOOKUP_ELEM, key, None, flags, self.user_value_size)

    def peek_value(self, value: bytes, flags: int = 0) -> None:
        """BPF_MAP_LOOKUP_ELEM on a bloom filter: the value goes in, errno says the answer."""
        self._elem(BpfCmd.MAP_LOOKUP_ELEM, None, value, flags, len(value))

    def update(self, key: bytes | None, value: bytes, flags: int = 0) -> None:
        """BPF_MAP_UPDATE_ELEM (``key`` None for queue/stack/bloom push)."""
        self._elem(BpfCmd.MAP_UPDATE_ELEM, key, value, flags)

    def delete(self, key: bytes | None) -> None:
        """BPF_MAP_DELETE_ELEM."""
        self._elem(BpfCmd.MAP_DELETE_ELEM, key, None, 0)

    def get_next_key(self, key: bytes | None) -> bytes:
        """BPF_MAP_GET_NEXT_KEY (``key`` None: the first key)."""
        kbuf, kaddr = _buf(key, self.key_size)
        nbuf = ctypes.create_string_buffer(max(self.key_size, 1))
        attr = _MapElemAttr(map_fd=self.fd, key=kaddr, value=ctypes.addressof(nbuf))
        _bpf(BpfCmd.MAP_GET_NEXT_KEY, attr)
        del kbuf
        return nbuf.raw[: self.key_size]

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM (``key`` None for queue/stack pop)."""
        return self._elem(BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM, key, None, flags,
                          self.user_value_size)  # fmt: skip

    def freeze(self) -> None:
        """BPF_MAP_FREEZE."""
        _bpf(BpfCmd.MAP_FREEZE, _MapElemAttr(map_fd=self.fd))


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               map_flags: int = 0, *, name: str = "", inner_map_fd: int = 0,
               map_extra: int = 0) -> KMap:  # fmt: skip
    """BPF_MAP_CREATE; the new map as a :class:`KMap` (KernelError with errno on refusal)."""
    if len(name) > 15 or not set(name) <= _NAME_CHARS:
        raise ValueError(f"map name {name!r}: at most 15 of [A-Za-z0-9_.]")
    attr = _MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                          max_entries=max_entries, map_flags=map_flags,
                          inner_map_fd=inner_map_fd, map_name=name.encode(),
                          map_extra=map_extra)  # fmt: skip
    fd = _bpf(BpfCmd.MAP_CREATE, attr)
    return KMap(fd, map_type, key_size, value_size, max_entries, map_flags)
