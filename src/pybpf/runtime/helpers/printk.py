"""The printf family: trace_printk, trace_vprintk, snprintf.

All three go through :func:`bprintf`, pybpf's rendering of the kernel's
``bpf_bprintf_prepare`` + ``bstr_printf`` (kernel/bpf/helpers.c,
lib/vsprintf.c):

* the format must be NUL-terminated within its size (trace_printk,
  trace_vprintk; snprintf's is a constant string) and may hold only
  printable ASCII and white space — anything else is ``-EINVAL``;
* a conversion is ``%`` + flags ``0 + - space`` + width + one of ``d i u x X``
  (``l`` / ``ll`` for 64 bits, else the low 32 bits), ``c``, ``s``, ``p``
  (hashed, as ``%p`` prints without ``no_hash_pointers``), ``pK`` (hashed),
  ``px`` (raw), ``ps`` / ``pS`` / ``pB`` (no symbols here: ``0x<address>``),
  ``pks`` / ``pus`` (kernel / user string), ``pI4`` ``pi4`` ``pI6`` ``pi6``
  (an address read from memory); no precision, no ``h``, no ``#``;
* ``%s`` must be followed by NUL, space or punctuation; strings are read
  without faulting (a pybpf region, else the simulated kernel memory
  :mod:`pybpf.runtime.kmem`); an unreadable one prints as empty;
* more conversions than arguments (3 for trace_printk, ``data_len / 8`` for
  the others) is ``-EINVAL``; the arguments' binary copy is bounded to 512
  bytes (``-ENOSPC`` beyond) and the output to 1023 characters.

trace_printk and trace_vprintk write the text to the trace pipe as the
``bpf_trace_printk`` event and return its length (before truncation), as
``bstr_printf`` does; snprintf writes at most ``str_size - 1`` bytes and a
NUL and returns the length the whole text needs, NUL included.
"""

from __future__ import annotations

import errno
import hashlib
import struct

from pybpf.runtime.helpers import Arg, ArgFlag, Ret, define
from pybpf.runtime.helpers._common import read_cstr, u32
from pybpf.runtime.kmem import TASK_SIZE_MAX
from pybpf.verifier import protos as P

MAX_TRACE_PRINTK_VARARGS = 3
MAX_BPRINTF_VARARGS = 12
MAX_BPRINTF_BIN_ARGS = 512
MAX_BPRINTF_BUF = 1024
# the varargs array of trace_vprintk/snprintf: ARG_PTR_TO_MEM | PTR_MAYBE_NULL | MEM_RDONLY
_ARGS = P.PTR_TO_RDONLY_MEM | ArgFlag.MAYBE_NULL

_FLAGS = b"0+- "
_PUNCT = frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_SPACE = frozenset(b" \t\n\v\f\r")


def _terminates(c: int) -> bool:
    """What may follow %s / %p: NUL, space or punctuation."""
    return c == 0 or c in _SPACE or c in _PUNCT


def _allowed(c: int) -> bool:
    return 0x20 <= c < 0x7F or c in _SPACE


def _hash_pointer(env, value: int) -> str:
    """``%p``: a 32-bit keyed hash of the pointer, 16 hex digits (as on 64-bit Linux)."""
    key = getattr(env.kernel, "_ptr_hash_key", None)
    if key is None:
        key = env.kernel.random.getrandbits(128).to_bytes(16, "little")
        env.kernel._ptr_hash_key = key
    digest = hashlib.blake2b(value.to_bytes(8, "little"), key=key, digest_size=4).digest()
    return f"{int.from_bytes(digest, 'little'):016x}"


def read_string(env, address: int, limit: int, kind: str = "s") -> bytes | None:
    """A NUL-terminated string of at most ``limit`` bytes (NUL excluded), or None.

    ``kind`` is ``k`` (kernel), ``u`` (user) or ``s`` (user below
    TASK_SIZE_MAX, else kernel).  pybpf's own regions are readable by every
    kind; the simulated kernel memory answers by address class.
    """
    if limit <= 0:
        return b""
    region = env.memory.find(address, 1)
    if region is not None:
        off = address - region.base
        data = bytes(region.view[off : off + min(limit, region.size - off)])
        nul = data.find(0)
        if nul >= 0:
            return data[:nul]
        if len(data) == limit:
            return data
        return None  # the region ends before the NUL
    from pybpf.runtime.kmem import kmem_of

    user = address < TASK_SIZE_MAX
    if (kind == "k" and user) or (kind == "u" and not user):
        return None
    data, complete = kmem_of(env.kernel).read_str(address, limit)
    return data if complete else None


def read_bytes(env, address: int, size: int) -> bytes | None:
    """``size`` bytes from a region or the simulated kernel memory, or None."""
    region = env.memory.find(address, size)
    if region is not None:
        off = address - region.base
        return bytes(region.view[off : off + size])
    from pybpf.runtime.kmem import kmem_of

    return kmem_of(env.kernel).read(address, size)


def _pad(text: str, flags: str, width: int, numeric: bool) -> str:
    if len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and numeric:
        if text[:1] in ("+", "-", " "):
            return text[0] + text[1:].rjust(width - 1, "0")
        return text.rjust(width, "0")
    return text.rjust(width)


def _integer(value: int, size: int, conv: str, flags: str) -> str:
    bits = 8 * size
    value &= (1 << bits) - 1
    if conv in "di":
        if value >> (bits - 1):
            return "-" + str((1 << bits) - value)
        sign = "+" if "+" in flags else " " if " " in flags else ""
        return sign + str(value)
    if conv == "u":
        return str(value)
    return f"{value:x}" if conv == "x" else f"{value:X}"


def _ip(env, conv: str, version: str, address: int) -> str:
    raw = read_bytes(env, address, 4 if version == "4" else 16)
    if raw is None:
        raw = bytes(4 if version == "4" else 16)
    if version == "4":
        return ".".join(f"{b:03d}" if conv == "i" else str(b) for b in raw)
    if conv == "i":
        return raw.hex()
    return ":".join(f"{w:04x}" for w in struct.unpack(">8H", raw))


def bprintf(env, fmt: bytes, args: list[int]) -> bytes | int:
    """Render ``fmt`` (without its NUL) with ``args``; the text, or ``-errno``."""
    out: list[str] = []
    budget = MAX_BPRINTF_BIN_ARGS
    used = 0
    n = len(fmt)

    def at(k: int) -> int:
        return fmt[k] if k < n else 0

    i = 0
    while i < n:
        c = fmt[i]
        if not _allowed(c):
            return -errno.EINVAL
        if c != 0x25:  # '%'
            out.append(chr(c))
            i += 1
            continue
        if at(i + 1) == 0x25:
            out.append("%")
            i += 2
            continue
        if used >= len(args):
            return -errno.EINVAL
        arg = args[used] & 0xFFFF_FFFF_FFFF_FFFF
        i += 1
        start = i
        while at(i) in _FLAGS:
            i += 1
        flags = fmt[start:i].decode()
        width = 0
        if 0x31 <= at(i) <= 0x39:
            wstart = i
            while 0x30 <= at(i) <= 0x39:
                i += 1
            width = int(fmt[wstart:i])
        conv = chr(at(i))
        numeric = False
        if conv == "p":
            nxt = chr(at(i + 1))
            if nxt in "ku" and at(i + 2) == 0x73:  # %pks / %pus
                if not _terminates(at(i + 3)):
                    return -errno.EINVAL
                if budget == 0:
                    return -errno.ENOSPC
                text = read_string(env, arg, budget - 1, nxt)
                raw = text if text is not None else b""
                budget -= len(raw) + 1
                field = raw.decode("utf-8", "backslashreplace")
                i += 3
            elif at(i + 1) == 0 or at(i + 1) in _SPACE or at(i + 1) in _PUNCT or nxt in "KxsS":
                budget -= (-(MAX_BPRINTF_BIN_ARGS - budget)) % 4
                if budget < 8:
                    return -errno.ENOSPC
                budget -= 8
                if nxt == "x":
                    field = f"{arg:016x}"
                elif nxt in "sS":
                    field = f"{arg:#x}"
                else:
                    field = _hash_pointer(env, arg)
                i += 2 if nxt in "KxsS" else 1
            elif nxt == "B":
                field = f"{arg:#x}"
                budget -= len(field) + 1
                i += 2
            elif nxt in "iI" and chr(at(i + 2)) in "46":
                size = 4 if chr(at(i + 2)) == "4" else 16
                if budget < size:
                    return -errno.ENOSPC
                field = _ip(env, nxt, chr(at(i + 2)), arg)
                budget -= len(field) + 1
                i += 3
            else:
                return -errno.EINVAL
        elif conv == "s":
            if not _terminates(at(i + 1)):
                return -errno.EINVAL
            if budget == 0:
                return -errno.ENOSPC
            text = read_string(env, arg, budget - 1, "s")
            raw = text if text is not None else b""
            budget -= len(raw) + 1
            field = raw.decode("utf-8", "backslashreplace")
            i += 1
        elif conv == "c":
            if budget == 0:
                return -errno.ENOSPC
            budget -= 1
            field = chr(arg & 0xFF)
            i += 1
        else:
            size = 4
            if at(i) == 0x6C:  # 'l'
                size, i = 8, i + 1
            if at(i) == 0x6C:
                size, i = 8, i + 1
            conv = chr(at(i))
            if conv not in "iduxX" or at(i) == 0:
                return -errno.EINVAL
            budget -= (-(MAX_BPRINTF_BIN_ARGS - budget)) % 4
            if budget < size:
                return -errno.ENOSPC
            budget -= size
            field = _integer(arg, size, conv, flags)
            numeric = True
            i += 1
        out.append(_pad(field, flags, width, numeric))
        used += 1
    return "".join(out).encode("utf-8", "backslashreplace")


def _format_arg(env, address: int, size: int) -> bytes | int:
    """The format of trace_printk / trace_vprintk: NUL within ``size`` bytes, else -EINVAL."""
    raw = env.memory.read(address, size)
    nul = raw.find(0)
    if nul < 0:
        return -errno.EINVAL
    return raw[:nul]


def _trace(env, text: bytes) -> int:
    shown = text[: MAX_BPRINTF_BUF - 1]
    env.kernel.trace.write(shown.decode("utf-8", "backslashreplace"), cpu=env.cpu)
    return len(text)


@define("trace_printk", [P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE], Ret.INTEGER, gpl_only=True)
def trace_printk(env, r1, r2, r3, r4, r5):
    fmt = _format_arg(env, r1, u32(r2))
    if isinstance(fmt, int):
        return fmt
    text = bprintf(env, fmt, [r3, r4, r5])
    if isinstance(text, int):
        return text
    return _trace(env, text)


def _varargs(env, address: int, data_len: int) -> list[int] | int:
    if data_len % 8 or data_len > MAX_BPRINTF_VARARGS * 8 or (data_len and not address):
        return -errno.EINVAL
    raw = env.memory.read(address, data_len) if data_len else b""
    return list(struct.unpack(f"<{data_len // 8}Q", raw))


@define("trace_vprintk", [P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE, _ARGS, Arg.CONST_SIZE_OR_ZERO],
        Ret.INTEGER, gpl_only=True)  # fmt: skip
def trace_vprintk(env, r1, r2, r3, r4, r5):
    args = _varargs(env, r3, u32(r4))
    if isinstance(args, int):
        return args
    fmt = _format_arg(env, r1, u32(r2))
    if isinstance(fmt, int):
        return fmt
    text = bprintf(env, fmt, args)
    if isinstance(text, int):
        return text
    return _trace(env, text)


@define("snprintf", [P.PTR_TO_MEM_OR_NULL | ArgFlag.MEM_WRITE, Arg.CONST_SIZE_OR_ZERO,
                     Arg.PTR_TO_CONST_STR, _ARGS, Arg.CONST_SIZE_OR_ZERO], Ret.INTEGER,
        gpl_only=True)  # fmt: skip
def snprintf(env, r1, r2, r3, r4, r5):
    args = _varargs(env, r4, u32(r5))
    if isinstance(args, int):
        return args
    fmt = read_cstr(env.memory, r3)
    if fmt is None:
        return -errno.EINVAL
    text = bprintf(env, fmt, args)
    if isinstance(text, int):
        return text
    size = u32(r2)
    if size:
        shown = text[: size - 1]
        env.memory.write(r1, shown + b"\0")
    return len(text) + 1


__all__ = ["bprintf", "read_bytes", "read_string"]
