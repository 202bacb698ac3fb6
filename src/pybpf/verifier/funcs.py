"""What BTF says of a program's functions: ``btf_prepare_func_args`` of Linux 6.18.

A function that BTF gives global linkage (``BTF_FUNC_GLOBAL``: a non-static
``__noinline`` or ``__weak`` C function) is verified on its own, once, with
its arguments typed from BTF; a call to it checks the caller's registers
against those types and does not walk the callee (:mod:`.calls`).  A static
function is walked inline in its caller's context, as without BTF.

:class:`FuncDesc` is one ``func_info`` record's function: its name, whether
it is global, and per argument a :class:`FuncArg`, the kernel's
``bpf_subprog_arg_info``: ``scalar`` (an int or enum: any scalar),
``ctx`` (a pointer to the program type's context struct, or tagged
``__arg_ctx``: PTR_TO_CTX), ``mem`` (a pointer to a sized type: PTR_TO_MEM
of that size, NULL allowed unless tagged ``__arg_nonnull``), ``trusted``
(``__arg_trusted``: a trusted BTF pointer, NULL allowed when tagged
``__arg_nullable``), ``arena`` (``__arg_arena``: a scalar for pybpf),
``dynptr`` (``struct bpf_dynptr *``), or ``unsupported`` with the kernel's
reason (the function then cannot be called: "Caller passes invalid args").
A refusal of the whole function (too many arguments, a return type that is
not a scalar) is :attr:`FuncDesc.error`.

:func:`describe` computes them from an object's BTF (``decl_tag``\\ s
``arg:ctx``, ``arg:nonnull``, ``arg:nullable``, ``arg:trusted``,
``arg:arena`` on the function, ``component_idx`` the argument); the loader
calls it per program, the verifier reads the result from
:attr:`pybpf.verifier.api.Target.funcs`.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pybpf.errors import PybpfError
from pybpf.verifier.kfunc_proto import size_of, skip

SCALAR = "scalar"
CTX = "ctx"
MEM = "mem"
TRUSTED = "trusted"
ARENA = "arena"
DYNPTR = "dynptr"
UNSUPPORTED = "unsupported"

MAX_ARGS = 5  # MAX_BPF_FUNC_REG_ARGS
EOPNOTSUPP = errno.EOPNOTSUPP


@dataclass(frozen=True)
class FuncArg:
    """One argument of a global function as the verifier types it (see the module)."""

    kind: str
    size: int = 0  # mem: the bytes the callee may read and write
    nullable: bool = False  # mem, trusted: the caller may pass NULL (an "_or_null" type)
    reason: str = ""  # unsupported: the kernel's log line
    errno: int = errno.EINVAL  # unsupported: the kernel's errno
    struct: str = ""  # trusted: the kernel struct pointed to


@dataclass(frozen=True)
class FuncDesc:
    """One BTF-described function: name, linkage and argument types (see the module)."""

    name: str
    is_global: bool = False
    args: tuple[FuncArg, ...] = ()
    error: str = ""  # btf_prepare_func_args' refusal of the whole function
    errno: int = errno.EINVAL

    def refusal(self) -> tuple[str, int] | None:
        """The kernel's reason (log line, errno) for not preparing the arguments, if any."""
        if self.error:
            return self.error, self.errno
        for arg in self.args:
            if arg.kind == UNSUPPORTED:
                return arg.reason, arg.errno
        return None


# --- program context types (include/linux/bpf_types.h) -------------------------------------------

#: the struct a program type's context is (typedefs resolved), None when it is no struct
CTX_STRUCTS: Mapping[int, str | None] = {
    1: "__sk_buff", 2: "pt_regs", 3: "__sk_buff", 4: "__sk_buff", 5: None, 6: "xdp_md",
    7: "bpf_perf_event_data", 8: "__sk_buff", 9: "bpf_sock", 10: "__sk_buff", 11: "__sk_buff",
    12: "__sk_buff", 13: "bpf_sock_ops", 14: "__sk_buff", 15: "bpf_cgroup_dev_ctx",
    16: "sk_msg_md", 17: "bpf_raw_tracepoint_args", 18: "bpf_sock_addr", 19: "__sk_buff",
    20: None, 21: "sk_reuseport_md", 22: "__sk_buff", 23: "bpf_sysctl",
    24: "bpf_raw_tracepoint_args", 25: "bpf_sockopt", 26: None, 27: None, 28: None, 29: None,
    30: "bpf_sk_lookup", 31: None, 32: "bpf_nf_ctx",
}  # fmt: skip
_KPROBE, _TRACEPOINT, _PERF_EVENT, _RAW_TP, _RAW_TP_W = 2, 5, 7, 17, 24
_TRACING, _STRUCT_OPS, _EXT, _LSM, _SYSCALL = 26, 27, 28, 29, 31
_TRACE_RAW_TP, _TRACE_FENTRY, _TRACE_FEXIT, _MODIFY_RETURN, _TRACE_ITER = 23, 24, 25, 26, 28
#: btf_is_projection_of: the UAPI context struct and the kernel struct it stands for
_PROJECTIONS = {("__sk_buff", "sk_buff"), ("xdp_md", "xdp_buff")}
_KIND_STR = {"void": "UNKNOWN", "unkn": "UNKNOWN"}


def _kind_str(t: Any) -> str:
    """btf_type_str: the kind in capitals (``STRUCT``, ``FWD``; void is ``UNKNOWN``)."""
    return _KIND_STR.get(t.kind, t.kind.upper())


def _is_struct(t: Any) -> bool:
    return t.kind in ("struct", "union")


def is_prog_ctx_type(btf: Any, ptr: Any, prog_type: int) -> bool:
    """btf_is_prog_ctx_type: ``ptr`` points to the program type's context struct."""
    if prog_type == _KPROBE:
        t = skip(btf, ptr.type, keep_typedef=True)
        if t.kind == "typedef" and t.name == "bpf_user_pt_regs_t":
            return True
    t = skip(btf, ptr.type)
    if not _is_struct(t) or not t.name:
        return False
    want = CTX_STRUCTS.get(prog_type)
    return bool(want) and (t.name == want or (want, t.name) in _PROJECTIONS)


def validate_ctx_arg(btf: Any, ptr: Any, arg: int, prog_type: int,
                     attach_type: int) -> str | None:  # fmt: skip
    """btf_validate_prog_ctx_type for an ``__arg_ctx`` argument: None, or the log line."""
    if prog_type in (_KPROBE, _PERF_EVENT):
        t = skip(btf, ptr.type, keep_typedef=True)
        if t.kind == "typedef" and t.name == "bpf_user_pt_regs_t":
            return None
    t = skip(btf, ptr.type)
    if t.kind == "void":
        return None
    if not t.name:
        return f"arg#{arg} type doesn't have a name"
    struct, u64 = t.kind == "struct", t.kind == "int" and t.size == 8
    if prog_type in (_KPROBE, _PERF_EVENT) and struct and t.name == "pt_regs":
        return None
    if prog_type in (_RAW_TP, _RAW_TP_W, _LSM, _STRUCT_OPS) and u64:
        return None
    if prog_type == _TRACING:
        if attach_type == _TRACE_RAW_TP and (u64 or (struct and t.name ==
                                                     "bpf_raw_tracepoint_args")):
            return None
        if attach_type == _TRACE_ITER and struct and t.name.startswith("bpf_iter__"):
            return None
        if attach_type in (_TRACE_FENTRY, _TRACE_FEXIT, _MODIFY_RETURN) and u64:
            return None
    if prog_type in (_TRACEPOINT, _SYSCALL, _EXT):
        return None  # anything goes
    want = CTX_STRUCTS.get(prog_type)
    if not want:
        return f"arg#{arg} should be void pointer"
    if not struct or t.name != want:
        return f"arg#{arg} should be `struct {want} *`"
    return None


def _is_dynptr(btf: Any, ptr: Any) -> bool:
    t = skip(btf, ptr.type)
    return t.kind in ("struct", "fwd") and not getattr(t, "union", False) and \
        t.name == "bpf_dynptr"  # fmt: skip


def arg_tags(btf: Any) -> dict[tuple[int, int], list[str]]:
    """The ``arg:`` decl tags of ``btf``: (function type id, argument index) -> tag values."""
    out: dict[tuple[int, int], list[str]] = {}
    for t in btf:
        if t.kind == "decl_tag" and t.component_idx >= 0 and t.name.startswith("arg:"):
            out.setdefault((t.type, t.component_idx), []).append(t.name[4:])
    return out


_TAGS = ("ctx", "trusted", "nonnull", "nullable", "arena")


Tags = Mapping[tuple[int, int], Sequence[str]]


def describe(btf: Any, func_id: int, prog_type: int, attach_type: int = 0,
             tags: Tags | None = None) -> FuncDesc | None:  # fmt: skip
    """btf_prepare_func_args for the BTF function ``func_id`` of a program of ``prog_type``.

    None when ``func_id`` names no function (a bad record is refused elsewhere).
    ``tags`` is :func:`arg_tags` of ``btf`` (computed when not given).
    """
    try:
        fn = btf.type(func_id)
        proto = btf.type(fn.type) if fn.kind == "func" else None
    except (PybpfError, LookupError, AttributeError, ValueError):
        return None
    if proto is None or proto.kind != "func_proto":
        return None
    is_global = fn.linkage == 1
    name = fn.name
    nargs = len(proto.params)
    if nargs > MAX_ARGS:
        return FuncDesc(name, is_global, error=f"Global function {name}() with {nargs} > "
                        f"{MAX_ARGS} args. Buggy compiler.")  # fmt: skip
    ret = skip(btf, proto.type)
    if ret.kind not in ("int", "enum", "enum64"):
        return FuncDesc(name, is_global, error=f"Global function {name}() doesn't return "
                        "scalar. Only those are supported.")  # fmt: skip
    if tags is None:
        tags = arg_tags(btf)
    args: list[FuncArg] = []
    for i, param in enumerate(proto.params):
        arg = _describe_arg(btf, name, is_global, i, param.type, tags.get((func_id, i), ()),
                            prog_type, attach_type)  # fmt: skip
        args.append(arg)
        if arg.kind == UNSUPPORTED:
            break
    return FuncDesc(name, is_global, tuple(args))


def _bad(reason: str, err: int = errno.EINVAL) -> FuncArg:
    return FuncArg(UNSUPPORTED, reason=reason, errno=err)


def _describe_arg(btf: Any, name: str, is_global: bool, i: int, type_id: int,
                  tag_names: Iterable[str], prog_type: int,
                  attach_type: int) -> FuncArg:  # fmt: skip
    tags: set[str] = set()
    for tag in tag_names:
        if not is_global:
            return _bad(f"arg#{i} type tag is not supported in static functions", EOPNOTSUPP)
        if tag not in _TAGS:
            return _bad(f"arg#{i} has unsupported set of tags", EOPNOTSUPP)
        tags.add(tag)
    t = skip(btf, type_id)
    if t.kind == "ptr":
        if "ctx" in tags or is_prog_ctx_type(btf, t, prog_type):
            if tags - {"ctx"}:
                return _bad(f"arg#{i} has invalid combination of tags")
            if "ctx" in tags:
                reason = validate_ctx_arg(btf, t, i, prog_type, attach_type)
                if reason is not None:
                    return _bad(reason)
            return FuncArg(CTX)
        if _is_dynptr(btf, t):
            if tags:
                return _bad(f"arg#{i} has invalid combination of tags")
            return FuncArg(DYNPTR)
        if "trusted" in tags:
            if "nonnull" in tags:
                return _bad(f"arg#{i} has invalid combination of tags")
            target = skip(btf, t.type)
            struct = target.name.split("___")[0] if _is_struct(target) else ""  # no CO-RE flavor
            return FuncArg(TRUSTED, nullable="nullable" in tags, struct=struct)
        if "arena" in tags:
            if tags - {"arena"}:
                return _bad(f"arg#{i} arena cannot be combined with any other tags")
            return FuncArg(ARENA)
        if is_global:
            if "nullable" in tags:
                return _bad(f"arg#{i} has invalid combination of tags")
            size = size_of(btf, t.type)
            if size is None:
                ref = skip(btf, t.type)
                return _bad(f"arg#{i} reference type('{_kind_str(ref)} {ref.name}') size cannot "
                            f"be determined: -{errno.EINVAL}")  # fmt: skip
            return FuncArg(MEM, size=size, nullable="nonnull" not in tags)
    if tags:
        return _bad(f"arg#{i} has pointer tag, but is not a pointer type")
    if t.kind in ("int", "enum", "enum64"):
        return FuncArg(SCALAR)
    return _bad(f"Arg#{i} type {_kind_str(t)} in {name}() is not supported yet.")
