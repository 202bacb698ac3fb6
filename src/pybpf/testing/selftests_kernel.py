"""The kernel's own verdict on a verifier selftest program, through libbpf 1.5.

The Linux verifier selftests (``tools/testing/selftests/bpf/progs/verifier_*.c``) are
compiled objects whose programs carry their expectations as BTF decl tags; the
kernel's harness, ``test_loader.c``, loads each program with libbpf and checks the
verdict, the verifier log and the test-run return value.  This module does the same
loading, for one program at a time, by calling libbpf through :mod:`ctypes`, so that
pybpf's own loader and verifier can be compared with what the running kernel says.

What :func:`kernel_case` does follows ``run_subtest`` in privileged mode: open the
object, autoload only the test program and its ``__auxiliary`` companions, give the
test program a 2 MiB log buffer, its log level and its extra program flags, load the
object; then, when the load succeeded, optionally run it once with
``BPF_PROG_TEST_RUN`` (64 zero bytes in, a 256-byte buffer out) and fetch its
translated ("xlated") instructions.  libbpf's own behaviour is kept as it is (at log
level 0 a failed load is retried by libbpf at level 1, filling the buffer).  Left to
the caller, as test_loader.c's callers do it: unprivileged mode, ``__btf_path``
objects, filling maps before a run (its ``pre_execution_cb``) and struct_ops.

libbpf is not a dependency of pybpf: the shared library is found from the
``PYBPF_LIBBPF`` environment variable, else in :data:`DEFAULT_LIBBPF_PATHS`; build one
with ``sh tests/selftests/build_libbpf.sh /opt/libbpf-1.5``.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pybpf.errors import KernelError, PybpfError
from pybpf.kernel.linux import ProgInfoHead

#: Where the library is looked for when ``PYBPF_LIBBPF`` is not set, in order.
DEFAULT_LIBBPF_PATHS = (
    "/opt/libbpf-1.5/usr/lib64/libbpf.so",
    "/opt/libbpf-1.5/usr/lib/libbpf.so",
    "/opt/libbpf-1.5/usr/lib/x86_64-linux-gnu/libbpf.so",
)
#: The oldest libbpf whose behaviour matches the 6.12 selftests' harness.
MIN_VERSION = (1, 5)
LOG_BUF_SIZE = 2 * 1024 * 1024  # test_loader.c's TEST_LOADER_LOG_BUF_SZ
TEST_DATA_LEN = 64  # bytes of zeros fed to a test run; the output buffer is 4 times that
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_SYSCALL = 31

_HOW_TO_BUILD = (
    "build libbpf 1.5 with `sh tests/selftests/build_libbpf.sh /opt/libbpf-1.5` "
    "or point PYBPF_LIBBPF at a libbpf.so of version 1.5 or later"
)


class LibbpfUnavailable(PybpfError):
    """No usable libbpf shared library (missing, unloadable, or too old)."""


@dataclass(frozen=True)
class KernelOutcome:
    """What the kernel answered for one selftest program."""

    ok: bool  # bpf_object__load succeeded
    errno: int  # 0 when ok, else -err from bpf_object__load
    log: str  # the verifier log captured in the program's log buffer
    retval: int | None  # test-run retval as a signed 32-bit int; None when not run
    run_errno: int = 0  # errno of a failed test run (then retval is None)
    xlated: bytes = b""  # the xlated image when ok and asked for


class _TestRunOpts(ctypes.Structure):
    """``struct bpf_test_run_opts`` of libbpf 1.5's bpf.h (natural C alignment)."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    )


_P = ctypes.c_void_p
_U32 = ctypes.c_uint32
_INT = ctypes.c_int
_PTR = ctypes.POINTER
_SIGNATURES: dict[str, tuple[type | None, list[type]]] = {
    "libbpf_major_version": (_U32, []),
    "libbpf_minor_version": (_U32, []),
    "libbpf_set_print": (_P, [_P]),
    "libbpf_strerror": (_INT, [_INT, ctypes.c_char_p, ctypes.c_size_t]),
    "libbpf_probe_bpf_prog_type": (_INT, [_INT, _P]),
    "bpf_object__open_file": (_P, [ctypes.c_char_p, _P]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_object__load": (_INT, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_program__name": (ctypes.c_char_p, [_P]),
    "bpf_program__set_autoload": (_INT, [_P, ctypes.c_bool]),
    "bpf_program__set_log_buf": (_INT, [_P, _P, ctypes.c_size_t]),
    "bpf_program__set_log_level": (_INT, [_P, _U32]),
    "bpf_program__flags": (_U32, [_P]),
    "bpf_program__set_flags": (_INT, [_P, _U32]),
    "bpf_program__type": (_INT, [_P]),
    "bpf_program__fd": (_INT, [_P]),
    "bpf_prog_test_run_opts": (_INT, [_INT, _PTR(_TestRunOpts)]),
    "bpf_prog_get_info_by_fd": (_INT, [_INT, _PTR(ProgInfoHead), _PTR(_U32)]),
}


@functools.cache
def _libbpf(path: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(path, use_errno=True)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
    except (OSError, AttributeError) as exc:
        raise LibbpfUnavailable(f"cannot use libbpf at {path}: {exc}; {_HOW_TO_BUILD}") from exc
    version = (lib.libbpf_major_version(), lib.libbpf_minor_version())
    if version < MIN_VERSION:
        raise LibbpfUnavailable(
            f"libbpf at {path} is {version[0]}.{version[1]}, older than 1.5; {_HOW_TO_BUILD}"
        )
    lib.libbpf_set_print(None)  # libbpf prints nothing; the log buffer is the output
    return lib


def libbpf() -> ctypes.CDLL:
    """The loaded libbpf (cached per path), or :class:`LibbpfUnavailable`."""
    env = os.environ.get("PYBPF_LIBBPF")
    candidates = (env,) if env else DEFAULT_LIBBPF_PATHS
    for path in candidates:
        if os.path.exists(path):
            return _libbpf(path)
    raise LibbpfUnavailable(f"no libbpf found at {', '.join(candidates)}; {_HOW_TO_BUILD}")


def available() -> str | None:
    """None when :func:`kernel_case` can run here, else why it cannot."""
    if os.geteuid() != 0:
        return "not root: loading the selftests needs CAP_BPF and CAP_SYS_ADMIN"
    try:
        lib = libbpf()
    except LibbpfUnavailable as exc:
        return str(exc)
    probe = lib.libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCKET_FILTER, None)
    if probe != 1:
        return f"bpf(2) unavailable: probing a socket filter gave {probe}"
    return None


def _programs(lib: ctypes.CDLL, obj: int) -> Iterator[tuple[str, int]]:
    prog = lib.bpf_object__next_program(obj, None)
    while prog:
        yield lib.bpf_program__name(prog).decode(), prog
        prog = lib.bpf_object__next_program(obj, prog)


def _strerror(lib: ctypes.CDLL, err: int) -> str:
    """libbpf's text for *err*, which may be one of its own codes (4000 and up)."""
    buf = ctypes.create_string_buffer(256)
    lib.libbpf_strerror(err, buf, len(buf))
    return buf.value.decode("utf-8", "replace")


def _test_run(lib: ctypes.CDLL, fd: int, syscall: bool) -> tuple[int | None, int]:
    data_in = ctypes.create_string_buffer(TEST_DATA_LEN)
    data_out = ctypes.create_string_buffer(TEST_DATA_LEN * 4)
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts))
    if not syscall:  # test_loader runs BPF_PROG_TYPE_SYSCALL programs with empty opts
        opts.data_in = ctypes.cast(data_in, ctypes.c_void_p)
        opts.data_size_in = TEST_DATA_LEN
        opts.data_out = ctypes.cast(data_out, ctypes.c_void_p)
        opts.data_size_out = TEST_DATA_LEN * 4
        opts.repeat = 1
    err = lib.bpf_prog_test_run_opts(fd, ctypes.byref(opts))
    if err != 0:
        return None, ctypes.get_errno() or -err
    return ctypes.c_int32(opts.retval).value, 0


def _xlated(lib: ctypes.CDLL, fd: int) -> bytes:
    buf = ctypes.create_string_buffer(0)
    for _ in range(2):  # first ask for the length, then for the instructions
        info = ProgInfoHead(xlated_prog_len=len(buf), xlated_prog_insns=ctypes.addressof(buf))
        size = _U32(ctypes.sizeof(info))
        if lib.bpf_prog_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) != 0:
            err = ctypes.get_errno()
            raise KernelError(f"bpf_prog_get_info_by_fd: {os.strerror(err)}", errno=err)
        if not len(buf):
            buf = ctypes.create_string_buffer(info.xlated_prog_len)
    return buf.raw[: min(len(buf), info.xlated_prog_len)]


def kernel_case(
    obj_path: str,
    prog: str,
    *,
    load: Iterable[str],
    flags: int,
    log_level: int,
    run: bool,
    xlated: bool = False,
) -> KernelOutcome:
    """Load program *prog* of the object at *obj_path* as test_loader.c's run_subtest does.

    *load* names the programs to autoload besides *prog* (its ``__auxiliary``
    companions); *flags* are OR-ed into the program's flags; *log_level* is the
    verifier log level.  When the load succeeds, *run* asks for one test run and
    *xlated* for the translated instructions.  An object libbpf cannot open, or one
    without *prog*, gives ``ok=False`` with a log that starts with ``libbpf:``.
    """
    lib = libbpf()
    wanted = {*load, prog}
    ctypes.set_errno(0)
    obj = lib.bpf_object__open_file(os.fsencode(obj_path), None)
    if not obj:
        err = ctypes.get_errno() or errno_mod.EINVAL
        return KernelOutcome(False, err, f"libbpf: open failed: {_strerror(lib, err)}", None)
    log_buf = ctypes.create_string_buffer(LOG_BUF_SIZE)
    try:
        target = None
        for name, handle in _programs(lib, obj):
            lib.bpf_program__set_autoload(handle, name in wanted)
            if name == prog:
                target = handle
        if target is None:
            msg = f"libbpf: open failed: no program named {prog!r} in {obj_path}"
            return KernelOutcome(False, errno_mod.ENOENT, msg, None)
        lib.bpf_program__set_log_buf(target, log_buf, LOG_BUF_SIZE)
        lib.bpf_program__set_log_level(target, log_level)
        lib.bpf_program__set_flags(target, lib.bpf_program__flags(target) | flags)
        err = lib.bpf_object__load(obj)
        log = log_buf.value.decode("utf-8", "replace")
        if err:
            return KernelOutcome(False, -err, log, None)
        fd = lib.bpf_program__fd(target)
        retval, run_errno = None, 0
        if run:
            syscall = lib.bpf_program__type(target) == BPF_PROG_TYPE_SYSCALL
            retval, run_errno = _test_run(lib, fd, syscall)
        image = _xlated(lib, fd) if xlated else b""
        return KernelOutcome(True, 0, log, retval, run_errno, image)
    finally:
        lib.bpf_object__close(obj)
