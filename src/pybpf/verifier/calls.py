"""Calls and exits: helpers (``check_helper_call``, ``check_func_arg``), bpf-to-bpf
calls (``check_func_call``), callbacks (bpf_loop, for_each_map_elem,
user_ringbuf_drain), ``exit``
(``prepare_func_exit``, ``check_reference_leak``, ``check_return_code``),
LD_ABS/LD_IND, and the static register liveness the pruning uses.

Functions take the :class:`~pybpf.verifier.check.Checker` (``env``) and the
current state; they return the next pc, or None when the path ends.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pybpf.isa import Instruction, Kind
from pybpf.isa.helper_ids import helper_id, helper_ids, helper_name
from pybpf.verifier import ctx as ctxrules
from pybpf.verifier import mapcompat, memory, precise
from pybpf.verifier.cfg import MAX_FRAMES, Structure
from pybpf.verifier.decode import spec_of
from pybpf.verifier.global_calls import global_call
from pybpf.verifier.helper_protos import mark_unchecked
from pybpf.verifier.kfunc_proto import first_member_chain
from pybpf.verifier.protos import (
    FOR_EACH_MAPS,
    Arg,
    ArgFlag,
    ArgType,
    HelperProto,
    Ret,
    accepts,
    expected_text,
    map_write_error,
)
from pybpf.verifier.scalar import Scalar
from pybpf.verifier.state import (
    FP,
    NOT_INIT,
    PKT_TYPES,
    UNKNOWN,
    Frame,
    Reg,
    State,
    const,
    format_frame_line,
    format_reg,
)
from pybpf.verifier.types import Base, Flag, btf_ref

if TYPE_CHECKING:
    from pybpf.verifier.check import Checker

ENOTSUPP = memory.ENOTSUPP
MAX_SIZE = 1 << 29  # BPF_MAX_VAR_SIZ
RINGBUF = 27
TAIL_CALL = 12
SPIN_LOCK, SPIN_UNLOCK = 93, 94
GET_LOCAL_STORAGE = 81
LOOKUP = 1
PEEK = helper_id("map_peek_elem")
_RDONLY_PROG = 1 << 7  # BPF_F_RDONLY_PROG
def _reject(msg: str, err: int = errno.EACCES):
    from pybpf.verifier.check import Reject

    return Reject(msg, err)


def _fname(func_id: int) -> str:
    name = helper_name(func_id)
    return f"bpf_{name}" if name else "unknown"


# --- helpers -------------------------------------------------------------------------------------


def helper_call(env: Checker, st: State, pc: int, insn: Instruction) -> int | None:
    """check_helper_call: arguments by prototype, R0 by return type, R1-R5 clobbered."""
    func_id = insn.imm
    proto = env.target.helpers.get(func_id)
    if proto is None:
        if helper_name(func_id) is None:
            raise _reject(f"invalid func unknown#{func_id}", errno.EINVAL)
        raise _reject(f"program of this type cannot use helper {_fname(func_id)}#{func_id}",
                      errno.EINVAL)  # fmt: skip
    if proto.gpl_only and not env.target.gpl:
        raise _reject("cannot call GPL-restricted function from non-GPL compatible program",
                      errno.EINVAL)  # fmt: skip
    regs = st.regs
    meta_map = None
    env.const_map_key = None  # meta->const_map_key
    if st.lock and func_id != SPIN_UNLOCK:
        raise _reject("function calls are not allowed while holding a lock")
    for i, arg in enumerate(proto.args):
        regno = i + 1
        if arg.base is Arg.DONTCARE:
            continue
        reg = env.read(regno)
        found = _check_arg(env, st, proto, i, arg, reg, meta_map)
        if found is not None:
            meta_map = found
    _record_func_map(func_id, meta_map)
    if meta_map is not None:  # record_func_map: one map per call site, else poisoned
        seen = env.aux_map.setdefault(pc, meta_map)
        if seen is not meta_map:
            env.aux_map[pc] = None
    if func_id == TAIL_CALL:
        key = regs[3]  # record_func_key: a known in-range index is relied upon
        if (meta_map is not None and key.is_scalar and key.var.is_const()
                and key.var.value < meta_map.max_entries):
            precise.mark(env, st, (3,))
        _resource_leak(st, "tail_call")
    if func_id == GET_LOCAL_STORAGE and not regs[2].is_const(0):  # it cannot return an error
        raise _reject("get_local_storage() doesn't support non-zero flags", errno.EINVAL)
    callback = proto.callback
    if callback is not None:
        if func_id == LOOP:
            _loop_inline_state(env, st, pc, callback)
        _callback_call(env, st, pc, func_id, callback)
    release = proto.release_arg
    if release is not None:
        _release(st, regs[release + 1])
    # R0 and the clobbered argument registers
    ret = proto.ret
    r0 = _ret_reg(env, st, pc, proto, ret, meta_map)
    if meta_map is not None:
        _check_map_func(env, func_id, meta_map)
    for r in range(1, 6):
        regs[r] = NOT_INIT
        env.scratched.discard(r)
    if proto.changes_pkt_data:
        _clear_pkt_pointers(st)
    regs[0] = r0
    env.scratched.add(0)
    return pc + 1


def _check_arg(env: Checker, st: State, proto, i: int, arg, reg: Reg, meta_map):
    regno = i + 1
    base = arg.base
    if base is Arg.ANYTHING:
        return None
    if reg.base in PKT_TYPES and not ctxrules.direct_packet_access(
            env.target.prog_type, False, helper_pkt_access=proto.pkt_access):  # fmt: skip
        raise _reject("helper access to the packet is not allowed")
    if base is Arg.PTR_TO_MAP_VALUE:
        arg = _resolve_map_arg(env, proto, arg, meta_map)
        base = arg.base
    if arg.has(ArgFlag.MAYBE_NULL) and reg.is_const(0):
        return None
    if base.is_size or base is Arg.CONST_ALLOC_SIZE_OR_ZERO:
        if not reg.is_scalar:
            raise _reject(f"R{regno} type={reg.type_name()} expected=scalar")
        if base is Arg.CONST_ALLOC_SIZE_OR_ZERO:
            if not reg.var.is_const():
                raise _reject(f"R{regno} is not a known constant'")
            precise.mark(env, st, (regno,))
            return None
        v = reg.var
        zero_ok = base is Arg.CONST_SIZE_OR_ZERO
        if v.smin < 0:
            raise _reject(f"R{regno} min value is negative, either use unsigned or 'var &= const'")
        if v.umin == 0 and not zero_ok:
            raise _reject(f"R{regno} invalid zero-sized read: u64=[{v.umin},{v.umax}]")
        if v.umax >= MAX_SIZE:
            raise _reject(f"R{regno} unbounded memory access, use 'var &= const' or "
                          f"'if (var < const)'")  # fmt: skip
        mem_arg = proto.args[i - 1]
        memory.helper_mem(env, regno - 1, v.umin, v.umax,
                          write=mem_arg.has(ArgFlag.MEM_WRITE) or mem_arg.is_raw_mem,
                          uninit_ok=mem_arg.is_raw_mem, zero_ok=zero_ok)  # fmt: skip
        precise.mark(env, st, (regno,))  # check_mem_size_reg: the size is relied upon
        return None
    if not accepts(arg, reg.base, reg.flags):
        raise _reject(f"R{regno} type={reg.type_name()} expected={expected_text(arg)}")
    if base is Arg.PTR_TO_BTF_ID:  # check_reg_type's struct match comes before the offset's
        _btf_arg(env, proto, i, regno, reg, dict(proto.arg_btf).get(i, ""))
    elif base is Arg.PTR_TO_BTF_ID_SOCK_COMMON and reg.base is Base.PTR_TO_BTF_ID:
        _btf_arg(env, proto, i, regno, reg, "sock_common")  # btf_sock_ids[SOCK_COMMON]
    bad = memory.func_arg_off_error(reg, regno, arg.is_release)
    if bad is not None:
        raise _reject(*bad)
    if arg.is_release and not reg.ref:
        raise _reject(f"R{regno} must be referenced when passed to release function",
                      errno.EINVAL)  # fmt: skip
    if base is Arg.CONST_MAP_PTR:
        return reg.map
    if base in (Arg.PTR_TO_MAP_KEY, Arg.PTR_TO_MAP_VALUE):
        if meta_map is None:
            which = "key" if base is Arg.PTR_TO_MAP_KEY else "value"
            raise _reject(f"invalid map_ptr to access map->{which}")
        size = meta_map.key_size if base is Arg.PTR_TO_MAP_KEY else meta_map.value_size
        memory.helper_mem(env, regno, size, size, write=arg.has(ArgFlag.MEM_UNINIT),
                          uninit_ok=False, zero_ok=False)  # fmt: skip
        if base is Arg.PTR_TO_MAP_KEY and getattr(meta_map, "map_type", 0) in _ARRAYS:
            env.const_map_key = _constant_map_key(env, st, reg, meta_map)
        return None
    if base is Arg.PTR_TO_MEM:
        if arg.has(ArgFlag.MEM_FIXED_SIZE):
            memory.helper_mem(env, regno, arg.size, arg.size, write=arg.has(ArgFlag.MEM_WRITE),
                              uninit_ok=arg.is_raw_mem, zero_ok=False)  # fmt: skip
            if arg.has(ArgFlag.MEM_ALIGNED):
                memory.check_alignment(env, reg, 0, arg.size, True)
        return None
    if base in (Arg.PTR_TO_RINGBUF_MEM, Arg.PTR_TO_CTX):
        return None
    if base is Arg.PTR_TO_FUNC:
        return None
    if base is Arg.PTR_TO_BTF_ID:
        return None
    if base is Arg.PTR_TO_CONST_STR:
        m = reg.map
        if not (getattr(m, "frozen", False) and getattr(m, "map_flags", 0) & _RDONLY_PROG):
            raise _reject(f"R{regno} does not point to a readonly map'")
        if not reg.var.is_const():
            raise _reject(f"R{regno} is not a constant address'")
        return None
    if base is Arg.PTR_TO_STACK:
        memory.helper_mem(env, regno, 0, 0, write=False, uninit_ok=True, zero_ok=True)
        return None
    if base is Arg.PTR_TO_SPIN_LOCK:
        _spin_lock(env, st, regno, reg, env.insn.imm == SPIN_LOCK)
    return None


def _resolve_map_arg(env: Checker, proto, arg: ArgType, m) -> ArgType:
    """resolve_map_arg_type: a sockmap's or sockhash's value is a socket (the value
    argument becomes ARG_PTR_TO_BTF_ID_SOCK_COMMON); a bloom filter's peek reads it."""
    if m is None:
        raise _reject("invalid map_ptr to access map->type")
    map_type = int(getattr(m, "map_type", 0))
    if map_type in (mapcompat.SOCKMAP, mapcompat.SOCKHASH):
        if arg != ArgType(Arg.PTR_TO_MAP_VALUE):
            raise _reject("invalid arg_type for sockmap/sockhash", errno.EINVAL)
        return mark_unchecked(proto, env.insn.imm, ArgType(Arg.PTR_TO_BTF_ID_SOCK_COMMON))
    if map_type == mapcompat.BLOOM_FILTER and env.insn.imm == PEEK:
        return ArgType(Arg.PTR_TO_MAP_VALUE)
    return arg


def _btf_arg(env: Checker, proto, i: int, regno: int, reg: Reg, want: str) -> None:
    """check_reg_type's BTF part for a BTF pointer: the register points to the struct
    ``want`` (``argN_btf_id``), or to one whose first member is it; then
    check_func_arg_reg_off (a fixed offset, no variable one)."""
    have = getattr(reg.map, "name", "")
    if not want or not have:
        what = f"the struct R{regno} points to" if want else f"the struct arg{i + 1} takes"
        raise _reject(f"pybpf does not know {what}, to pass it to helper {proto.name}",
                      errno.EINVAL)  # fmt: skip
    strict = proto.release_arg == i and proto.name != "bpf_sk_release"
    match = have == want and not reg.off
    if not match and not strict and not reg.off:
        match = want in first_member_chain(getattr(env.target, "kernel_btf", None), have)
    if not match:
        raise _reject(f"R{regno} is of type {have} but {want} is expected")
    if reg.off < 0:
        raise _reject(f"negative offset {reg.type_name()} ptr R{regno} off={reg.off} disallowed")
    if not reg.var.is_const() or reg.var.value:
        raise _reject(f"variable {reg.type_name()} access var_off={reg.var.var_off} disallowed")


def _spin_lock(env: Checker, st: State, regno: int, reg: Reg, lock: bool) -> None:
    """process_spin_lock: the lock is the map value's ``struct bpf_spin_lock``, taken once,
    released by the same pointer (map and value id) that took it."""
    m = reg.map
    if not reg.var.is_const():
        raise _reject(f"R{regno} doesn't have constant offset. bpf_spin_lock has to be at the "
                      "constant offset", errno.EINVAL)  # fmt: skip
    lock_off = getattr(m, "spin_lock_off", None)
    if getattr(m, "btf", None) is None:
        raise _reject(f"map '{getattr(m, 'name', '')}' has to have BTF in order to use "
                      f"{_fname(env.insn.imm)}", errno.EINVAL)  # fmt: skip
    if lock_off is None:
        raise _reject(f"map '{getattr(m, 'name', '')}' has no valid bpf_spin_lock", errno.EINVAL)
    off = reg.var.value + reg.off
    if off != lock_off:
        raise _reject(f"off {off} doesn't point to 'struct bpf_spin_lock' that is at {lock_off}",
                      errno.EINVAL)  # fmt: skip
    held = (getattr(m, "id", 0), reg.id)
    if lock:
        if st.lock:
            raise _reject("Locking two bpf_spin_locks are not allowed", errno.EINVAL)
        st.lock = held
    elif not st.lock:
        raise _reject("bpf_spin_unlock without taking a lock", errno.EINVAL)
    elif st.lock != held:
        raise _reject("bpf_spin_unlock of different lock", errno.EINVAL)
    else:
        st.lock = 0


#: record_func_map: the helpers whose map the verifier records (and must have)
RECORDED_MAP_FUNCS = helper_ids("tail_call map_lookup_elem map_update_elem map_delete_elem "
                                "map_push_elem map_pop_elem map_peek_elem for_each_map_elem "
                                "redirect_map map_lookup_percpu_elem")  # fmt: skip


def _record_func_map(func_id: int, m) -> None:
    """record_func_map and record_func_key, once every argument is checked: the map is
    known, a map programs may only read is not changed, a tail call's is a prog array."""
    if func_id not in RECORDED_MAP_FUNCS:
        return
    if m is None:
        raise _reject("kernel subsystem misconfigured verifier", errno.EINVAL)
    map_type = int(getattr(m, "map_type", 0))
    forbidden = map_write_error(func_id, map_type, int(getattr(m, "map_flags", 0)))
    if forbidden is not None:
        raise _reject(forbidden)
    if func_id == TAIL_CALL and map_type != mapcompat.PROG_ARRAY:
        raise _reject("expected prog array map for tail call", errno.EINVAL)


def _check_map_func(env: Checker, func_id: int, m) -> None:
    """check_map_func_compatibility (the table is :mod:`.mapcompat`'s), the call's last
    check."""
    found = mapcompat.refusal(func_id, m, int(env.target.prog_type),
                              int(env.target.attach_type))  # fmt: skip
    if found:
        raise _reject(*found)


def _ret_reg(env: Checker, st: State, pc: int, proto, ret: Ret, meta_map) -> Reg:
    if ret is Ret.INTEGER:
        return _refined_retval(env.insn.imm, st, proto)
    if ret is Ret.VOID:
        return NOT_INIT
    rt = ret.reg_type
    if rt is None:
        return UNKNOWN
    base, flags = rt
    regs = st.regs
    kw: dict = {}
    if base is Base.PTR_TO_MAP_VALUE:
        if meta_map is None:
            raise _reject("kernel subsystem misconfigured verifier", errno.EINVAL)
        kw["map"] = meta_map
        inner = getattr(getattr(meta_map, "attr", None), "inner_map", None)
        if inner is not None:  # a map of maps holds maps: the value is the inner map
            base, kw["map"] = Base.CONST_PTR_TO_MAP, inner
        elif flags & Flag.MAYBE_NULL and _const_key_in_bounds(env, st, proto, meta_map):
            flags &= ~Flag.MAYBE_NULL
        if not flags & Flag.MAYBE_NULL and getattr(meta_map, "spin_lock_off", None) is not None:
            kw["id"] = env.new_id()  # the value's identity names its lock
    if base is Base.PTR_TO_BTF_ID and proto.ret_btf:  # ret_btf_id: the struct R0 points to
        kw["map"] = btf_ref(proto.ret_btf)
    size_arg = proto.ret_size_arg
    if size_arg is not None:
        kw["size"] = regs[size_arg + 1].var.value
    if flags & Flag.MAYBE_NULL:
        kw["id"] = env.new_id()
    if proto.acquire or (env.insn.imm == LOOKUP and _sock_map(meta_map)):
        rid = env.new_id()  # is_acquire_function: a sockmap's lookup gives a referenced socket
        kw["id"] = rid
        kw["ref"] = rid
        st.refs.append((rid, pc))
    elif proto.ptr_cast:  # is_ptr_cast_function: the result is the argument's socket
        kw["ref"] = regs[1].ref
    return Reg(base, flags, **kw)


#: helpers whose integer result is at most the size they were given, or an error
#: (do_refine_retval_range)
SIZED_RESULT = helper_ids("get_stack get_task_stack probe_read_str probe_read_kernel_str "
                          "probe_read_user_str")  # fmt: skip
MAX_ERRNO = 4095


def _refined_retval(func_id: int, st: State, proto) -> Reg:
    """do_refine_retval_range: R0 of a helper that fills a buffer is in [-MAX_ERRNO, the
    largest size its size argument allowed] (the last size argument checked)."""
    if func_id not in SIZED_RESULT:
        return UNKNOWN
    sizes = [i for i, a in enumerate(proto.args) if a.base.is_size]
    if not sizes:
        return UNKNOWN
    msize = st.regs[sizes[-1] + 1].var.umax
    return Reg(Base.SCALAR, var=Scalar.from_signed(-MAX_ERRNO, msize))


_ARRAYS = (2, 6)  # BPF_MAP_TYPE_ARRAY, PERCPU_ARRAY


def _sock_map(m) -> bool:
    return int(getattr(m, "map_type", 0)) in (mapcompat.SOCKMAP, mapcompat.SOCKHASH)


def _const_key_in_bounds(env: Checker, st: State, proto, m) -> bool:
    """can_elide_value_nullness: an array lookup with a constant, in-range key (as the
    argument check found it, :func:`_constant_map_key`) is never NULL."""
    if getattr(m, "map_type", 0) not in _ARRAYS or env.insn.imm != LOOKUP:
        return False
    return env.const_map_key is not None and env.const_map_key < m.max_entries


def _constant_map_key(env: Checker, st: State, key: Reg, m) -> int | None:
    """get_constant_map_key: an array map's key known from the stack (key bytes tracked
    as zero, or a scalar spill of exactly the key's size), or None.  A spilled key's
    value is relied upon: it becomes precise."""
    if key.base is not Base.PTR_TO_STACK or not key.var.is_const():
        return None
    addr = key.off + key.var.signed_value
    if not -512 <= addr < 0:
        return None
    slot = st.frames[key.frame].slot((-addr - 1) // 8)
    j = (-addr - 1) % 8
    head = slot.types[: j + 1][::-1]  # from the key's first byte down the slot
    zeros = len(head) - len(head.lstrip("0"))
    if zeros >= m.key_size:
        return 0
    if slot.spilled is None or slot.types[7] != "r" or not slot.spilled.is_scalar:
        return None
    spills = len(head) - len(head.lstrip("r"))
    if spills != m.key_size or not slot.spilled.var.is_const():
        return None
    precise.mark(env, st, locs=((key.frame, "s", (-addr - 1) // 8),))
    return slot.spilled.var.value


def _release(st: State, reg: Reg) -> None:
    rid = reg.ref
    if not any(i == rid for i, _ in st.refs):
        raise _reject("R1 must be referenced when passed to release function")
    st.refs[:] = [(i, a) for i, a in st.refs if i != rid]
    for f in st.frames:
        for n, r in enumerate(f.regs):
            if r.ref == rid:
                f.regs[n] = UNKNOWN
        for spi, s in list(f.stack.items()):
            if s.spilled is not None and s.spilled.ref == rid:
                f.stack[spi] = type(s)("m" * 8, None)


def _clear_pkt_pointers(st: State) -> None:
    for f in st.frames:
        for n, r in enumerate(f.regs):
            if r.base in PKT_TYPES or r.base is Base.PTR_TO_PACKET_END:
                f.regs[n] = UNKNOWN
        for spi, s in list(f.stack.items()):
            if s.spilled is not None and (s.spilled.base in PKT_TYPES
                                          or s.spilled.base is Base.PTR_TO_PACKET_END):
                f.stack[spi] = type(s)(s.types, UNKNOWN)


def _resource_leak(st: State, prefix: str) -> None:
    if st.lock:
        raise _reject(f"{prefix} cannot be used inside bpf_spin_lock-ed region", errno.EINVAL)
    if st.refs:
        lines = [f"Unreleased reference id={i} alloc_insn={a}" for i, a in st.refs]
        lines.append(f"{prefix} would lead to reference leak")
        raise _reject("\n".join(lines), errno.EINVAL)


# --- callbacks ---------------------------------------------------------------------------------


LOOP = 181  # bpf_loop
FOR_EACH_MAP_ELEM = 164


def _loop_inline_state(env: Checker, st: State, pc: int, cb) -> None:
    """update_loop_inline_state: a bpf_loop call is inlined when every path calls the
    same callback with flags (R4) known to be zero."""
    func = st.regs[cb.func_arg + 1]
    start = func.sub if func.base is Base.PTR_TO_FUNC else -1
    fit = st.regs[4].is_const(0) and start >= 0
    prev = env.aux_loop.get(pc)
    if prev is not None:
        fit = fit and prev[1] and prev[0] == start
        start = prev[0]
    env.aux_loop[pc] = (start, fit)


def _callback_call(env: Checker, st: State, pc: int, func_id: int, cb) -> None:
    """check_helper_call's callback part: when the callback is explored.

    bpf_loop queues another visit of its callback only while this frame has
    queued fewer than the maximum of R1 (nr_loops) on this path; other
    callback-calling helpers always queue one.  The walk returns to the
    call after each visit, so the visits repeat until the callsite's state
    is covered by an explored one.
    """
    caller = st.cur
    if func_id == LOOP and caller.callback_depth >= st.regs[1].var.umax:
        caller.callback_depth = 0
        if env.log.level >= 2:
            env.log.add(f"frame{len(st.frames) - 1} bpf_loop iteration limit reached")
        func = st.regs[cb.func_arg + 1]
        if func.base is Base.PTR_TO_FUNC:  # a callback never walked stays in the image
            _keep_subprog(env, func.sub)
        return
    _push_callback(env, st, pc, func_id, cb)


def _push_callback(env: Checker, st: State, pc: int, func_id: int, cb) -> None:
    """push_callback_call: queue the callback as a new frame of a copy of the state.

    The callee's R1-R5 are set per ``cb.params`` (set_loop_callback_state,
    map_set_for_each_callback_args); its R0 must be a scalar within
    ``cb.ret_range`` at exit (:func:`exit_insn`).  The current path goes on
    after the call as if the helper never called it.
    """
    func = st.regs[cb.func_arg + 1]
    if func.base is not Base.PTR_TO_FUNC:
        return
    if len(st.frames) >= MAX_FRAMES:
        raise _reject(f"the call stack of {len(st.frames) + 1} frames is too deep !", errno.E2BIG)
    if func_id == FOR_EACH_MAP_ELEM and int(getattr(st.regs[1].map, "map_type", 0)) not in \
            FOR_EACH_MAPS:
        raise _reject("callback function not allowed for map", ENOTSUPP)
    callee = st.copy()
    caller = st.regs
    regs = [NOT_INIT] * 11
    for i, p in enumerate(cb.params):
        if p is None:
            continue
        if p == "ctx":
            regs[i + 1] = caller[cb.ctx_arg + 1]
        else:
            base, flags = p
            if base is Base.SCALAR:
                regs[i + 1] = UNKNOWN
            elif base is Base.CONST_PTR_TO_MAP:
                regs[i + 1] = caller[1]
            else:  # the key and the value of the map in R1
                regs[i + 1] = Reg(base, flags, map=caller[1].map)
    fno = len(st.frames)
    regs[FP] = Reg(Base.PTR_TO_STACK, frame=fno)
    callee.frames[-1].callback_depth += 1
    callee.frames.append(Frame(regs, {}, fno, pc, _subprog_index(env, func.sub), 0, cb))
    callee.callback_depth += 1
    st.cur.callback_depth = 0
    env.push(callee, func.sub, pc)


def _keep_subprog(env: Checker, start: int) -> None:
    sub = env.structure.subprogs[_subprog_index(env, start)]
    if sub.start not in env.seen:
        env.seen.update(pc for pc in env.structure.pcs if sub.start <= pc < sub.end)


def calls_callback(env: Checker, pc: int) -> bool:
    insn = env.insns.get(pc)
    if insn is None or insn.code != 0x85 or insn.src_reg != 0:
        return False
    proto = env.target.helpers.get(insn.imm)
    return proto is not None and proto.callback is not None


def _subprog_index(env: Checker, start: int) -> int:
    for i, s in enumerate(env.structure.subprogs):
        if s.start == start:
            return i
    return 0


# --- bpf-to-bpf calls -------------------------------------------------------------------------


def subprog_call(env: Checker, st: State, pc: int, insn: Instruction) -> int:
    """check_func_call: a global subprogram's arguments are checked against its BTF
    types (:func:`global_call`); a static one gets a new frame with R1-R5 passed."""
    target = pc + insn.imm + 1
    index = _subprog_index(env, target)
    desc = env.func_desc(index) if index else None  # the main program is never called
    if desc is not None and desc.is_global:
        return global_call(env, st, pc, insn, index, desc)
    if len(st.frames) >= MAX_FRAMES:
        raise _reject(f"the call stack of {len(st.frames) + 1} frames is too deep !", errno.E2BIG)
    caller = st.regs
    regs = [NOT_INIT] * 11
    for r in range(1, 6):
        regs[r] = caller[r]
    fno = len(st.frames)
    regs[FP] = Reg(Base.PTR_TO_STACK, frame=fno)
    for r in range(0, 6):
        caller[r] = NOT_INIT
    st.frames.append(Frame(regs, {}, fno, pc, _subprog_index(env, target)))
    env.scratched.clear()
    if env.log:
        env.log.insn(pc, insn)
        env.log.add("caller:")
        env.log.add(" " + format_frame_line(st.frames[-2]))
        env.log.add("callee:")
        env.log.add(" " + format_frame_line(st.frames[-1]))
        env.log.add(f"{target}: {format_frame_line(st.frames[-1])}")
        env.logged = True
    return target


def exit_insn(env: Checker, st: State, pc: int, hidden: bool = False) -> int | None:
    """BPF_EXIT: return to the caller, re-enter a callback's caller, or end the program.

    ``hidden``: the exit LD_ABS/LD_IND takes in a subprogram on failure (prepare_func_exit
    called from check_ld_abs: the log goes on at the caller without "from X to Y")."""
    regs = st.regs
    if len(st.frames) > 1:
        r0 = st.regs[0]
        if r0.base is Base.PTR_TO_STACK:  # any frame's: the kernel is conservative
            raise _reject("cannot return stack pointer to the caller", errno.EINVAL)
        env.depths_from(st)
        if st.cur.callback is not None and r0.is_scalar:
            precise.mark(env, st, (0,))  # the callback's return value is relied upon
        callee = st.frames.pop()
        if callee.callback is not None:
            cb = callee.callback
            if not r0.is_scalar:
                raise _reject("R0 not a scalar value", errno.EACCES)
            lo, hi = cb.ret_range
            if r0.var.smin < lo or r0.var.smax > hi:
                raise _reject(_invalid_scalar(r0, (lo, hi), "At callback return", "R0"),
                              errno.EINVAL)  # fmt: skip
            st.callback_depth -= 1
            return callee.callsite  # the helper runs the callback again
        st.regs[0] = r0
        env.scratched.clear()
        if env.log:
            env.log.insn(pc, env.insn)
            env.log.add("returning from callee:")
            env.log.add(" " + format_frame_line(callee))
            env.log.add(f"to caller at {callee.callsite + 1}:")
            env.log.add(" " + format_frame_line(st.cur))
            if hidden:
                env.log.add(f"{callee.callsite + 1}: {format_frame_line(st.cur)}")
            else:
                env.log.add("")
                env.log.add(f"from {pc} to {callee.callsite + 1}: {format_frame_line(st.cur)}")
            env.logged = True
        return callee.callsite + 1
    _resource_leak(st, "BPF_EXIT instruction in main prog")
    r0 = env.read(0)
    if st.frames[0].subprog:  # a global function verified on its own returns a scalar
        if not r0.is_scalar:
            raise _reject(f"At subprogram exit the register R0 is not a scalar value "
                          f"({r0.type_name()})", errno.EINVAL)  # fmt: skip
        return None
    rng = ctxrules.return_range(env.target.prog_type, env.target.attach_type)
    if rng is None:
        return None
    if not r0.is_scalar:
        raise _reject(f"At program exit the register R0 is not a known value "
                      f"({r0.type_name()})", errno.EINVAL)  # fmt: skip
    precise.mark(env, st, (0,))  # check_return_code: the return value is relied upon
    if r0.var.smin < rng[0] or r0.var.smax > rng[1]:
        raise _reject(_invalid_scalar(r0, rng, "At program exit", "R0"), errno.EINVAL)
    del regs
    return None


def _invalid_scalar(r: Reg, rng: tuple[int, int], where: str, name: str) -> str:
    text = f"{where} the register {name} has"
    parts = []
    if r.var.smin > -(1 << 63):
        parts.append(f" smin={r.var.smin}")
    if r.var.smax < (1 << 63) - 1:
        parts.append(f" smax={r.var.smax}")
    text += "".join(parts) or " unknown scalar value"
    return f"{text} should have been in [{rng[0]}, {rng[1]}]"


# --- LD_ABS / LD_IND --------------------------------------------------------------------------


def ld_abs(env: Checker, insn: Instruction, spec, pc: int) -> int | None:
    """check_ld_abs: R6 must be the context; R1-R5 are clobbered, R0 unknown.

    In the kernel's order: the program type, the reserved fields, R6
    initialised, no reference or lock held, R6 the context, then LD_IND's
    source register.  Returns the next pc: in a subprogram a failed load
    returns 0 to the caller (the hidden exit bpf_gen_ld_abs emits), and that
    path is walked first, the load's success queued after it.
    """
    st = env.state
    if int(env.target.prog_type) not in (1, 3, 4):  # may_access_skb
        raise _reject("BPF_LD_[ABS|IND] instructions not allowed for this program type",
                      errno.EINVAL)  # fmt: skip
    env.late_fault()
    r6 = env.read(6)
    if st.refs or st.lock:
        _resource_leak(st, "BPF_LD_[ABS|IND]")
    if r6.base is not Base.PTR_TO_CTX:
        raise _reject("at the time of BPF_LD_ABS|IND R6 != pointer to skb", errno.EINVAL)
    if spec.kind is Kind.LD_IND:
        env.read(insn.src_reg)
    for r in range(1, 6):
        st.regs[r] = NOT_INIT
    st.regs[0] = UNKNOWN
    if len(st.frames) == 1:
        return pc + insn.slots
    env.push(st.copy(), pc + insn.slots, pc)
    st.regs[0] = const(0)
    precise.note(st, ("X",))  # an exit the backtracking cannot follow
    return exit_insn(env, st, pc, hidden=True)


# --- static liveness ------------------------------------------------------------------------------


_REGS = frozenset(range(11))


def _uses_defs(insn: Instruction) -> tuple[set[int], set[int]]:
    """What ``insn`` reads and writes of r0-r10, by its opcode (a malformed
    field is refused when the walk reaches it; a register above r10 is none)."""
    uses, defs = _uses_defs_of(insn)
    return uses & _REGS, defs & _REGS


def _uses_defs_of(insn: Instruction) -> tuple[set[int], set[int]]:
    spec = spec_of(insn)
    if spec is None:
        return set(range(11)), set()
    k, d, s = spec.kind, insn.dst_reg, insn.src_reg
    x = "src_reg" in spec.uses
    if k in (Kind.ALU, Kind.NEG, Kind.END, Kind.MOVSX):
        uses = {s} if x else set()
        if spec.op != 0xB0 or k is not Kind.ALU:
            uses.add(d)
        if k is Kind.MOVSX:
            uses = {s}
        return uses, {d}
    if k is Kind.LDDW:
        return set(), {d}
    if k in (Kind.LDX, Kind.LDXSX, Kind.LOAD_ACQ):
        return {s}, {d}
    if k is Kind.ST:
        return {d}, set()
    if k in (Kind.STX, Kind.STORE_REL):
        return {d, s}, set()
    if k is Kind.ATOMIC:
        return {d, s, 0}, {s, 0}
    if k in (Kind.LD_ABS, Kind.LD_IND):
        return {6, s} if k is Kind.LD_IND else {6}, {0, 1, 2, 3, 4, 5}
    if k is Kind.JUMP:
        return ({d, s} if x else {d}), set()
    if k in (Kind.CALL, Kind.CALL_LOCAL, Kind.KFUNC, Kind.CALLX):
        return {1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}
    if k is Kind.EXIT:
        return {0}, set()
    return set(), set()


def liveness(s: Structure, helpers: Mapping[int, HelperProto] | None = None,
             ) -> dict[int, tuple[int, ...]]:  # fmt: skip
    """Registers possibly read before written from each pc on, within its function.

    With ``helpers``, a helper call reads only the argument registers its
    prototype names, as the kernel's compute_live_registers counts them (the
    table the level-2 log prints); without, every call reads r1-r5.
    """
    info = {pc: _uses_defs(i) for pc, i in zip(s.pcs, s.insns, strict=False)}
    if helpers is not None:
        for pc, insn in zip(s.pcs, s.insns, strict=False):
            spec = spec_of(insn)
            if (spec is not None and spec.kind is Kind.CALL and not insn.src_reg
                    and insn.imm in helpers):  # a helper call, not a kfunc's or a subprogram's
                info[pc] = (set(range(1, helpers[insn.imm].nargs + 1)), info[pc][1])
    succ: dict[int, tuple[int, ...]] = {}
    for pc, insn in zip(s.pcs, s.insns, strict=False):
        spec = spec_of(insn)
        nxt = pc + insn.slots
        if spec is None or spec.kind is Kind.EXIT:
            succ[pc] = ()
        elif spec.kind is Kind.JA:
            succ[pc] = (pc + 1 + (insn.imm if spec.width == 32 else insn.off),)
        elif spec.kind in (Kind.JUMP, Kind.JCOND):
            succ[pc] = (nxt, pc + 1 + insn.off)
        else:
            succ[pc] = (nxt,)
    live: dict[int, frozenset[int]] = {pc: frozenset() for pc in s.pcs}
    order = list(reversed(s.pcs))
    changed = True
    while changed:
        changed = False
        for pc in order:
            out: set[int] = set()
            for n in succ[pc]:
                out |= live.get(n, frozenset())
            uses, defs = info[pc]
            new = frozenset(uses | (out - defs))
            if new != live[pc]:
                live[pc] = new
                changed = True
    return {pc: tuple(sorted(v | {FP})) for pc, v in live.items()}


_ = (format_reg, Flag)
