"""Calls to global functions, and their verification on their own (Linux 6.18).

A call to a subprogram that BTF gives global linkage (``subprog_is_global``)
does not walk the callee: ``check_func_call`` checks the caller's R1-R5
against the argument types of :class:`~pybpf.verifier.funcs.FuncDesc`
(``btf_check_subprog_call``, ``btf_check_func_arg_match``), refuses the call
while a spin lock is held, invalidates packet pointers when the callee may
change packet data, marks the callee called, clobbers R0-R5 and leaves an
unknown scalar in R0.  The log says "Func#N ('name') is global and assumed
valid.".  After the main program, each called global function is verified
once from a state built from the same types (``do_check_common``):
:func:`global_entry_state`.

Functions take the :class:`~pybpf.verifier.check.Checker` (``env``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.isa import Instruction, Kind
from pybpf.verifier import funcs, memory
from pybpf.verifier.decode import spec_of
from pybpf.verifier.funcs import FuncDesc
from pybpf.verifier.state import (
    FP,
    NOT_INIT,
    UNKNOWN,
    Frame,
    Reg,
    State,
    format_frame_line,
)
from pybpf.verifier.types import Base, Flag, btf_ref

if TYPE_CHECKING:
    from pybpf.verifier.check import Checker

#: program types whose context has no convert_ctx_access: a context passed as memory is
#: checked by reading (and writing) its last byte (check_helper_mem_access)
_NO_CTX_CONVERT = frozenset({2, 5, 17, 20, 24, 26, 27, 29, 31, 32})
_BTF_PTR_OK = (Flag.NONE, Flag.PTR_TRUSTED, Flag.MEM_RCU)


def _reject(msg: str, err: int = errno.EACCES):
    from pybpf.verifier.check import Reject

    return Reject(msg, err)


# --- the call ------------------------------------------------------------------------------------


def global_call(env: Checker, st: State, pc: int, insn: Instruction, index: int,
                desc: FuncDesc) -> int:  # fmt: skip
    """check_func_call for a global function: arguments by BTF type, the callee not walked."""
    bad = check_args(env, st, desc)
    lines = [] if bad is None else [bad[0]]
    if st.lock:
        lines.append("global function calls are not allowed while holding a lock,\n"
                     "use static function instead")  # fmt: skip
        raise _reject("\n".join(lines), errno.EINVAL)
    if bad is not None:
        lines.append(f"Caller passes invalid args into func#{index} ('{desc.name}')")
        raise _reject("\n".join(lines), bad[1])
    if index in changes_pkt_data(env):
        from pybpf.verifier.calls import _clear_pkt_pointers

        _clear_pkt_pointers(st)
    env.called.add(index)
    regs = st.regs
    for r in range(1, 6):
        regs[r] = NOT_INIT
    regs[0] = UNKNOWN
    if env.log:
        env.log.insn(pc, insn)
        env.log.add(f"Func#{index} ('{desc.name}') is global and assumed valid.")
        env.log.add(f"{pc + 1}: {format_frame_line(st.cur, (0,))}")
        env.logged = True
    env.scratched = {0}
    return pc + 1


def check_args(env: Checker, st: State, desc: FuncDesc) -> tuple[str, int] | None:
    """btf_check_func_arg_match: None, or the first mismatch (log line, errno)."""
    refused = desc.refusal()
    if refused is not None:
        return refused
    regs = st.regs
    for i, arg in enumerate(desc.args):
        regno = i + 1
        reg = regs[regno]
        kind = arg.kind
        if kind == funcs.SCALAR:
            if not reg.is_scalar:
                return f"R{regno} is not a scalar", errno.EINVAL
        elif kind == funcs.CTX:
            off = _reg_off(reg, regno)
            if off is not None:
                return off, errno.EACCES
            if reg.base is not Base.PTR_TO_CTX:
                return f"arg#{i} expects pointer to ctx", errno.EINVAL
        elif kind == funcs.MEM:
            off = _reg_off(reg, regno)
            if off is not None:
                return off, errno.EACCES
            bad = _check_mem_reg(env, st, regno, arg.size)
            if bad is not None:
                return bad, errno.EINVAL
            if not arg.nullable and reg.maybe_null:
                return f"arg#{i} is expected to be non-NULL", errno.EINVAL
        elif kind == funcs.ARENA:
            if not reg.is_scalar:
                return f"R{regno} is not a pointer to arena or scalar.", errno.EINVAL
        elif kind == funcs.TRUSTED:
            if arg.nullable and reg.is_const(0):
                continue
            flags = reg.flags & ~Flag.MAYBE_NULL if arg.nullable else reg.flags
            if reg.base is not Base.PTR_TO_BTF_ID or flags not in _BTF_PTR_OK:
                return (f"R{regno} type={reg.type_name()} expected=ptr_, trusted_ptr_, rcu_ptr_",
                        errno.EACCES)  # fmt: skip
            if flags == Flag.NONE and not reg.ref:
                return f"R{regno} must be referenced or trusted", errno.EINVAL
        else:  # struct bpf_dynptr *: pybpf tracks no dynptr on the stack
            return (f"pybpf verifier does not support {kind} arguments of global functions "
                    f"yet (arg#{i} of {desc.name}())", errno.EINVAL)  # fmt: skip
    return None


def _reg_off(reg: Reg, regno: int) -> str | None:
    """check_func_arg_reg_off(ARG_DONTCARE): most pointers must be unmodified."""
    bad = memory.func_arg_off_error(reg, regno)
    return None if bad is None else bad[0]


def _check_mem_reg(env: Checker, st: State, regno: int, size: int) -> str | None:
    """check_mem_reg: NULL passes; otherwise ``size`` bytes may be read, then written
    (a maybe-NULL pointer is checked as if it were not NULL)."""
    from pybpf.verifier.check import Reject

    reg = st.regs[regno]
    if reg.is_const(0):
        return None
    if reg.maybe_null:
        st.regs[regno] = reg.but(flags=reg.flags & ~Flag.MAYBE_NULL)
    try:
        for write in (False, True):
            _helper_mem(env, regno, size, write)
    except Reject as exc:
        return exc.msg
    finally:
        st.regs[regno] = reg
    return None


def _helper_mem(env: Checker, regno: int, size: int, write: bool) -> None:
    """check_helper_mem_access with a zero size allowed, as a global call checks memory."""
    reg = env.state.regs[regno]
    if reg.base is Base.PTR_TO_CTX:
        if int(env.target.prog_type) not in _NO_CTX_CONVERT:
            raise _reject(f"R{regno} type={reg.type_name()} expected=fp")
        if size:  # the context's own access rules, on its last byte
            memory._ctx(env, regno, reg, size - 1, 1, write, None, False, False)
        return
    memory.helper_mem(env, regno, size, size, write=write, uninit_ok=True, zero_ok=True)


# --- the callee on its own -----------------------------------------------------------------------


def global_entry_state(env: Checker, index: int, desc: FuncDesc) -> State:
    """do_check_common's first state for global subprogram ``index``: R1-R5 by BTF type."""
    regs = [NOT_INIT] * 11
    for i, arg in enumerate(desc.args):
        kind = arg.kind
        if kind == funcs.CTX:
            regs[i + 1] = Reg(Base.PTR_TO_CTX)
        elif kind in (funcs.SCALAR, funcs.ARENA):
            regs[i + 1] = UNKNOWN
        elif kind == funcs.MEM:
            flags = Flag.MAYBE_NULL if arg.nullable else Flag.NONE
            regs[i + 1] = Reg(Base.PTR_TO_MEM, flags, size=arg.size,
                              id=env.new_id() if arg.nullable else 0)  # fmt: skip
        elif kind == funcs.TRUSTED:
            flags = Flag.PTR_TRUSTED | (Flag.MAYBE_NULL if arg.nullable else Flag.NONE)
            regs[i + 1] = Reg(Base.PTR_TO_BTF_ID, flags, id=env.new_id(),
                              map=btf_ref(arg.struct) if arg.struct else None)
    regs[FP] = Reg(Base.PTR_TO_STACK, frame=0)
    return State([Frame(regs, {}, 0, -1, index)])


def changes_pkt_data(env: Checker) -> frozenset[int]:
    """The subprograms that may change packet data: a helper that does (tail calls
    included), in them or in a subprogram they call (check_cfg's merge_callee_effects)."""
    if env._pkt_changers is not None:
        return env._pkt_changers
    subs = env.structure.subprogs
    starts = {s.start: i for i, s in enumerate(subs)}
    direct: set[int] = set()
    edges: dict[int, set[int]] = {}
    for i, sub in enumerate(subs):
        for pc in range(sub.start, sub.end):
            insn = env.insns.get(pc)
            spec = spec_of(insn) if insn is not None else None
            if spec is None:
                continue
            if spec.kind is Kind.CALL:
                proto = env.target.helpers.get(insn.imm)
                if proto is not None and proto.changes_pkt_data:
                    direct.add(i)
            elif spec.kind is Kind.CALL_LOCAL:
                callee = starts.get(pc + insn.imm + 1)
                if callee is not None:
                    edges.setdefault(i, set()).add(callee)
    changers = set(direct)
    grew = True
    while grew:
        grew = False
        for caller, callees in edges.items():
            if caller not in changers and callees & changers:
                changers.add(caller)
                grew = True
    env._pkt_changers = frozenset(changers)
    return env._pkt_changers

