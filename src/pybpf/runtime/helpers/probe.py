"""Fault-free reads: probe_read_kernel, probe_read_user, their _str variants, and the
legacy probe_read / probe_read_str.

The source is any address: a pybpf region (the program's stack, a map
value, a context — kernel memory, readable by every variant), else the
simulated memory of :mod:`pybpf.runtime.kmem` (``kernel.kmem``).  As on
x86-64 Linux:

* a read that cannot be satisfied zero-fills the whole destination and
  returns ``-EFAULT`` (all or nothing);
* ``probe_read_kernel*`` of a user-space address (below TASK_SIZE_MAX + one
  page) is ``-ERANGE`` (``copy_from_kernel_nofault_allowed``);
  ``probe_read_user*`` of a kernel address is ``-EFAULT`` (``access_ok``);
* ``probe_read`` / ``probe_read_str`` pick user or kernel by the address;
* the ``_str`` variants copy up to a NUL or ``size - 1`` bytes, always
  NUL-terminate, leave the rest of the buffer as it was and return the
  length copied including the NUL (``size`` when truncated); size 0 gives 0.
"""

from __future__ import annotations

import errno

from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import u32
from pybpf.runtime.kmem import PAGE_SIZE, TASK_SIZE_MAX, kmem_of
from pybpf.verifier import protos as P

_PROTO = [P.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE_OR_ZERO, Arg.ANYTHING]


def _region_bytes(env, address: int, size: int) -> bytes | None:
    region = env.memory.find(address, size)
    if region is None:
        return None
    off = address - region.base
    return bytes(region.view[off : off + size])


def _check_kind(kind: str, address: int, size: int) -> int:
    if kind == "kernel" and address < TASK_SIZE_MAX + PAGE_SIZE:
        return -errno.ERANGE
    if kind == "user" and (address >= TASK_SIZE_MAX or address + size > TASK_SIZE_MAX):
        return -errno.EFAULT
    return 0


def _read(env, src: int, size: int, kind: str) -> tuple[bytes | None, int]:
    data = _region_bytes(env, src, size)
    err = 0
    if data is None:
        err = _check_kind(kind, src, size)
        if not err:
            data = kmem_of(env.kernel).read(src, size)
            if data is None:
                err = -errno.EFAULT
    return data, err


def read_kernel(env, src: int, size: int) -> bytes | None:
    """copy_from_kernel_nofault's bytes, None when the read faults (any -errno)."""
    data, err = _read(env, src, size, "kernel")
    return None if err else data


def read_into(env, dst: int, size: int, src: int, kind: str) -> int:
    """copy_from_{kernel,user}_nofault into ``dst``; 0 or -errno (destination zeroed)."""
    if size == 0:
        return 0
    data, err = _read(env, src, size, kind)
    if err:
        env.memory.write(dst, bytes(size))
        return err
    env.memory.write(dst, data)
    return 0


def read_str_into(env, dst: int, size: int, src: int, kind: str) -> int:
    """strncpy_from_{kernel,user}_nofault into ``dst``; length with NUL, or -errno."""
    if size == 0:
        return 0
    region = env.memory.find(src, 1)
    if region is not None:
        off = src - region.base
        chunk = bytes(region.view[off : off + min(size, region.size - off)])
        nul = chunk.find(0)
        if nul >= 0:
            text, complete = chunk[:nul], True
        else:
            text, complete = chunk[: size - 1], len(chunk) >= size
    else:
        err = _check_kind(kind, src, 1)
        if err:
            env.memory.write(dst, bytes(size))
            return err
        raw, complete = kmem_of(env.kernel).read_str(src, size)
        text = raw[: size - 1]
        complete = complete or len(raw) >= size
    if not complete:
        env.memory.write(dst, bytes(size))
        return -errno.EFAULT
    env.memory.write(dst, text + b"\0")
    return len(text) + 1


def _compat(address: int) -> str:
    return "user" if address < TASK_SIZE_MAX else "kernel"


@define("probe_read_kernel", _PROTO, Ret.INTEGER, gpl_only=True)
def probe_read_kernel(env, r1, r2, r3, r4, r5):
    return read_into(env, r1, u32(r2), r3, "kernel")


@define("probe_read_user", _PROTO, Ret.INTEGER, gpl_only=True)
def probe_read_user(env, r1, r2, r3, r4, r5):
    return read_into(env, r1, u32(r2), r3, "user")


@define("probe_read", _PROTO, Ret.INTEGER, gpl_only=True)
def probe_read(env, r1, r2, r3, r4, r5):
    return read_into(env, r1, u32(r2), r3, _compat(r3))


@define("probe_read_kernel_str", _PROTO, Ret.INTEGER, gpl_only=True)
def probe_read_kernel_str(env, r1, r2, r3, r4, r5):
    return read_str_into(env, r1, u32(r2), r3, "kernel")


@define("probe_read_user_str", _PROTO, Ret.INTEGER, gpl_only=True)
def probe_read_user_str(env, r1, r2, r3, r4, r5):
    return read_str_into(env, r1, u32(r2), r3, "user")


@define("probe_read_str", _PROTO, Ret.INTEGER, gpl_only=True)
def probe_read_str(env, r1, r2, r3, r4, r5):
    return read_str_into(env, r1, u32(r2), r3, _compat(r3))
