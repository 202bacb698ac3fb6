"""Values formatted as ``bpftool map dump`` prints them with BTF (btf_dumper.c).

:func:`format_value` turns the bytes of a value into Python objects ready for
``json.dumps``, following bpftool's rules:

* ints of 8/16/32/64 bits print as numbers (signed when the encoding says so);
  bitfields, ints of other widths and 128-bit ints print as hex strings
  (``"0x1f"``), and so do ints with a bit offset;
* ``BTF_INT_CHAR`` prints the character (``"a"``) or ``"\\u00xx"``; ``_Bool``
  prints ``true``/``false`` (bpftool reads an ``int`` there: up to 4 bytes);
* an array of ``char`` (``char`` by name or CHAR encoding, through const/volatile but
  not typedefs) that holds a NUL before its end and only printable bytes before the
  NUL prints as a string; other arrays as lists;
* enums print the name of the matching value, or the number;
* pointers print as unsigned numbers;
* struct/union as objects, VAR as ``{name: value}``, DATASEC as
  ``{section: [{var: value}, ...]}``.

Plain mode (bpftool without ``-j``) differs only in tokens printed bare: pointers as
``%p`` (``0x...``, ``(nil)``), hex ints unquoted, unprintable chars as ``0x..``.
Those tokens are :class:`Raw` strings; :func:`render_plain` prints a whole dump
in bpftool's layout (its json_writer in pretty mode).

Deviation: bpftool cannot format FLOAT (it prints ``(unsupported-kind`` and
stops); pybpf prints the number.
"""

from __future__ import annotations

import struct
from typing import Any

from pybpf.errors import BtfError

from .model import Btf
from .types import (
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    MODIFIER_KINDS,
    Array,
    Datasec,
    Enum,
    Enum64,
    Float,
    Fwd,
    Int,
    Ptr,
    Struct,
    Var,
)

MAX_DEPTH = 64


class Raw(str):
    """A token bpftool prints without quotes in plain mode."""

    __slots__ = ()


def format_value(btf: Btf, type_id: int, data: bytes, *, plain: bool = False) -> Any:
    """``data`` (the value's bytes) as bpftool formats type ``type_id``."""
    data = bytes(data)
    return _Dumper(btf, plain).do(type_id, 0, data, 0, 0)


def format_entry(
    btf: Btf,
    key_type_id: int,
    value_type_id: int,
    key: bytes,
    value: bytes | list[bytes],
    *,
    plain: bool = False,
) -> dict[str, Any]:
    """One map entry as bpftool's do_dump_btf: ``{"key": ..., "value": ...}``.

    ``key`` is omitted when ``key_type_id`` is 0 (global data maps); a list of values
    (per-CPU maps) gives ``"values": [{"cpu": n, "value": ...}, ...]``.
    """
    out: dict[str, Any] = {}
    if key_type_id:
        out["key"] = format_value(btf, key_type_id, key, plain=plain)
    if isinstance(value, list):
        out["values"] = [
            {"cpu": i, "value": format_value(btf, value_type_id, v, plain=plain)}
            for i, v in enumerate(value)
        ]
    else:
        out["value"] = format_value(btf, value_type_id, value, plain=plain)
    return out


def map_dump_text(
    btf: Btf,
    key_type_id: int,
    value_type_id: int,
    entries: list[tuple[bytes, bytes | list[bytes]]],
) -> str:
    """The text of ``bpftool map dump`` (no ``-j``) for a map with BTF."""
    objs = [format_entry(btf, key_type_id, value_type_id, k, v, plain=True) for k, v in entries]
    return render_plain(objs) + "\n"


def map_dump_json(
    btf: Btf,
    key_type_id: int,
    value_type_id: int,
    key_size: int,
    entries: list[tuple[bytes, bytes | list[bytes]]],
) -> list[dict[str, Any]]:
    """The objects of ``bpftool -j map dump``: hex key/value and ``formatted``."""
    out = []
    for k, v in entries:
        e: dict[str, Any] = {"key": [f"0x{b:02x}" for b in k[:key_size]]}
        if isinstance(v, list):
            e["values"] = [{"cpu": i, "value": [f"0x{b:02x}" for b in x]} for i, x in enumerate(v)]
        else:
            e["value"] = [f"0x{b:02x}" for b in v]
        e["formatted"] = format_entry(btf, key_type_id, value_type_id, k, v)
        out.append(e)
    return out


# --- json_writer in pretty mode ---------------------------------------------------


# json_writer's escapes (bpftool's json_writer.c jsonw_puts): note the single quote
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
            "\f": "\\f", "\b": "\\b", "'": "\\'"}  # fmt: skip


def _quote(s: str) -> str:
    return '"' + "".join(_ESCAPES.get(c, c) for c in s) + '"'


def _scalar(v: Any) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def render_plain(obj: Any) -> str:
    """``obj`` as bpftool's json_writer prints it in pretty mode (4-space indents)."""
    out: list[str] = []
    sep = [""]
    depth = [0]

    def eol() -> None:
        out.append("\n" + "    " * depth[0])

    def eor() -> None:
        if sep[0]:
            out.append(sep[0])
        sep[0] = ","

    def emit(v: Any) -> None:
        if isinstance(v, dict):
            eor()
            out.append("{")
            depth[0] += 1
            sep[0] = ""
            for k, x in v.items():
                eor()
                eol()
                sep[0] = ""
                out.append(_quote(str(k)) + ": ")
                emit(x)
            depth[0] -= 1
            if sep[0]:
                eol()
            out.append("}")
            sep[0] = ","
        elif isinstance(v, list):
            eor()
            out.append("[")
            depth[0] += 1
            sep[0] = ""
            for x in v:
                emit(x)
            depth[0] -= 1
            if sep[0]:
                eol()
            out.append("]")
            sep[0] = ","
        else:
            eor()
            out.append(_scalar(v))

    emit(obj)
    return "".join(out)


# --- the dumper --------------------------------------------------------------------


def _hex128(v: int, plain: bool) -> Any:
    s = f"0x{v:x}"
    return Raw(s) if plain else s


class _Dumper:
    def __init__(self, btf: Btf, plain: bool) -> None:
        self.btf = btf
        self.plain = plain

    def _need(self, data: bytes, off: int, size: int, type_id: int) -> None:
        if off < 0 or off + size > len(data):
            raise BtfError(f"value data too short for type [{type_id}]: needs {size} bytes "
                           f"at offset {off}, has {len(data)}")  # fmt: skip

    def do(self, type_id: int, bit_off: int, data: bytes, off: int, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise BtfError(f"type [{type_id}]: nesting deeper than {MAX_DEPTH}")
        btf = self.btf
        t = btf.type(type_id)
        k = t.kind_id
        if type_id == 0:
            return Raw("(unknown)") if self.plain else "(unknown)"
        if k in MODIFIER_KINDS:
            return self.do(btf.skip_mods(type_id), bit_off, data, off, depth + 1)
        if isinstance(t, Int):
            return self._int(t, bit_off, data, off, type_id)
        if isinstance(t, Struct):
            self._need(data, off, t.size, type_id)
            obj: dict[str, Any] = {}
            for m in t.members:
                moff = off + m.offset // 8
                if m.bitfield_size:
                    obj[m.name] = self._bitfield(m.bitfield_size, m.offset & 7, data, moff)
                else:
                    obj[m.name] = self.do(m.type, m.offset & 7, data, moff, depth + 1)
            return obj
        if isinstance(t, Array):
            s = self._str_array(t, data, off)
            if s is not None:
                return s
            esize = btf.size_of(t.type)
            return [self.do(t.type, 0, data, off + i * esize, depth + 1)
                    for i in range(t.nelems)]  # fmt: skip
        if isinstance(t, Enum64):
            self._need(data, off, 8, type_id)
            v = int.from_bytes(data[off : off + 8], "little")
            for ev in t.values:
                if ev.value & 0xFFFFFFFFFFFFFFFF == v:
                    return ev.name
            return v - (1 << 64) if v >= 1 << 63 else v
        if isinstance(t, Enum):
            if t.size not in (1, 2, 4, 8):
                raise BtfError(f"enum [{type_id}]: cannot format size {t.size}")
            self._need(data, off, t.size, type_id)
            v = int.from_bytes(data[off : off + t.size], "little", signed=True)
            for ev in t.values:
                ev32 = ev.value & 0xFFFFFFFF
                if ev32 >= 1 << 31:
                    ev32 -= 1 << 32
                if ev32 == v:
                    return ev.name
            return v
        if isinstance(t, Ptr):
            self._need(data, off, 8, type_id)
            v = int.from_bytes(data[off : off + 8], "little")
            if self.plain:
                return Raw(f"{v:#x}" if v else "(nil)")
            return v
        if isinstance(t, Var):
            return {t.name: self.do(t.type, bit_off, data, off, depth + 1)}
        if isinstance(t, Datasec):
            return {t.name: [self.do(v.type, 0, data, off + v.offset, depth + 1)
                             for v in t.vars]}  # fmt: skip
        if isinstance(t, Float):
            self._need(data, off, t.size, type_id)
            fmt = {2: "<e", 4: "<f", 8: "<d"}.get(t.size)
            if fmt is None:
                return _hex128(int.from_bytes(data[off : off + t.size], "little"), self.plain)
            return struct.unpack_from(fmt, data, off)[0]
        if isinstance(t, Fwd):
            raise BtfError(f"type [{type_id}]: cannot format a forward declaration")
        raise BtfError(f"type [{type_id}]: cannot format kind {t.kind}")

    def _str_array(self, t: Array, data: bytes, off: int) -> str | None:
        if not t.nelems:
            return None
        btf = self.btf
        e = btf.type(t.type)
        for _ in range(64):  # const/volatile/restrict/type_tag, not typedef
            if e.kind_id in MODIFIER_KINDS and e.kind != "typedef":
                e = btf.type(e.type)  # type: ignore[attr-defined]
            else:
                break
        if not isinstance(e, Int) or e.size != 1:
            return None
        if e.encoding != INT_CHAR and e.name != "char":
            return None
        self._need(data, off, t.nelems, 0)
        chunk = data[off : off + t.nelems]
        for i, c in enumerate(chunk):
            if c == 0:
                return chunk[:i].decode("ascii")
            # bpftool compares a (signed) char: bytes >= 0x80 are negative, <= 0x1f
            if c <= 0x1F or c >= 0x7F:
                return None
        return None

    def _bitfield(self, nbits: int, bit_off: int, data: bytes, off: int) -> Any:
        nbytes = (bit_off + nbits + 7) // 8
        self._need(data, off, nbytes, 0)
        v = int.from_bytes(data[off : off + nbytes], "little")
        v = (v >> bit_off) & ((1 << nbits) - 1)
        return _hex128(v, self.plain)

    def _int(self, t: Int, bit_off: int, data: bytes, off: int, type_id: int) -> Any:
        nbits = t.bits
        if bit_off or t.offset or nbits % 8:
            total = bit_off + t.offset
            return self._bitfield(nbits, total & 7, data, off + total // 8)
        if nbits == 128:
            self._need(data, off, 16, type_id)
            return _hex128(int.from_bytes(data[off : off + 16], "little"), self.plain)
        enc = t.encoding
        if enc in (0, INT_SIGNED):
            if nbits not in (8, 16, 32, 64):
                return self._bitfield(nbits, 0, data, off)
            n = nbits // 8
            self._need(data, off, n, type_id)
            return int.from_bytes(data[off : off + n], "little", signed=enc == INT_SIGNED)
        if enc == INT_CHAR:
            self._need(data, off, 1, type_id)
            c = data[off]
            if 0x20 <= c <= 0x7E:
                return chr(c)
            return Raw(f"{c:#x}") if self.plain else chr(c)
        if enc == INT_BOOL:
            # bpftool reads an int here (4 bytes) whatever the bool's size
            n = min(4, len(data) - off)
            self._need(data, off, max(n, 1), type_id)
            return int.from_bytes(data[off : off + n], "little") != 0
        raise BtfError(f"int [{type_id}]: unknown encoding {enc}")


__all__ = [
    "Raw",
    "format_entry",
    "format_value",
    "map_dump_json",
    "map_dump_text",
    "render_plain",
]
