"""A kfunc's prototype as the verifier reads it from BTF (``fetch_kfunc_meta``'s part).

The kernel reads the prototype of the function an ``imm`` names from
vmlinux BTF.  pybpf reads the object's own ``extern ... __ksym``
declaration, which libbpf matches against that BTF, so the types are the
kernel's as the program was compiled against them; parameter names carry
the kernel's suffix conventions (``__k`` a constant, ``__sz`` the size of
the memory argument before it, ``__ign`` not checked, ``__nullable``,
``__uninit``).  :func:`describe` turns the BTF ``FUNC`` into a
:class:`KfuncProto`; it takes any object with pybpf's BTF interface
(``type(id)``, ``find(name, kind)``), so the verifier stays free of the
BTF package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import PybpfError

_MODIFIERS = frozenset({"typedef", "volatile", "const", "restrict", "type_tag"})
_SCALARS = frozenset({"int", "enum", "enum64"})

SCALAR, PTR, OTHER = "scalar", "ptr", "other"  # KArg.kind
STRUCT, MEM, VOID = "struct", "mem", "void"  # what a pointer points to (and R0's kinds)


@dataclass(frozen=True)
class KArg:
    """One parameter: its name, kind and, for a pointer, what it points to."""

    name: str
    kind: str  # SCALAR, PTR or OTHER (with ``btf_kind`` its BTF kind)
    target: str = ""  # PTR: STRUCT, SCALAR, VOID or OTHER
    struct: str = ""  # PTR to STRUCT: the struct's name
    size: int | None = None  # PTR: the pointee's size (btf_resolve_size), None: unsized
    btf_kind: str = ""  # the BTF kind of the parameter (PTR: of the pointee), for messages

    def suffix(self, tag: str) -> bool:
        """``__<tag>`` ends the parameter's name (is_kfunc_arg_* by name suffix)."""
        return self.name.endswith(f"__{tag}")


@dataclass(frozen=True)
class KfuncProto:
    """A kfunc's BTF prototype: parameters, and R0: VOID, SCALAR, STRUCT or MEM (sized)."""

    name: str
    args: tuple[KArg, ...]
    ret: str
    ret_struct: str = ""
    ret_size: int = 0
    btf: Any = field(default=None, compare=False, repr=False)  # struct layouts, by name


def skip(btf: Any, tid: int, *, keep_typedef: bool = False) -> Any:
    """btf_type_skip_modifiers: typedefs and qualifiers resolved (id 0 is void);
    ``keep_typedef`` stops at a typedef (the name btf_type_is_* checks look at)."""
    t = btf.type(tid)
    for _ in range(64):
        if t.kind not in _MODIFIERS or (keep_typedef and t.kind == "typedef"):
            return t
        t = btf.type(t.type)
    return t


def size_of(btf: Any, tid: int) -> int | None:
    """btf_resolve_size: the bytes of a type, None when it has none (void, fwd, func)."""
    t = skip(btf, tid)
    if t.kind in ("int", "struct", "union", "enum", "enum64", "float", "datasec"):
        return t.size
    if t.kind == "ptr":
        return 8
    if t.kind == "array":
        elem = size_of(btf, t.type)
        return None if elem is None else elem * t.nelems
    return None


def _pointee(btf: Any, tid: int) -> tuple[str, str, int | None, str]:
    t = skip(btf, tid)
    if t.kind in ("struct", "union"):
        return STRUCT, t.name, t.size, t.kind
    if t.kind in _SCALARS or t.kind == "float":
        return SCALAR, t.name, t.size, t.kind
    if t.kind == "void":
        return VOID, "", None, "void"
    return OTHER, getattr(t, "name", ""), size_of(btf, tid), t.kind


def describe(btf: Any, func_id: int) -> KfuncProto | None:
    """The prototype of BTF function ``func_id`` (None when it names no function)."""
    try:
        fn = btf.type(func_id)
        proto = btf.type(fn.type) if fn.kind == "func" else None
        if proto is None or proto.kind != "func_proto":
            return None
        args = []
        for p in proto.params:
            t = skip(btf, p.type)
            if t.kind in _SCALARS:
                args.append(KArg(p.name, SCALAR, btf_kind=t.kind))
            elif t.kind == "ptr":
                target, struct, size, kind = _pointee(btf, t.type)
                args.append(KArg(p.name, PTR, target, struct if target == STRUCT else "", size,
                                 kind))  # fmt: skip
            else:
                args.append(KArg(p.name, OTHER, btf_kind=t.kind))
        r = skip(btf, proto.type)
        if r.kind == "void":
            return KfuncProto(fn.name, tuple(args), VOID, btf=btf)
        if r.kind in _SCALARS:
            return KfuncProto(fn.name, tuple(args), SCALAR, btf=btf)
        if r.kind == "ptr":
            target, struct, size, _ = _pointee(btf, r.type)
            if target == STRUCT:
                return KfuncProto(fn.name, tuple(args), STRUCT, struct, btf=btf)
            if target == VOID:
                return KfuncProto(fn.name, tuple(args), VOID + "*", btf=btf)
            return KfuncProto(fn.name, tuple(args), MEM, ret_size=size or 0, btf=btf)
        return KfuncProto(fn.name, tuple(args), OTHER, btf=btf)
    except (PybpfError, LookupError, AttributeError, ValueError):
        return None


def first_member_chain(btf: Any, struct: str) -> list[str]:
    """The struct names reached by taking member 0 at offset 0 again and again
    (btf_struct_ids_match without strict matching: a pointer to a struct is
    also a pointer to its first member)."""
    out: list[str] = []
    if btf is None:
        return out
    try:
        tid = btf.find(struct, "struct")
        while tid is not None and len(out) < 32:
            t = skip(btf, tid)
            members = getattr(t, "members", ())
            if not members or members[0].offset != 0:
                break
            m = skip(btf, members[0].type)
            if m.kind not in ("struct", "union") or not m.name:
                break
            out.append(m.name)
            tid = members[0].type
    except (PybpfError, LookupError, AttributeError, ValueError):
        pass
    return out
