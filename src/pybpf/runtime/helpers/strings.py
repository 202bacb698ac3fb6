"""String helpers: strncmp, strtol, strtoul (kernel/bpf/helpers.c).

* ``bpf_strncmp(s1, s1_sz, s2)``: the kernel's ``strncmp(s1, s2, s1_sz)``
  with ``s2`` a constant NUL-terminated string; returns -1, 0 or 1 (lib/string.c
  compares unsigned bytes and answers the sign only).
* ``bpf_strtol`` / ``bpf_strtoul(buf, buf_len, flags, res)``: ``flags`` is the
  base (0, 8, 10 or 16; other bits or bases ``-EINVAL``); leading white
  space and one ``-`` are skipped; at most 63 characters are parsed; base 0
  detects ``0x`` / ``0``, base 16 skips a ``0x``; no digit is ``-EINVAL``,
  overflow ``-ERANGE`` (strtol: outside s64; strtoul: a ``-`` is
  ``-EINVAL``).  ``*res`` is zeroed first and set on success; the return
  is the number of characters consumed.
"""

from __future__ import annotations

import errno
import struct

from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import read_cstr, u32
from pybpf.verifier import protos as P

BPF_STRTOX_BASE_MASK = 0x1F
_SPACE = frozenset(b" \t\n\v\f\r")
_DIGITS = "0123456789abcdef"


@define("strncmp", [P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE, Arg.PTR_TO_CONST_STR], Ret.INTEGER)
def strncmp(env, r1, r2, r3, r4, r5):
    size = u32(r2)
    s1 = env.memory.read(r1, size)
    s2 = read_cstr(env.memory, r3)
    if s2 is None:
        return -errno.EINVAL
    s2 += b"\0"
    for i in range(size):
        c1, c2 = s1[i], s2[i] if i < len(s2) else 0
        if c1 != c2:
            return -1 if c1 < c2 else 1
        if not c1:
            break
    return 0


def strtoull(buf: bytes, flags: int) -> tuple[int, int, bool]:
    """(consumed or -errno, value, negative) as the kernel's ``__bpf_strtoull``."""
    base = flags & BPF_STRTOX_BASE_MASK
    if not buf or base not in (0, 8, 10, 16) or flags & ~BPF_STRTOX_BASE_MASK:
        return -errno.EINVAL, 0, False
    i = 0
    while i < len(buf) and buf[i] in _SPACE:
        i += 1
    negative = i < len(buf) and buf[i] == 0x2D
    if negative:
        i += 1
    if i == len(buf):
        return -errno.EINVAL, 0, negative
    text = buf[i : i + 63].split(b"\0", 1)[0].decode("latin-1").lower()
    j = 0
    if base == 0:
        if text[:1] == "0":
            base = 16 if text[1:2] == "x" and text[2:3] in tuple(_DIGITS) else 8
        else:
            base = 10
    if base == 16 and text[:2] == "0x":
        j = 2
    value, start = 0, j
    while j < len(text) and text[j] in _DIGITS[:base]:
        value = value * base + _DIGITS.index(text[j])
        if value >> 64:
            return -errno.ERANGE, 0, negative
        j += 1
    if j == start:
        return -errno.EINVAL, 0, negative
    return i + j, value, negative


def _result(env, address: int, value: int) -> None:
    env.memory.write(address, struct.pack("<Q", value & 0xFFFF_FFFF_FFFF_FFFF))


@define("strtol", [P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE, Arg.ANYTHING, P.PTR_TO_LONG], Ret.INTEGER)
def strtol(env, r1, r2, r3, r4, r5):
    _result(env, r4, 0)
    consumed, value, negative = strtoull(env.memory.read(r1, u32(r2)), r3)
    if consumed < 0:
        return consumed
    if negative:
        if value > 1 << 63:
            return -errno.ERANGE
        value = -value
    elif value >= 1 << 63:
        return -errno.ERANGE
    _result(env, r4, value)
    return consumed


@define("strtoul", [P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE, Arg.ANYTHING, P.PTR_TO_LONG],
        Ret.INTEGER)  # fmt: skip
def strtoul(env, r1, r2, r3, r4, r5):
    _result(env, r4, 0)
    consumed, value, negative = strtoull(env.memory.read(r1, u32(r2)), r3)
    if consumed < 0:
        return consumed
    if negative:
        return -errno.EINVAL
    _result(env, r4, value)
    return consumed
