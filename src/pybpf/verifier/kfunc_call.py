"""Calls of kernel functions (``call`` with src_reg BPF_PSEUDO_KFUNC_CALL): ``check_kfunc_call``.

The call's ``imm`` names the kfunc (:attr:`pybpf.verifier.api.Target.kfuncs`
maps it to the :class:`~pybpf.verifier.kfunc_proto.KfuncProto` read from
BTF); its kernel facts come from :mod:`.kfuncs`.  Mirrors, of Linux 6.12's
verifier: ``check_kfunc_call`` (may the program call it, the arguments,
releasing, R0 by the return type, the iterator fork),
``check_kfunc_args`` with ``get_kfunc_ptr_arg_type`` (scalars, ``__k``
constants, context, iterators, BTF pointers, memory with or without a
``__sz`` size), ``process_kf_arg_ptr_to_btf_id`` (the struct a BTF
pointer points to, or its first member unless the match must be strict)
and the two casts ``bpf_cast_to_kern_ctx`` / ``bpf_rdonly_cast``.
Iterator arguments are :mod:`.iters`.

Dynptr, callback, graph (list, rbtree) and allocated-object arguments
are not implemented: such a call is refused with a sentence saying so.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pybpf.errors import PybpfError
from pybpf.uapi import ProgFlag
from pybpf.verifier import iters, memory
from pybpf.verifier.funcs import CTX_STRUCTS
from pybpf.verifier.kfunc_proto import (
    MEM,
    PTR,
    SCALAR,
    STRUCT,
    VOID,
    KArg,
    KfuncProto,
    first_member_chain,  # fmt: skip
    skip,
)
from pybpf.verifier.kfuncs import KF, Kfunc, kfunc
from pybpf.verifier.state import NOT_INIT, UNKNOWN, Reg, State
from pybpf.verifier.types import Base, Flag, btf_ref, type_str

if TYPE_CHECKING:
    from pybpf.verifier.check import Checker

MAX_SIZE = 1 << 29  # BPF_MAX_VAR_SIZ
SYSCALL = 31  # BPF_PROG_TYPE_SYSCALL: its context is plain memory

#: reg2btf_ids: the socket pointer types a BTF-pointer argument also takes
_SOCKETS = {Base.PTR_TO_SOCKET: "sock", Base.PTR_TO_SOCK_COMMON: "sock_common",
            Base.PTR_TO_TCP_SOCK: "tcp_sock", Base.PTR_TO_XDP_SOCK: "xdp_sock"}  # fmt: skip
#: BPF_REG_TRUSTED_MODIFIERS: the flags a trusted pointer may carry
_TRUSTED_MODIFIERS = Flag.MEM_ALLOC | Flag.PTR_TRUSTED
#: get_kern_ctx_btf_id: the kernel struct behind each program type's context (the kernel
#: types of include/linux/bpf_types.h; tracepoints' u64 and the void * types are no struct)
KERN_CTX = {
    1: "sk_buff", 3: "sk_buff", 4: "sk_buff", 6: "xdp_buff", 8: "sk_buff", 9: "sock",
    18: "bpf_sock_addr_kern", 13: "bpf_sock_ops_kern", 14: "sk_buff", 16: "sk_msg",
    2: "pt_regs", 7: "bpf_perf_event_data_kern", 15: "bpf_cgroup_dev_ctx",
    23: "bpf_sysctl_kern", 25: "bpf_sockopt_kern", 32: "bpf_nf_ctx", 30: "bpf_sk_lookup_kern",
    21: "sk_reuseport_kern", 22: "bpf_flow_dissector", 10: "sk_buff", 11: "sk_buff",
    12: "sk_buff", 19: "sk_buff",
}  # fmt: skip
CAST_TO_KERN_CTX, RDONLY_CAST = "bpf_cast_to_kern_ctx", "bpf_rdonly_cast"


def _reject(msg: str, err: int = errno.EINVAL):
    from pybpf.verifier.check import Reject

    return Reject(msg, err)


@dataclass
class Meta:
    """struct bpf_kfunc_call_arg_meta, the part pybpf uses."""

    proto: KfuncProto
    facts: Kfunc
    ref: int = 0  # the referenced argument's reference
    release_regno: int = 0
    constant: int | None = None  # the ``__k`` argument's value
    iter: tuple[int, int] | None = None  # the iterator's (frame, first slot)

    @property
    def flags(self) -> KF:
        return self.facts.flags

    def has(self, flag: KF) -> bool:
        return bool(self.facts.flags & flag)


def kfunc_call(env: Checker, st: State, pc: int, imm: int) -> int:
    """check_kfunc_call for the call at ``pc`` naming kfunc ``imm``; the next pc."""
    if st.lock:  # do_check, before the call is looked at (graph kfuncs are not modelled)
        raise _reject("function calls are not allowed while holding a lock")
    table = getattr(env.target, "kfuncs", None) or {}
    proto = table.get(imm)
    if proto is None:
        raise _reject(f"kernel btf_id {imm} is not a function")
    if not env.target.gpl:
        raise _reject("cannot call kernel function from non-GPL compatible program")
    facts = kfunc(proto.name)
    if facts is None:
        raise _reject(f"pybpf does not implement kfunc {proto.name} yet")
    if not facts.allowed(env.target.prog_type):
        raise _reject(f"calling kernel function {proto.name} is not allowed", errno.EACCES)
    if facts.flags & KF.SLEEPABLE and not env.target.prog_flags & ProgFlag.SLEEPABLE:
        raise _reject(f"program must be sleepable to call sleepable kfunc {proto.name}",
                      errno.EACCES)  # fmt: skip
    if facts.params:  # the kernel's names, where the object's declaration has none
        names = facts.params
        proto = replace(proto, args=tuple(
            replace(a, name=a.name or names[i]) if i < len(names) else a
            for i, a in enumerate(proto.args)))  # fmt: skip
    meta = Meta(proto, facts)
    _check_args(env, st, pc, meta)
    if meta.release_regno:
        from pybpf.verifier.calls import _release

        _release(st, st.regs[meta.release_regno])
    r0 = _ret_reg(env, st, pc, meta)
    regs = st.regs
    for r in range(1, 6):
        regs[r] = NOT_INIT
        env.scratched.discard(r)
    regs[0] = r0
    env.scratched.add(0)
    if meta.has(KF.ITER_NEXT) and meta.iter is not None:
        iters.process_iter_next_call(env, st, pc, *meta.iter)
    return pc + 1


# --- arguments -----------------------------------------------------------------------------------


def _is_trusted(reg: Reg) -> bool:
    """is_trusted_reg: referenced, a socket type, or trusted modifiers only."""
    if reg.ref:
        return True
    if reg.base in _SOCKETS and not reg.flags & ~_TRUSTED_MODIFIERS:
        return True
    return bool(reg.flags & _TRUSTED_MODIFIERS) and not reg.flags & ~_TRUSTED_MODIFIERS


def _kind_str(kind: str) -> str:
    return "UNKNOWN" if kind == "void" else kind.upper()


def _check_args(env: Checker, st: State, pc: int, meta: Meta) -> None:
    """check_kfunc_args."""
    proto = meta.proto
    args = proto.args
    trusted_args = meta.has(KF.TRUSTED_ARGS) or meta.has(KF.RELEASE)
    skip_next = False
    for i, arg in enumerate(args):
        regno = i + 1
        if skip_next:
            skip_next = False
            continue
        if arg.suffix("ign"):
            continue
        reg = env.read(regno)
        if arg.kind == SCALAR:
            if not reg.is_scalar:
                raise _reject(f"R{regno} is not a scalar")
            if arg.suffix("k"):
                if not reg.var.is_const():
                    raise _reject(f"R{regno} must be a known constant")
                meta.constant = reg.var.value
            continue
        if arg.kind != PTR:
            raise _reject(f"Unrecognized arg#{i} type {_kind_str(arg.btf_kind)}")
        null = reg.is_const(0) or reg.maybe_null
        if (trusted_args or meta.has(KF.RCU)) and null and not arg.suffix("nullable"):
            raise _reject(f"Possibly NULL pointer passed to trusted arg{i}", errno.EACCES)
        if reg.ref:
            meta.ref = reg.ref
            if meta.has(KF.RELEASE):
                meta.release_regno = regno
        kind = _ptr_arg_type(env, meta, arg, i, reg, args)
        if kind == "btf_id" and (trusted_args or meta.has(KF.RCU)) and not _is_trusted(reg):
            if not meta.has(KF.RCU):
                raise _reject(f"R{regno} must be referenced or trusted")
            if not reg.flags & Flag.MEM_RCU:
                raise _reject(f"R{regno} must be a rcu pointer")
        if kind == "ctx":
            if reg.base is Base.PTR_TO_CTX:
                _ptr_off(reg, regno, fixed_ok=False)
            if reg.base is not Base.PTR_TO_CTX or reg.flags:
                raise _reject(f"arg#{i} expected pointer to ctx, but got {reg.type_name()}")
        elif kind == "iter":
            new, destroy = meta.has(KF.ITER_NEW), meta.has(KF.ITER_DESTROY)
            rid = iters.process_iter_arg(env, st, regno, pc, arg.struct, arg.size or 0, new,
                                         destroy)  # fmt: skip
            if not new:
                meta.iter = iters.arg_slot(env, st, regno)
                meta.ref = rid
        elif kind == "btf_id":
            _btf_id_arg(meta, arg, i, regno, reg)
        elif kind == "mem":
            if arg.size is None:
                raise _reject(f"arg#{i} reference type('{_kind_str(arg.btf_kind)} "
                              f"{arg.struct}') size cannot be determined: -{errno.EINVAL}")
            _mem(env, st, regno, reg, arg.size, arg.size)
        elif kind == "mem_size":
            skip_next = True
            if not (reg.is_const(0) and arg.suffix("opt")):
                _mem_size(env, st, regno, reg, i)
    if meta.has(KF.RELEASE) and not meta.release_regno:
        raise _reject(f"release kernel function {proto.name} expects refcounted PTR_TO_BTF_ID")


def _ptr_arg_type(env: Checker, meta: Meta, arg: KArg, i: int, reg: Reg, args) -> str:
    """get_kfunc_ptr_arg_type, for the argument kinds pybpf implements."""
    name = meta.proto.name
    if name == CAST_TO_KERN_CTX:
        return "ctx"
    if arg.target == STRUCT and arg.struct == CTX_STRUCTS.get(env.target.prog_type):
        return "ctx"
    if arg.target == STRUCT and arg.struct == "bpf_dynptr":
        raise _reject(f"pybpf does not implement dynptr arguments of kfunc {name} yet")
    if i == 0 and meta.flags & (KF.ITER_NEW | KF.ITER_NEXT | KF.ITER_DESTROY) \
            and arg.target == STRUCT and arg.struct.startswith(iters.ITER_PREFIX):  # fmt: skip
        return "iter"
    if reg.base is Base.PTR_TO_BTF_ID or reg.base in _SOCKETS:
        if arg.target != STRUCT:
            raise _reject(f"kernel function {name} args#{i} pointer type "
                          f"{_kind_str(arg.btf_kind)} {arg.struct} is not supported")
        return "btf_id"
    sized = i + 1 < len(args) and args[i + 1].kind == SCALAR and (
        args[i + 1].suffix("sz") or args[i + 1].suffix("szk"))
    scalarish = arg.target == SCALAR or (arg.target == STRUCT and _scalar_struct(meta, arg))
    if not scalarish and (not sized or arg.target != VOID):
        raise _reject(f"arg#{i} pointer type {_kind_str(arg.btf_kind)} {arg.struct} must point "
                      f"to {'void, ' if sized else ''}scalar, or struct with scalar")
    return "mem_size" if sized else "mem"


def _scalar_struct(meta: Meta, arg: KArg) -> bool:
    """__btf_type_is_scalar_struct: a struct of scalars (and arrays of them), one level deep."""
    btf = meta.proto.btf
    try:
        t = skip(btf, btf.find(arg.struct, "struct"))
        for m in t.members:
            mt = skip(btf, m.type)
            while mt.kind == "array":
                mt = skip(btf, mt.type)
            if mt.kind not in ("int", "enum", "enum64"):
                return False
        return True
    except (PybpfError, LookupError, AttributeError, TypeError, ValueError):
        return False


def _btf_id_arg(meta: Meta, arg: KArg, i: int, regno: int, reg: Reg) -> None:
    """check_kfunc_args' KF_ARG_PTR_TO_BTF_ID and process_kf_arg_ptr_to_btf_id."""
    name = meta.proto.name
    unsafe = reg.flags & ~_TRUSTED_MODIFIERS and not reg.flags & Flag.MEM_RCU
    if (reg.base is not Base.PTR_TO_BTF_ID and reg.base not in _SOCKETS) or \
            (reg.base is Base.PTR_TO_BTF_ID and unsafe):  # fmt: skip
        expected = type_str(reg.base, reg.flags & _TRUSTED_MODIFIERS)
        raise _reject(f"arg#{i} is {reg.type_name()} expected {expected} or socket")
    strict = meta.has(KF.RELEASE) and bool(reg.ref)
    if strict and reg.off:  # check_func_arg_reg_off for OBJ_RELEASE
        raise _reject(f"R{regno} must have zero offset when passed to release func or trusted "
                      "arg to kfunc")  # fmt: skip
    _ptr_off(reg, regno, fixed_ok=not strict)
    have = _SOCKETS.get(reg.base) or getattr(reg.map, "name", "")
    if reg.off:  # pybpf matches a struct at offset 0 only (btf_struct_ids_match walks)
        have = f"{have} at offset {reg.off}"
    if have == arg.struct:
        return
    if not have:
        raise _reject(f"pybpf does not know the struct R{regno} points to, to pass it to "
                      f"kfunc {name}")  # fmt: skip
    if not strict and arg.struct in first_member_chain(meta.proto.btf, have):
        return
    raise _reject(f"kernel function {name} args#{i} expected pointer to STRUCT {arg.struct} "
                  f"but R{regno} has a pointer to STRUCT {have}")


def _ptr_off(reg: Reg, regno: int, fixed_ok: bool) -> None:
    """__check_ptr_off_reg: no negative or (unless ``fixed_ok``) fixed offset, no variable one."""
    name = reg.type_name()
    if reg.off < 0:
        raise _reject(f"negative offset {name} ptr R{regno} off={reg.off} disallowed",
                      errno.EACCES)  # fmt: skip
    if not fixed_ok and reg.off:
        raise _reject(f"dereference of modified {name} ptr R{regno} off={reg.off} disallowed",
                      errno.EACCES)  # fmt: skip
    if not reg.var.is_const() or reg.var.value:
        raise _reject(f"variable {name} access var_off={reg.var.var_off} disallowed",
                      errno.EACCES)  # fmt: skip


def _mem(env: Checker, st: State, regno: int, reg: Reg, lo: int, hi: int) -> None:
    """check_mem_reg: NULL passes; otherwise ``hi`` bytes readable and writable."""
    if reg.is_const(0):
        return
    if reg.base is Base.PTR_TO_CTX and env.target.prog_type != SYSCALL:
        # check_helper_mem_access sizes a context only where no access is rewritten
        raise _reject(f"R{regno} type={reg.type_name()} expected=fp", errno.EACCES)
    saved = st.regs[regno]
    if reg.maybe_null:
        st.regs[regno] = reg.but(flags=reg.flags & ~Flag.MAYBE_NULL)
    try:
        memory.helper_mem(env, regno, lo, hi, write=False, uninit_ok=False, zero_ok=True)
        memory.helper_mem(env, regno, lo, hi, write=True, uninit_ok=False, zero_ok=True)
    finally:
        st.regs[regno] = saved


def _mem_size(env: Checker, st: State, regno: int, reg: Reg, i: int) -> None:
    """check_kfunc_mem_size_reg for the memory at R<regno> and its size in the next register."""
    size = env.read(regno + 1)
    if not size.is_scalar:
        raise _reject(f"R{regno + 1} is not a scalar")
    v = size.var
    if v.smin < 0:
        raise _reject(f"R{regno + 1} min value is negative, either use unsigned or 'var &= "
                      "const'", errno.EACCES)  # fmt: skip
    if v.umax >= MAX_SIZE:
        raise _reject(f"R{regno + 1} unbounded memory access, use 'var &= const' or 'if (var "
                      "< const)'", errno.EACCES)  # fmt: skip
    try:
        _mem(env, st, regno, reg, v.umin, v.umax)
    except Exception as exc:
        from pybpf.verifier.check import Reject

        if isinstance(exc, Reject):
            exc.msg += f"\narg#{i} arg#{i + 1} memory, len pair leads to invalid memory access"
        raise


# --- R0 ------------------------------------------------------------------------------------------


def _ret_reg(env: Checker, st: State, pc: int, meta: Meta) -> Reg:
    proto, name = meta.proto, meta.proto.name
    if meta.has(KF.ACQUIRE) and proto.ret != STRUCT:
        raise _reject("acquire kernel function does not return PTR_TO_BTF_ID")
    if name == CAST_TO_KERN_CTX:
        kern = KERN_CTX.get(env.target.prog_type)
        if kern is None:
            raise _reject(f"pybpf does not implement bpf_cast_to_kern_ctx for program type "
                          f"{env.target.prog_type} (its kernel context is no struct)")
        return Reg(Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED, map=btf_ref(kern))
    if name == RDONLY_CAST:
        return Reg(Base.PTR_TO_BTF_ID, Flag.PTR_UNTRUSTED, map=btf_ref(_rdonly_type(env, meta)))
    if proto.ret == VOID:
        return NOT_INIT
    if proto.ret in (SCALAR, VOID + "*"):  # a kfunc returning void * returns a scalar
        return UNKNOWN
    flags = Flag.NONE
    if proto.ret == STRUCT:
        base, kw = Base.PTR_TO_BTF_ID, {"map": btf_ref(proto.ret_struct)}
        if meta.has(KF.ITER_NEXT):
            flags |= Flag.PTR_TRUSTED
    elif proto.ret == MEM and proto.ret_size:
        base, kw = Base.PTR_TO_MEM, {"size": proto.ret_size}
        flags |= Flag.MEM_RDONLY
    else:
        raise _reject(f"kernel function {name} returns pointer type that is not supported")
    if meta.has(KF.RET_NULL):
        flags |= Flag.MAYBE_NULL
        kw["id"] = env.new_id()
    if meta.has(KF.ACQUIRE):
        rid = env.new_id()
        st.refs.append((rid, pc))
        if meta.has(KF.RET_NULL):
            kw["id"] = rid
        kw["ref"] = rid
    return Reg(base, flags, **kw)


def _rdonly_type(env: Checker, meta: Meta) -> str:
    """bpf_rdonly_cast's second argument: the id of a struct in the kernel's BTF."""
    btf = getattr(env.target, "kernel_btf", None)
    if btf is None:
        raise _reject("pybpf cannot check bpf_rdonly_cast without the kernel's BTF")
    try:
        t = btf.type(meta.constant or 0)
    except (PybpfError, LookupError, ValueError):
        t = None
    if t is None or t.kind not in ("struct", "union"):
        raise _reject("bpf_rdonly_cast type ID argument must be of a struct")
    return t.name



# --- iterator loops ------------------------------------------------------------------------------

CALL = 0x85


def iter_next_pcs(insns, target) -> set[int]:
    """The pcs of calls to an ``iter_next`` kfunc (check_cfg forces a checkpoint there)."""
    table = getattr(target, "kfuncs", None) or {}
    out = set()
    for pc, insn in insns.items():
        if insn.code != CALL or insn.src_reg != 2:
            continue
        proto = table.get(insn.imm)
        facts = kfunc(proto.name) if proto is not None else None
        if facts is not None and facts.flags & KF.ITER_NEXT:
            out.add(pc)
    return out


def iter_active(st: State) -> bool:
    """The iterator R1 points to (at an ``iter_next`` call) is active."""
    s = iters.iter_state(st, 1)
    return s is not None and s.rng == iters.ACTIVE
