"""The .BTF section: parse, look up, resolve, size and declare types.

Little-endian BTF only; big-endian data is recognised by its magic and refused.
Every malformed input raises :class:`~pybpf.errors.BtfError` naming the problem
and the byte offset (from the start of the data); references are checked at
parse time and every walk along them is bounded, so loops raise instead of hang.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from pybpf.errors import BtfError

from .types import (
    KIND_ARRAY,
    KIND_CONST,
    KIND_DATASEC,
    KIND_DECL_TAG,
    KIND_ENUM,
    KIND_ENUM64,
    KIND_FLOAT,
    KIND_FUNC,
    KIND_FUNC_PROTO,
    KIND_FWD,
    KIND_INT,
    KIND_NAMES,
    KIND_PTR,
    KIND_RESTRICT,
    KIND_STRUCT,
    KIND_TYPE_TAG,
    KIND_TYPEDEF,
    KIND_UNION,
    KIND_VAR,
    KIND_VOLATILE,
    MODIFIER_KINDS,
    VOID,
    Array,
    BtfType,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Volatile,
)

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_3U32 = struct.Struct("<III")
_2U32 = struct.Struct("<II")
_ENUM = struct.Struct("<Ii")

# libbpf's MAX_RESOLVE_DEPTH is 32; chains of modifiers in real BTF are short.
MAX_RESOLVE_DEPTH = 32
# How deep size_of / declarations / value formatting may nest (arrays of arrays...).
MAX_NEST_DEPTH = 64

_MODIFIER_CLASSES = {
    KIND_TYPEDEF: Typedef,
    KIND_VOLATILE: Volatile,
    KIND_CONST: Const,
    KIND_RESTRICT: Restrict,
    KIND_TYPE_TAG: TypeTag,
}


class _Strings:
    """The string section; offsets index it (split BTF: after the base's strings)."""

    __slots__ = ("base", "cache", "data", "sec_off", "start")

    def __init__(self, data: bytes, start: int, sec_off: int, base: _Strings | None) -> None:
        self.data = data
        self.start = start  # first offset that belongs to this section
        self.sec_off = sec_off  # byte offset of the section in the BTF blob (for errors)
        self.base = base
        self.cache: dict[int, str] = {}
        pos = 0
        for chunk in data.split(b"\0")[:-1]:
            self.cache.setdefault(start + pos, chunk.decode("utf-8", "replace"))
            pos += len(chunk) + 1

    def get(self, off: int, where: int | None = None) -> str:
        s = self.cache.get(off)
        if s is not None:
            return s
        if off < self.start:
            if self.base is None:
                raise BtfError(f"string offset {off} out of range", offset=where)
            return self.base.get(off, where)
        rel = off - self.start
        if rel >= len(self.data):
            raise BtfError(
                f"string offset {off} out of range (string section is {len(self.data)} bytes)",
                offset=where,
            )
        end = self.data.find(b"\0", rel)
        if end < 0:  # pragma: no cover - the section ends with NUL (checked)
            raise BtfError(f"string at offset {off} is not terminated", offset=where)
        s = self.data[rel:end].decode("utf-8", "replace")
        self.cache[off] = s
        return s

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class Btf:
    """Parsed BTF: ``types[id]`` (id 0 is void) and helpers over them."""

    def __init__(
        self,
        types: list[BtfType],
        strings: _Strings,
        *,
        base: Btf | None = None,
        flags: int = 0,
        raw: bytes = b"",
    ) -> None:
        self.types: Sequence[BtfType] = types
        self._strings = strings
        self.base = base
        self.flags = flags
        self.raw = raw
        self.start_id = len(base.types) if base is not None else 1
        self._by_name: dict[str, list[int]] | None = None

    # --- parsing -----------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, *, base: Btf | None = None) -> Btf:
        """Parse a .BTF blob (``base`` for split BTF such as a kernel module's)."""
        data = bytes(data)
        if len(data) < 4:
            raise BtfError(f"truncated BTF header ({len(data)} bytes)", offset=0)
        magic = int.from_bytes(data[:2], "little")
        if magic == 0x9FEB:
            raise BtfError("big-endian BTF is not supported", offset=0)
        if magic != MAGIC:
            raise BtfError(f"bad BTF magic {magic:#06x}", offset=0)
        if data[2] != 1:
            raise BtfError(f"unsupported BTF version {data[2]}", offset=2)
        if len(data) < HEADER.size:
            raise BtfError(f"truncated BTF header ({len(data)} bytes)", offset=0)
        _m, _v, flags, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(data)
        if hdr_len < HEADER.size:
            raise BtfError(f"BTF header length {hdr_len} is too small", offset=4)
        if hdr_len > len(data):
            raise BtfError(f"BTF header length {hdr_len} exceeds the data", offset=4)
        if any(data[HEADER.size : hdr_len]):
            raise BtfError("unsupported BTF header fields are not zero", offset=HEADER.size)
        body = len(data) - hdr_len
        if type_off % 4:
            raise BtfError(f"type section offset {type_off} is not 4-byte aligned", offset=8)
        if type_off + type_len > body:
            raise BtfError(
                f"type section [{type_off}, {type_off + type_len}) is outside the data "
                f"({body} bytes after the header)",
                offset=8,
            )
        if str_off + str_len > body:
            raise BtfError(
                f"string section [{str_off}, {str_off + str_len}) is outside the data "
                f"({body} bytes after the header)",
                offset=16,
            )
        if type_off < str_off + str_len and str_off < type_off + type_len:
            raise BtfError("type and string sections overlap", offset=8)
        sec = hdr_len + str_off
        sdata = data[sec : sec + str_len]
        if base is None and (not sdata or sdata[0] != 0):
            raise BtfError("string section must start with a NUL byte", offset=sec)
        if sdata and sdata[-1] != 0:
            raise BtfError("string section is not NUL-terminated", offset=sec + str_len - 1)
        if base is not None:
            strings = _Strings(sdata, base._strings.end, sec, base._strings)
            types: list[BtfType] = list(base.types)
        else:
            strings = _Strings(sdata, 0, sec, None)
            types = [VOID]
        first_new = len(types)
        refs = _parse_types(data, hdr_len + type_off, type_len, strings, types)
        btf = cls(types, strings, base=base, flags=flags, raw=data)
        btf.start_id = first_new
        _check_refs(types, refs)
        return btf

    # --- lookup ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.types)

    def __iter__(self) -> Iterator[BtfType]:
        return iter(self.types)

    def type(self, type_id: int) -> BtfType:
        """``types[type_id]``, with a BtfError for an id out of range."""
        if not 0 <= type_id < len(self.types):
            raise BtfError(f"type id {type_id} out of range (0..{len(self.types) - 1})")
        return self.types[type_id]

    def string(self, off: int) -> str:
        """The string at ``off`` in the string section (split BTF: base strings first)."""
        return self._strings.get(off)

    def _index(self) -> dict[str, list[int]]:
        if self._by_name is None:
            idx: dict[str, list[int]] = {}
            for i, t in enumerate(self.types):
                if t.name:
                    idx.setdefault(t.name, []).append(i)
            self._by_name = idx
        return self._by_name

    def find(self, name: str, kind: str | None = None) -> int | None:
        """The first type id named ``name`` (of ``kind``, e.g. ``"struct"``), or None."""
        for i in self._index().get(name, ()):
            if kind is None or self.types[i].kind == kind:
                return i
        return None

    def find_all(self, name: str, kind: str | None = None) -> list[int]:
        return [
            i for i in self._index().get(name, ()) if kind is None or self.types[i].kind == kind
        ]

    def names(self) -> Iterator[str]:
        return iter(self._index())

    # --- resolution --------------------------------------------------------

    def skip_mods(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type id."""
        t = self.type(type_id)
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind_id not in MODIFIER_KINDS:
                return type_id
            type_id = t.type  # type: ignore[attr-defined]
            t = self.types[type_id]
        raise BtfError(f"type reference loop (or chain deeper than {MAX_RESOLVE_DEPTH})")

    resolve = skip_mods

    def resolved(self, type_id: int) -> BtfType:
        return self.types[self.skip_mods(type_id)]

    def size_of(self, type_id: int) -> int:
        """Size in bytes as libbpf's btf__resolve_size computes it."""
        nelems = 1
        t = self.type(type_id)
        for _ in range(MAX_NEST_DEPTH):
            k = t.kind_id
            if k in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_DATASEC,
                     KIND_FLOAT):  # fmt: skip
                return nelems * t.size  # type: ignore[attr-defined]
            if k == KIND_PTR:
                return nelems * 8
            if k in MODIFIER_KINDS or k == KIND_VAR:
                t = self.types[t.type]  # type: ignore[attr-defined]
                continue
            if k == KIND_ARRAY:
                nelems *= t.nelems  # type: ignore[attr-defined]
                t = self.types[t.type]  # type: ignore[attr-defined]
                continue
            raise BtfError(f"type [{type_id}] has no size ({t.kind})")
        raise BtfError(f"type [{type_id}]: reference loop (or nesting deeper than "
                       f"{MAX_NEST_DEPTH})")  # fmt: skip

    def align_of(self, type_id: int) -> int:
        """Alignment as libbpf's btf__align_of (packed structs: 1)."""
        return _align_of(self, type_id, 0)

    def name_of(self, type_id: int) -> str:
        """A readable name: ``struct task_struct``, ``int``, ``u32`` (typedef), ``void``."""
        t = self.type(type_id)
        if t.kind_id in (KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64):
            kw = "enum" if t.kind_id == KIND_ENUM64 else t.kind
            return f"{kw} {t.name}" if t.name else f"{kw} (anon)"
        if t.kind_id == KIND_FWD:
            return f"{'union' if t.union else 'struct'} {t.name}"  # type: ignore[attr-defined]
        if type_id == 0:
            return "void"
        if t.name:
            return t.name
        return self.type_only(type_id).strip() or f"({t.kind})"

    # --- declarations ------------------------------------------------------

    def type_only(self, type_id: int) -> str:
        """bpftool's ``btf_dumper_type_only``: ``int hello(struct xdp_md * ctx)``.

        This is what ``bpftool prog dump xlated`` prints above a function; VARs print as
        ``char [13] LICENSE`` there, DATASECs as ``section (".rodata") ``.
        """
        from .decl import type_only

        return type_only(self, type_id)

    def c_decl(self, type_id: int, name: str = "") -> str:
        """A C declaration of ``type_id`` (named ``name``), in bpftool's spacing.

        Functions print as bpftool prints their signature (``int hello(struct xdp_md *
        ctx)``); a VAR declares itself under its name (``char LICENSE[13]``,
        ``static const char hello.____fmt[15]``); other types declare ``name``
        with C declarator syntax and bpftool's pointer spacing (``struct xdp_md * p``,
        ``int (* cb)(void * )``, ``char buf[16]``).
        """
        from .decl import c_decl

        return c_decl(self, type_id, name)

    def dump_raw(self) -> str:
        """The text of ``bpftool btf dump file X`` (format raw)."""
        from .decl import dump_raw

        return dump_raw(self)

    def with_datasec(self, name: str, size: int, offsets: dict[str, int]) -> Btf:
        """A copy whose DATASEC ``name`` has ``size`` and var offsets from ``offsets``.

        This is libbpf's fix-up of an object file's DATASECs (clang leaves size 0
        until the ELF section is known); ``offsets`` maps var names to symbol values.
        """
        types = list(self.types)
        for i, t in enumerate(types):
            if isinstance(t, Datasec) and t.name == name:
                vars_ = tuple(
                    VarSecinfo(v.type, offsets.get(self.types[v.type].name, v.offset), v.size)
                    for v in t.vars
                )
                types[i] = Datasec(t.name, size, vars_)
        btf = Btf(types, self._strings, base=self.base, flags=self.flags, raw=self.raw)
        btf.start_id = self.start_id
        return btf


# --- the type section -------------------------------------------------------


def _parse_types(
    data: bytes, start: int, length: int, strings: _Strings, types: list[BtfType]
) -> list[tuple[int, int, int]]:
    """Decode the type section into ``types``; returns (type id, ref id, offset) to check."""
    end = start + length
    pos = start
    refs: list[tuple[int, int, int]] = []
    add_ref = refs.append
    sget = strings.get
    unpack3 = _TYPE.unpack_from
    append = types.append
    while pos < end:
        if pos + 12 > end:
            raise BtfError("truncated type header", offset=pos)
        name_off, info, size_type = unpack3(data, pos)
        here = pos
        tid = len(types)
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = info >> 31
        if info & 0x60FF0000:
            raise BtfError(f"type [{tid}]: reserved bits of info {info:#x} are set", offset=pos)
        name = sget(name_off, pos) if name_off else ""
        pos += 12
        if kind in MODIFIER_KINDS_SET or kind == KIND_PTR:
            if vlen:
                raise BtfError(f"type [{tid}] {KIND_NAMES[kind]}: vlen {vlen} is not 0",
                               offset=here)  # fmt: skip
            if kind == KIND_PTR:
                t: BtfType = Ptr(name, size_type)
            else:
                t = _MODIFIER_CLASSES[kind](name, size_type)
            add_ref((tid, size_type, here))
        elif kind in (KIND_STRUCT, KIND_UNION):
            n = 12 * vlen
            if pos + n > end:
                raise BtfError(f"type [{tid}]: members run past the type section", offset=here)
            members = []
            for i in range(vlen):
                m_name, m_type, m_off = _3U32.unpack_from(data, pos + 12 * i)
                mname = sget(m_name, pos + 12 * i) if m_name else ""
                if kflag:
                    members.append(Member(mname, m_type, m_off & 0xFFFFFF, m_off >> 24))
                else:
                    members.append(Member(mname, m_type, m_off, 0))
                add_ref((tid, m_type, pos + 12 * i))
            pos += n
            cls = Struct if kind == KIND_STRUCT else Union
            t = cls(name, size_type, tuple(members), bool(kflag))
        elif kind == KIND_INT:
            if pos + 4 > end:
                raise BtfError(f"type [{tid}]: truncated int", offset=here)
            (v,) = _U32.unpack_from(data, pos)
            pos += 4
            bits = v & 0xFF
            ioff = (v >> 16) & 0xFF
            enc = (v >> 24) & 0xF
            if v & 0xF000FF00 or enc not in (0, 1, 2, 4):
                raise BtfError(f"type [{tid}] int: bad encoding word {v:#x}", offset=here + 12)
            if size_type not in (1, 2, 4, 8, 16) or bits + ioff > size_type * 8 or bits > 128:
                raise BtfError(
                    f"type [{tid}] int: bad size {size_type}, bits {bits}, offset {ioff}",
                    offset=here,
                )
            t = Int(name, size_type, enc, ioff, bits)
        elif kind == KIND_ARRAY:
            if pos + 12 > end:
                raise BtfError(f"type [{tid}]: truncated array", offset=here)
            a_type, a_idx, a_n = _3U32.unpack_from(data, pos)
            add_ref((tid, a_type, pos))
            add_ref((tid, a_idx, pos + 4))
            pos += 12
            t = Array(name, a_type, a_idx, a_n)
        elif kind == KIND_ENUM:
            n = 8 * vlen
            if pos + n > end:
                raise BtfError(f"type [{tid}]: enum values run past the type section",
                               offset=here)  # fmt: skip
            vals = []
            for i in range(vlen):
                e_name, e_val = _ENUM.unpack_from(data, pos + 8 * i)
                if not kflag and e_val < 0:
                    e_val &= 0xFFFFFFFF
                vals.append(EnumValue(sget(e_name, pos + 8 * i) if e_name else "", e_val))
            pos += n
            t = Enum(name, size_type, tuple(vals), bool(kflag))
        elif kind == KIND_ENUM64:
            n = 12 * vlen
            if pos + n > end:
                raise BtfError(f"type [{tid}]: enum64 values run past the type section",
                               offset=here)  # fmt: skip
            vals = []
            for i in range(vlen):
                e_name, lo, hi = _3U32.unpack_from(data, pos + 12 * i)
                v64 = lo | (hi << 32)
                if kflag and v64 >= 1 << 63:
                    v64 -= 1 << 64
                vals.append(EnumValue(sget(e_name, pos + 12 * i) if e_name else "", v64))
            pos += n
            t = Enum64(name, size_type, tuple(vals), bool(kflag))
        elif kind == KIND_FWD:
            t = Fwd(name, bool(kflag))
        elif kind == KIND_FUNC:
            t = Func(name, size_type, vlen)
            add_ref((tid, size_type, here + 8))
        elif kind == KIND_FUNC_PROTO:
            n = 8 * vlen
            if pos + n > end:
                raise BtfError(f"type [{tid}]: params run past the type section", offset=here)
            params = []
            for i in range(vlen):
                p_name, p_type = _2U32.unpack_from(data, pos + 8 * i)
                params.append(Param(sget(p_name, pos + 8 * i) if p_name else "", p_type))
                if p_type:
                    add_ref((tid, p_type, pos + 8 * i))
            pos += n
            add_ref((tid, size_type, here + 8))
            t = FuncProto(name, size_type, tuple(params))
        elif kind == KIND_VAR:
            if pos + 4 > end:
                raise BtfError(f"type [{tid}]: truncated var", offset=here)
            (linkage,) = _U32.unpack_from(data, pos)
            pos += 4
            add_ref((tid, size_type, here + 8))
            t = Var(name, size_type, linkage)
        elif kind == KIND_DATASEC:
            n = 12 * vlen
            if pos + n > end:
                raise BtfError(f"type [{tid}]: datasec vars run past the type section",
                               offset=here)  # fmt: skip
            secvars = []
            for i in range(vlen):
                v_type, v_off, v_size = _3U32.unpack_from(data, pos + 12 * i)
                secvars.append(VarSecinfo(v_type, v_off, v_size))
                add_ref((tid, v_type, pos + 12 * i))
            pos += n
            t = Datasec(name, size_type, tuple(secvars))
        elif kind == KIND_FLOAT:
            if size_type not in (2, 4, 8, 12, 16):
                raise BtfError(f"type [{tid}] float: bad size {size_type}", offset=here)
            t = Float(name, size_type)
        elif kind == KIND_DECL_TAG:
            if pos + 4 > end:
                raise BtfError(f"type [{tid}]: truncated decl_tag", offset=here)
            (cidx,) = _I32.unpack_from(data, pos)
            pos += 4
            add_ref((tid, size_type, here + 8))
            t = DeclTag(name, size_type, cidx)
        else:
            raise BtfError(f"type [{tid}]: unknown BTF kind {kind}", offset=here)
        append(t)
    return refs


MODIFIER_KINDS_SET = MODIFIER_KINDS


def _check_refs(types: list[BtfType], refs: list[tuple[int, int, int]]) -> None:
    n = len(types)
    for tid, ref, off in refs:
        if ref >= n:
            raise BtfError(f"type [{tid}] refers to type id {ref} out of range (0..{n - 1})",
                           offset=off)  # fmt: skip
    # Chains of modifiers / pointers must end: find loops among the referring kinds.
    # (A pointer to a struct containing that pointer is fine: structs end the walk.)
    chain_kinds = MODIFIER_KINDS | {KIND_PTR, KIND_ARRAY, KIND_VAR}
    state = bytearray(n)  # 0 unknown, 1 in progress, 2 finite
    for start in range(n):
        if state[start]:
            continue
        path = []
        tid = start
        while True:
            st = state[tid]
            if st == 2:
                break
            if st == 1:
                raise BtfError(f"type [{tid}] refers to itself through a loop of references")
            t = types[tid]
            if t.kind_id not in chain_kinds:
                state[tid] = 2
                break
            state[tid] = 1
            path.append(tid)
            tid = t.type  # type: ignore[attr-defined]
        for p in path:
            state[p] = 2


def _align_of(btf: Btf, type_id: int, depth: int) -> int:
    if depth > MAX_NEST_DEPTH:
        raise BtfError(f"type [{type_id}]: nesting deeper than {MAX_NEST_DEPTH}")
    t = btf.type(type_id)
    k = t.kind_id
    if k in (KIND_INT, KIND_ENUM, KIND_ENUM64, KIND_FLOAT):
        return min(8, t.size)  # type: ignore[attr-defined]
    if k == KIND_PTR:
        return 8
    if k in MODIFIER_KINDS or k in (KIND_ARRAY, KIND_VAR):
        return _align_of(btf, t.type, depth + 1)  # type: ignore[attr-defined]
    if k in (KIND_STRUCT, KIND_UNION):
        best = 1
        for m in t.members:  # type: ignore[attr-defined]
            a = _align_of(btf, m.type, depth + 1)
            if m.bitfield_size == 0 and m.offset % (8 * a):
                return 1  # packed
            best = max(best, a)
        if t.size % best:  # type: ignore[attr-defined]
            return 1
        return best
    raise BtfError(f"type [{type_id}] has no alignment ({t.kind})")


__all__ = ["KIND_CONST", "KIND_VOLATILE", "MAGIC", "Btf"]
