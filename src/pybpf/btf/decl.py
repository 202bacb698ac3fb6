"""Text forms of BTF types: bpftool's signatures, C declarations, the raw dump."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybpf.errors import BtfError

from .types import (
    FUNC_LINKAGE,
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    KIND_ARRAY,
    KIND_CONST,
    KIND_DATASEC,
    KIND_ENUM,
    KIND_ENUM64,
    KIND_FLOAT,
    KIND_FUNC,
    KIND_FUNC_PROTO,
    KIND_FWD,
    KIND_INT,
    KIND_PTR,
    KIND_RESTRICT,
    KIND_STRUCT,
    KIND_TYPE_TAG,
    KIND_TYPEDEF,
    KIND_UNION,
    KIND_VAR,
    KIND_VOLATILE,
    VAR_LINKAGE,
    VAR_STATIC,
    Datasec,
    DeclTag,
    Enum,
    FuncProto,
    Int,
    Struct,
    Var,
)

if TYPE_CHECKING:
    from .model import Btf

MAX_DEPTH = 64


class _Unprintable(Exception):
    pass


# --- bpftool's btf_dumper_type_only -------------------------------------------


def type_only(btf: Btf, type_id: int) -> str:
    """bpftool's btf_dumper_type_only (the text above a function in ``prog dump``)."""
    out: list[str] = []
    try:
        _type_only(btf, type_id, out, 0)
    except _Unprintable:
        return ""
    return "".join(out)


def _type_only(btf: Btf, type_id: int, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BtfError(f"type [{type_id}]: nesting deeper than {MAX_DEPTH}")
    if type_id == 0:
        out.append("void ")
        return
    t = btf.type(type_id)
    k = t.kind_id
    if k in (KIND_INT, KIND_TYPEDEF, KIND_FLOAT):
        out.append(f"{t.name} ")
    elif k == KIND_STRUCT:
        out.append(f"struct {t.name} ")
    elif k == KIND_UNION:
        out.append(f"union {t.name} ")
    elif k in (KIND_ENUM, KIND_ENUM64):
        out.append(f"enum {t.name} ")
    elif k == KIND_ARRAY:
        _type_only(btf, t.type, out, depth + 1)  # type: ignore[attr-defined]
        out.append(f"[{t.nelems}]")  # type: ignore[attr-defined]
    elif k == KIND_PTR:
        _type_only(btf, t.type, out, depth + 1)  # type: ignore[attr-defined]
        out.append("* ")
    elif k == KIND_FWD:
        out.append(f"{'union' if t.union else 'struct'} {t.name} ")  # type: ignore[attr-defined]
    elif k in (KIND_VOLATILE, KIND_CONST, KIND_RESTRICT):
        out.append({KIND_VOLATILE: "volatile ", KIND_CONST: "const ",
                    KIND_RESTRICT: "restrict "}[k])  # fmt: skip
        _type_only(btf, t.type, out, depth + 1)  # type: ignore[attr-defined]
    elif k == KIND_FUNC_PROTO:
        _func(btf, t, None, out, depth + 1)  # type: ignore[arg-type]
    elif k == KIND_FUNC:
        proto = btf.type(t.type)  # type: ignore[attr-defined]
        if not isinstance(proto, FuncProto):
            raise _Unprintable
        _func(btf, proto, t.name, out, depth + 1)
    elif k == KIND_VAR:
        if t.linkage == VAR_STATIC:  # type: ignore[attr-defined]
            out.append("static ")
        _type_only(btf, t.type, out, depth + 1)  # type: ignore[attr-defined]
        out.append(f" {t.name}")
    elif k == KIND_DATASEC:
        out.append(f'section ("{t.name}") ')
    else:  # type tags, decl tags: bpftool prints nothing for the whole signature
        raise _Unprintable


def _func(btf: Btf, proto: FuncProto, name: str | None, out: list[str], depth: int) -> None:
    _type_only(btf, proto.type, out, depth)
    out.append(f"{name}(" if name is not None else "(")
    for i, p in enumerate(proto.params):
        if i:
            out.append(", ")
        if p.type:
            _type_only(btf, p.type, out, depth)
            if p.name:
                out.append(p.name)
            elif out and out[-1].endswith(" "):
                out[-1] = out[-1][:-1]
        else:
            out.append("...")
    out.append(")")


# --- C declarations -------------------------------------------------------------


def c_decl(btf: Btf, type_id: int, name: str = "") -> str:
    t = btf.type(type_id)
    if isinstance(t, Var):
        static = "static " if t.linkage == VAR_STATIC else ""
        return static + _decl(btf, t.type, name or t.name, 0).rstrip()
    if t.kind_id == KIND_FUNC:
        proto = btf.type(t.type)  # type: ignore[attr-defined]
        if not isinstance(proto, FuncProto):
            raise BtfError(f"func [{type_id}] does not refer to a func_proto")
        return _decl(btf, proto.type, f"{name or t.name}({_params(btf, proto, 0)})", 0).rstrip()
    return _decl(btf, type_id, name, 0).rstrip()


def _params(btf: Btf, proto: FuncProto, depth: int) -> str:
    parts = []
    for p in proto.params:
        parts.append(_decl(btf, p.type, p.name, depth + 1).rstrip() if p.type else "...")
    return ", ".join(parts)


def _decl(btf: Btf, type_id: int, inner: str, depth: int) -> str:
    """``inner`` is the declarator built so far (name, ``* name``, ``name[4]``...)."""
    if depth > MAX_DEPTH:
        raise BtfError(f"type [{type_id}]: nesting deeper than {MAX_DEPTH}")
    if type_id == 0:
        return f"void {inner}"
    t = btf.type(type_id)
    k = t.kind_id
    if k in (KIND_INT, KIND_TYPEDEF, KIND_FLOAT):
        return f"{t.name} {inner}"
    if k in (KIND_STRUCT, KIND_UNION):
        return f"{t.kind} {t.name} {inner}" if t.name else f"{t.kind} {inner}"
    if k in (KIND_ENUM, KIND_ENUM64):
        return f"enum {t.name} {inner}"
    if k == KIND_FWD:
        return f"{'union' if t.union else 'struct'} {t.name} {inner}"  # type: ignore[attr-defined]
    if k == KIND_PTR:
        target = btf.type(t.type)  # type: ignore[attr-defined]
        while target.kind_id == KIND_TYPE_TAG:
            target = btf.type(target.type)  # type: ignore[attr-defined]
        if target.kind_id in (KIND_ARRAY, KIND_FUNC_PROTO):
            inner = f"(* {inner})" if inner else "(*)"
        else:
            inner = f"* {inner}"
        return _decl(btf, t.type, inner, depth + 1)  # type: ignore[attr-defined]
    if k == KIND_ARRAY:
        return _decl(btf, t.type, f"{inner}[{t.nelems}]", depth + 1)  # type: ignore[attr-defined]
    if k in (KIND_CONST, KIND_VOLATILE, KIND_RESTRICT):
        q = {KIND_CONST: "const", KIND_VOLATILE: "volatile", KIND_RESTRICT: "restrict"}[k]
        below = btf.type(t.type)  # type: ignore[attr-defined]
        if below.kind_id == KIND_PTR:  # qualifies the pointer itself: char * const p
            return _decl(btf, t.type, f"{q} {inner}", depth + 1)  # type: ignore[attr-defined]
        return f"{q} " + _decl(btf, t.type, inner, depth + 1)  # type: ignore[attr-defined]
    if k == KIND_TYPE_TAG:
        return _decl(btf, t.type, inner, depth + 1)  # type: ignore[attr-defined]
    if k == KIND_FUNC_PROTO:
        return _decl(btf, t.type, f"{inner}({_params(btf, t, depth)})", depth + 1)  # type: ignore
    if k == KIND_FUNC:
        return c_decl(btf, type_id, inner)
    if k == KIND_VAR:
        return c_decl(btf, type_id, inner)
    if k == KIND_DATASEC:
        return f'section ("{t.name}") {inner}'
    if isinstance(t, DeclTag):
        return f'__attribute__((btf_decl_tag("{t.name}"))) {inner}'
    if k == 0:
        return f"void {inner}"
    raise BtfError(f"type [{type_id}] ({t.kind}) has no C declaration")


# --- bpftool btf dump (raw) -------------------------------------------------------

_INT_ENC = {0: "(none)", INT_SIGNED: "SIGNED", INT_CHAR: "CHAR", INT_BOOL: "BOOL"}


def _q(name: str) -> str:
    return name if name else "(anon)"


def dump_raw(btf: Btf, ids: list[int] | None = None) -> str:
    """``bpftool btf dump file X`` (format raw), one type per line group."""
    lines = []
    for i in ids if ids is not None else range(btf.start_id, len(btf.types)):
        lines.append(raw_type(btf, i))
    return "\n".join(lines) + ("\n" if lines else "")


def raw_type(btf: Btf, i: int) -> str:
    t = btf.type(i)
    k = t.kind_id
    s = f"[{i}] {t.kind.upper()} '{_q(t.name)}'"
    if isinstance(t, Int):
        enc = _INT_ENC.get(t.encoding, "UNKN")
        s += f" size={t.size} bits_offset={t.offset} nr_bits={t.bits} encoding={enc}"
    elif k in (KIND_PTR, KIND_CONST, KIND_VOLATILE, KIND_RESTRICT, KIND_TYPEDEF, KIND_TYPE_TAG):
        s += f" type_id={t.type}"  # type: ignore[attr-defined]
    elif k == KIND_ARRAY:
        s += f" type_id={t.type} index_type_id={t.index_type} nr_elems={t.nelems}"  # type: ignore
    elif isinstance(t, Struct):
        s += f" size={t.size} vlen={len(t.members)}"
        for m in t.members:
            s += f"\n\t'{_q(m.name)}' type_id={m.type} bits_offset={m.offset}"
            if m.bitfield_size:
                s += f" bitfield_size={m.bitfield_size}"
    elif isinstance(t, Enum):
        enc = "SIGNED" if t.signed else "UNSIGNED"
        s += f" encoding={enc} size={t.size} vlen={len(t.values)}"
        suffix = ("LL" if t.signed else "ULL") if t.kind_id == KIND_ENUM64 else ""
        for v in t.values:
            s += f"\n\t'{_q(v.name)}' val={v.value}{suffix}"
    elif k == KIND_FWD:
        s += f" fwd_kind={'union' if t.union else 'struct'}"  # type: ignore[attr-defined]
    elif k == KIND_FUNC:
        lk = FUNC_LINKAGE[t.linkage] if t.linkage < 3 else "(unknown)"  # type: ignore
        s += f" type_id={t.type} linkage={lk}"  # type: ignore[attr-defined]
    elif isinstance(t, FuncProto):
        s += f" ret_type_id={t.type} vlen={len(t.params)}"
        for p in t.params:
            s += f"\n\t'{_q(p.name)}' type_id={p.type}"
    elif isinstance(t, Var):
        lk = VAR_LINKAGE[t.linkage] if t.linkage < 3 else "(unknown)"
        s += f" type_id={t.type}, linkage={lk}"
    elif isinstance(t, Datasec):
        s += f" size={t.size} vlen={len(t.vars)}"
        for v in t.vars:
            s += f"\n\ttype_id={v.type} offset={v.offset} size={v.size}"
            vt = btf.types[v.type]
            if vt.name:
                s += f" ({vt.kind.upper()} '{vt.name}')"
    elif k == KIND_FLOAT:
        s += f" size={t.size}"  # type: ignore[attr-defined]
    elif isinstance(t, DeclTag):
        s += f" type_id={t.type} component_idx={t.component_idx}"
    return s
