"""Memory accesses: ``check_mem_access`` and the per-type checkers of Linux 6.18.

Each function takes the :class:`~pybpf.verifier.check.Checker` (``env``)
and raises :class:`~pybpf.verifier.check.Reject` with the kernel's message
when the access is refused.  Loads return the loaded register; stores
update the state in place.  Pointers: ``reg.off`` is the fixed offset,
``reg.var`` the variable part (a Scalar).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.errors import PybpfError
from pybpf.uapi import ProgFlag
from pybpf.verifier import btf_access, mapcompat, precise
from pybpf.verifier import ctx as ctxrules
from pybpf.verifier.scalar import S64_MIN
from pybpf.verifier.state import (
    INVALID,
    ITER,
    MISC,
    PKT_TYPES,
    SPILL,
    STACK_SIZE,
    UNKNOWN,
    ZERO,
    Frame,
    Reg,
    Slot,
    assign_scalar_id_before_mov,
    const,
)
from pybpf.verifier.tnum import U64, Tnum
from pybpf.verifier.types import Base, Flag, btf_ref

if TYPE_CHECKING:
    from pybpf.verifier.check import Checker

MAX_VAR_OFF = 1 << 29  # BPF_MAX_VAR_OFF
ENOTSUPP = 524  # the kernel's internal "operation not supported"
MAX_PACKET_OFF = 0xFFFF


def reject(msg: str, err: int = errno.EACCES):
    from pybpf.verifier.check import Reject

    return Reject(msg, err)


# --- bounds of a [off, off+size) window in an object of mem_size bytes ---------------------------


_SIZE_NAME = {"map value": "value_size", "map key": "key_size"}  # __check_mem_access


def check_region(regno: int, reg: Reg, off: int, size: int, mem_size: int, what: str,
                 zero_ok: bool = False) -> None:  # fmt: skip
    """check_mem_region_access: fixed ``off`` plus the register's variable offset."""
    v = reg.var
    name = _SIZE_NAME.get(what, "mem_size")
    if v.smin < 0 and (v.smin == S64_MIN or off + v.smin != _s32(off + v.smin)
                       or v.smin + off < 0):
        raise reject(f"R{regno} min value is negative, either use unsigned index or do a "
                     f"if (index >=0) check.")  # fmt: skip
    if not _in(v.smin + off, size, mem_size, zero_ok):
        raise reject(f"invalid access to {what}, {name}={mem_size} off={v.smin + off} "
                     f"size={size}\nR{regno} min value is outside of the allowed memory range")
    if v.umax >= MAX_VAR_OFF:
        raise reject(f"R{regno} unbounded memory access, make sure to bounds check any such "
                     f"access")  # fmt: skip
    if not _in(v.umax + off, size, mem_size, zero_ok):
        raise reject(f"invalid access to {what}, {name}={mem_size} off={v.umax + off} "
                     f"size={size}\nR{regno} max value is outside of the allowed memory range")


def _in(off: int, size: int, mem_size: int, zero_ok: bool) -> bool:
    return off >= 0 and (size > 0 or zero_ok) and off + size <= mem_size


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# --- a pointer passed or dereferenced as it was made --------------------------------------------


def ptr_off_error(reg: Reg, regno: int, fixed_off_ok: bool = False) -> str | None:
    """__check_ptr_off_reg: a pointer that must be unmodified (a context, a socket...)
    may have no negative offset, no fixed offset (unless ``fixed_off_ok``) and no
    variable one; the refusal's text (EACCES), or None."""
    name = reg.type_name()
    if reg.off < 0:
        return f"negative offset {name} ptr R{regno} off={reg.off} disallowed"
    if reg.off and not fixed_off_ok:
        return f"dereference of modified {name} ptr R{regno} off={reg.off} disallowed"
    if not reg.var.is_const() or reg.var.value:
        return f"variable {name} access var_off={reg.var.var_off} disallowed"
    return None


#: check_func_arg_reg_off: the register types (exactly) that may carry any offset
_ANY_OFF_TYPES = frozenset({
    (Base.SCALAR, Flag.NONE), (Base.PTR_TO_STACK, Flag.NONE), (Base.PTR_TO_PACKET, Flag.NONE),
    (Base.PTR_TO_PACKET_META, Flag.NONE), (Base.PTR_TO_MAP_KEY, Flag.NONE),
    (Base.PTR_TO_MAP_VALUE, Flag.NONE), (Base.PTR_TO_MEM, Flag.NONE),
    (Base.PTR_TO_MEM, Flag.MEM_RDONLY), (Base.PTR_TO_MEM, Flag.MEM_RINGBUF),
    (Base.PTR_TO_BUF, Flag.NONE), (Base.PTR_TO_BUF, Flag.MEM_RDONLY),
})  # fmt: skip
#: ... and the BTF pointers that may carry a fixed one
_FIXED_OFF_BTF = frozenset({Flag.NONE, Flag.MEM_ALLOC, Flag.PTR_TRUSTED, Flag.MEM_RCU})


def func_arg_off_error(reg: Reg, regno: int, release: bool = False) -> tuple[str, int] | None:
    """check_func_arg_reg_off: the offsets a pointer passed to a function may carry;
    the refusal (text, errno), or None.  A released pointer must be exactly as it
    was acquired."""
    if release:
        if reg.off:
            return (f"R{regno} must have zero offset when passed to release func or "
                    f"trusted arg to kfunc", errno.EINVAL)  # fmt: skip
        bad = ptr_off_error(reg, regno)
    elif (reg.base, reg.flags) in _ANY_OFF_TYPES:
        return None
    else:
        fixed_ok = reg.base is Base.PTR_TO_BTF_ID and reg.flags in _FIXED_OFF_BTF
        bad = ptr_off_error(reg, regno, fixed_ok)
    return None if bad is None else (bad, errno.EACCES)


# --- one load or store -------------------------------------------------------------------------


def access(env: Checker, regno: int, off: int, size: int, write: bool,
           value: Reg | None, *, sx: bool = False, st: bool = False,
           atomic: bool = False) -> Reg | None:  # fmt: skip
    """check_mem_access for ``*(size *)(R<regno> + off)``.

    ``value`` is the register stored (None for a BPF_ST immediate, given as
    ``st``); returns the loaded register for a read.
    """
    reg = env.state.regs[regno]
    base = reg.base
    check_alignment(env, reg, off, size, atomic)
    if reg.maybe_null or base in (Base.NOT_INIT, Base.SCALAR) or base not in _CHECKERS:
        raise reject(f"R{regno} invalid mem access '{_tname(reg)}'")
    loaded = _CHECKERS[base](env, regno, reg, off, size, write, value, st, atomic)
    if loaded is not None and loaded.is_scalar and size < 8:
        var = loaded.var.sign_extend_load(size) if sx else loaded.var.truncate(size)
        linked = loaded.id if not sx and _fits(loaded, size) else 0  # a fill that fits
        loaded = Reg(Base.SCALAR, var=var, id=linked)
    return loaded


#: check_ptr_alignment's name of each pointer type in "misaligned ... access".
_ALIGN_DESC = {
    Base.PTR_TO_FLOW_KEYS: "flow keys ", Base.PTR_TO_MAP_KEY: "key ",
    Base.PTR_TO_MAP_VALUE: "value ", Base.PTR_TO_CTX: "context ", Base.PTR_TO_STACK: "stack ",
    Base.PTR_TO_SOCKET: "sock ", Base.PTR_TO_SOCK_COMMON: "sock_common ",
    Base.PTR_TO_TCP_SOCK: "tcp_sock ", Base.PTR_TO_XDP_SOCK: "xdp_sock ",
}  # fmt: skip
NET_IP_ALIGN = 2  # where a driver places the IP header: packet alignment counts from it


def strict_alignment(prog_flags: int) -> bool:
    """env->strict_alignment on a CPU with efficient unaligned access (x86-64, arm64)."""
    return bool(prog_flags & ProgFlag.STRICT_ALIGNMENT) \
        and not prog_flags & ProgFlag.ANY_ALIGNMENT  # fmt: skip


def check_alignment(env: Checker, reg: Reg, off: int, size: int, strict_once: bool) -> None:
    """check_ptr_alignment: under strict alignment (the program's flag, or once for an
    atomic; always for the stack) the address must be a multiple of the size; a packet's
    counts from NET_IP_ALIGN."""
    if size == 1:
        return
    strict = strict_once or strict_alignment(env.target.prog_flags)
    if reg.base in PKT_TYPES and reg.base is not Base.PTR_TO_PACKET_END:
        if strict and not _aligned(reg, NET_IP_ALIGN + reg.off + off, size):
            raise reject(f"misaligned packet access off {NET_IP_ALIGN}+{reg.var.var_off}+"
                         f"{reg.off}+{off} size {size}")  # fmt: skip
        return
    strict = strict or reg.base is Base.PTR_TO_STACK
    if strict and not _aligned(reg, reg.off + off, size):
        raise reject(f"misaligned {_ALIGN_DESC.get(reg.base, '')}access off "
                     f"{reg.var.var_off}+{reg.off}+{off} size {size}")  # fmt: skip


def _aligned(reg: Reg, add: int, size: int) -> bool:
    """tnum_is_aligned(tnum_add(var_off, tnum_const(add)), size)"""
    v = reg.var.var_off
    return v.add(Tnum(add & U64, 0)).is_aligned(size)


def _tname(reg: Reg) -> str:
    return "scalar" if reg.base is Base.SCALAR else reg.type_name()


def _stack(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
           value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    total = off + reg.off
    frame = env.state.frames[reg.frame]
    verb = " write to" if write else " read from"
    if reg.var.is_const():
        lo = total + reg.var.signed_value
        hi = lo + size
    else:
        if reg.var.smax >= MAX_VAR_OFF or reg.var.smin <= -MAX_VAR_OFF:
            raise reject(f"invalid unbounded variable-offset{verb} stack R{regno}")
        lo = reg.var.smin + total
        hi = reg.var.smax + total + size
    if lo < -STACK_SIZE or hi > 0:
        if reg.var.is_const():
            raise reject(f"invalid{verb} stack R{regno} off={total} size={size}")
        raise reject(f"invalid variable-offset{verb} stack R{regno} var_off={reg.var.var_off} "
                     f"off={total} size={size}")  # fmt: skip
    frame.depth = max(frame.depth, -lo)
    if not reg.var.is_const():
        if write:
            for a in range(lo, hi):
                _set_byte(frame, a, MISC)
            return None
        return UNKNOWN
    if write:
        stack_write(env, frame, lo, size, value, st)
        return None
    return stack_read(env, frame, lo, size)


def _set_byte(frame: Frame, addr: int, t: str) -> None:
    spi, j = (-addr - 1) // 8, (-addr - 1) % 8
    s = frame.slot(spi)
    types = s.types
    if s.spilled is not None:  # a partial overwrite destroys the spilled register
        types = "".join(MISC if c != INVALID else c for c in types)
    frame.stack[spi] = Slot(types[:j] + t + types[j + 1:], None)


def stack_write(env: Checker, frame: Frame, addr: int, size: int, value: Reg | None,
                st: bool) -> None:  # fmt: skip
    """check_stack_write_fixed_off: spill a register, or mark bytes MISC/ZERO.

    A scalar (or a BPF_ST immediate) written at the bottom of a slot is
    spilled with its size; a pointer only as 8 bytes; anything else makes
    the bytes MISC, or ZERO for a known zero.
    """
    spi = (-addr - 1) // 8
    bottom = addr % 8 == 0
    if st and bottom:
        value = const(env.insn.imm)
    if value is not None and (value.is_ptr or (value.is_scalar and bottom)):
        if value.is_ptr and size != 8:
            raise reject("invalid size of register spill")
        if value.base is Base.PTR_TO_STACK and frame is not env.state.cur:
            raise reject("cannot spill pointers to stack into stack frame of the caller",
                         errno.EINVAL)  # fmt: skip
        old = frame.slot(spi).types
        if frame.slot(spi).spilled is not None:
            old = "".join(MISC if c != INVALID else c for c in old)
        keep = "".join(c if c in (ZERO, INVALID) else MISC for c in old[: 8 - size])
        if value.is_scalar and not st:
            if not _fits(value, size):
                value = value.but(id=0)  # a narrowing spill breaks the relation
            else:  # the spill and the register stay linked
                linked = assign_scalar_id_before_mov(value, env.new_id)
                if linked is not value:
                    value = env.state.regs[env.insn.src_reg] = linked
        frame.stack[spi] = Slot(keep + SPILL * size, value)
        precise.note(env.state, ("S", frame.frameno, spi))  # a spill: the history's slot
        return
    zero = (value is None and st and env.insn.imm == 0) or (value is not None and value.is_const(0))
    if value is not None and zero:
        # STACK_ZERO is no spill, backtracking cannot follow it: the zero itself is precise
        precise.mark(env, env.state, (env.insn.src_reg,))
    for a in range(addr, addr + size):
        _set_byte(frame, a, ZERO if zero else MISC)


def _fits(reg: Reg, size: int) -> bool:
    """get_reg_width(reg) <= 8 * size: the scalar's value fits in ``size`` bytes."""
    return reg.var.umax.bit_length() <= 8 * size


def stack_read(env: Checker, frame: Frame, addr: int, size: int) -> Reg:
    """check_stack_read_fixed_off: a filled register, a zero, or an unknown scalar."""
    spi = (-addr - 1) // 8
    s = frame.slot(spi)
    fill = ("S", frame.frameno, spi)  # a fill restores the spill: the history's slot
    if s.spilled is not None and s.types[7] == SPILL:
        spill_size = len(s.types) - len(s.types.rstrip(SPILL))
        if size == 8 and spill_size == 8:
            precise.note(env.state, fill)
            return s.spilled
        if not s.spilled.is_scalar:
            raise reject("invalid size of register fill")
        if size <= spill_size and addr % 8 == 0:
            precise.note(env.state, fill)
            # a fill keeps the spill's id unless it narrows the value
            return s.spilled if size == 8 or _fits(s.spilled, size) else s.spilled.but(id=0)
    spill = zero = 0
    for a in range(addr, addr + size):
        t = frame.slot((-a - 1) // 8).types[(-a - 1) % 8]
        if t == ITER:  # check_stack_read_fixed_off: only MISC, ZERO, INVALID bytes are read
            raise reject(f"invalid read from stack off {addr}+{a - addr} size {size}")
        spill += t == SPILL
        zero += t == ZERO
    if spill == size and s.spilled is not None and s.spilled.is_const(0):
        precise.note(env.state, fill)
        return const(0)
    if zero == size:
        return const(0)
    return UNKNOWN


def map_access_type(m, off: int, size: int, write: bool) -> None:
    """check_map_access_type: a program may not write a BPF_F_RDONLY_PROG map's values,
    nor read a BPF_F_WRONLY_PROG map's (directly or through a helper)."""
    flags = getattr(m, "map_flags", 0)
    if write and flags & _BPF_F_RDONLY_PROG:
        raise reject(f"write into map forbidden, value_size={m.value_size} "
                     f"off={off} size={size}")  # fmt: skip
    if not write and flags & _BPF_F_WRONLY_PROG:
        raise reject(f"read from map forbidden, value_size={m.value_size} "
                     f"off={off} size={size}")  # fmt: skip


def special_fields(reg: Reg, off: int, size: int) -> None:
    """check_map_access's last rule: no load, store or helper touches the value's
    ``struct bpf_spin_lock`` (the map's BTF places it)."""
    lock_off = getattr(reg.map, "spin_lock_off", None)
    if lock_off is not None and reg.var.smin + off < lock_off + 4 \
            and lock_off < reg.var.umax + off + size:  # fmt: skip
        raise reject("bpf_spin_lock cannot be accessed directly by load/store")


def _map_value(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
               value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    m = reg.map
    map_access_type(m, off + reg.off, size, write)
    check_region(regno, reg, off + reg.off, size, m.value_size, "map value")
    special_fields(reg, off + reg.off, size)
    if write:
        return None
    if reg.var.is_const() and getattr(m, "frozen", False) \
            and getattr(m, "map_flags", 0) & _BPF_F_RDONLY_PROG:  # fmt: skip
        value = _direct_read(m, off + reg.off + reg.var.value, size, env.ldsx)
        if value is not None:
            return const(value)
    return UNKNOWN


def _direct_read(m, off: int, size: int, sx: bool) -> int | None:
    """bpf_map_direct_read: the bytes of a frozen read-only one-element array, as a
    value (a read-only map's contents are tracked as scalars); None where the map
    has no direct value address (pybpf reads those as unknown)."""
    if getattr(m, "map_type", 0) != _ARRAY or getattr(m, "max_entries", 0) != 1:
        return None
    try:
        data = bytes(m.lookup(bytes(4)))[off : off + size]
    except PybpfError:
        return None
    if len(data) != size:
        return None
    return int.from_bytes(data, "little", signed=sx) & ((1 << 64) - 1)


_ARRAY = 2  # BPF_MAP_TYPE_ARRAY: array_map_direct_value_addr
_BPF_F_RDONLY_PROG = 1 << 7
_BPF_F_WRONLY_PROG = 1 << 8


def _mem(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
         value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    if write and reg.flags & Flag.MEM_RDONLY:
        raise reject(f"R{regno} cannot write into {reg.type_name()}")
    check_region(regno, reg, off + reg.off, size, reg.size, "memory")
    return None if write else UNKNOWN


def _map_key(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
             value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    if write:
        raise reject(f"write to change key R{regno} not allowed")
    check_region(regno, reg, off + reg.off, size, reg.map.key_size, "map key")
    return UNKNOWN


def _packet(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
            value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    if not ctxrules.direct_packet_access(env.target.prog_type, write):
        what = "write into" if write else "read from"
        raise reject(f"cannot {what} packet")
    if write:  # may_access_direct_pkt_data: the prologue convert_ctx_accesses adds
        env.seen_direct_write = True
    v = reg.var
    total = off + reg.off
    if v.smin < 0:
        raise reject(f"R{regno} min value is negative, either use unsigned index or do a "
                     f"if (index >=0) check.")  # fmt: skip
    if reg.rng < 0:  # compared at or beyond the packet's end: nothing is in the packet
        raise reject(f"R{regno} offset is outside of the packet", errno.EINVAL)
    rng = reg.rng
    if total < 0 or total + size > rng:
        raise reject(f"invalid access to packet, off={total} size={size}, "
                     f"R{regno}(id={reg.id},off={total},r={rng})\n"
                     f"R{regno} offset is outside of the packet")  # fmt: skip
    return None if write else UNKNOWN


def _ctx(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
         value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    if write and atomic:
        raise reject(f"BPF_ATOMIC stores into R{regno} ctx is not allowed")
    bad = ptr_off_error(reg, regno)
    if bad is not None:
        raise reject(bad)
    acc = ctxrules.ctx_access(env.target.prog_type, off, size, write=write,
                              attach_type=env.target.attach_type, ldsx=env.ldsx)  # fmt: skip
    if acc is None:
        raise reject(f"invalid bpf_context access off={off} size={size}")
    if write:
        return None
    if acc.base is Base.SCALAR:
        return UNKNOWN
    if acc.base in PKT_TYPES:
        return Reg(acc.base, acc.flags)
    kw = {"map": btf_ref(acc.btf)} if acc.base is Base.PTR_TO_BTF_ID and acc.btf else {}
    if acc.flags & Flag.MAYBE_NULL:
        return Reg(acc.base, acc.flags, id=env.new_id(), **kw)
    return Reg(acc.base, acc.flags, **kw)


def _pkt_end(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
             value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    raise reject(f"R{regno} invalid mem access '{reg.type_name()}'")


_M = mapcompat
#: each map type's kernel struct, as its ops' map_btf_id names it (the map's BTF type)
MAP_STRUCT: dict[int, str] = {
    **dict.fromkeys((_M.HASH, _M.PERCPU_HASH, _M.LRU_HASH, _M.LRU_PERCPU_HASH, _M.HASH_OF_MAPS),
                    "bpf_htab"),
    **dict.fromkeys((_M.ARRAY, _M.PERCPU_ARRAY, _M.PROG_ARRAY, _M.PERF_EVENT_ARRAY,
                     _M.CGROUP_ARRAY, _M.ARRAY_OF_MAPS), "bpf_array"),
    **dict.fromkeys((_M.DEVMAP, _M.DEVMAP_HASH), "bpf_dtab"),
    **dict.fromkeys((_M.QUEUE, _M.STACK), "bpf_queue_stack"),
    **dict.fromkeys((_M.CGROUP_STORAGE, _M.PERCPU_CGROUP_STORAGE), "bpf_cgroup_storage_map"),
    **dict.fromkeys((_M.SK_STORAGE, _M.INODE_STORAGE, _M.TASK_STORAGE, _M.CGRP_STORAGE),
                    "bpf_local_storage_map"),
    **dict.fromkeys((_M.RINGBUF, _M.USER_RINGBUF), "bpf_ringbuf_map"),
    _M.STACK_TRACE: "bpf_stack_map", _M.LPM_TRIE: "lpm_trie", _M.SOCKMAP: "bpf_stab",
    _M.SOCKHASH: "bpf_shtab", _M.CPUMAP: "bpf_cpu_map", _M.XSKMAP: "xsk_map",
    _M.REUSEPORT_SOCKARRAY: "reuseport_array", _M.BLOOM_FILTER: "bpf_bloom_filter",
    _M.STRUCT_OPS: "bpf_struct_ops_map", _M.ARENA: "bpf_arena",
}  # fmt: skip


def _map_ptr(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
             value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    """check_ptr_to_map_access, narrowed to what pybpf's runtime backs with memory.

    The kernel reads the map's struct (``struct bpf_array``...) through BTF;
    pybpf's map pointer is an 8-byte region, so only reads inside it are accepted.
    """
    map_type = int(getattr(reg.map, "map_type", 0))
    tname = MAP_STRUCT.get(map_type)
    if tname is None:
        raise reject(f"map_ptr access not supported for map type {map_type}", ENOTSUPP)
    total = off + reg.off
    if total < 0:
        raise reject(f"R{regno} is {tname} invalid negative access: off={total}")
    if write:
        raise reject(f"only read from {tname} is supported")
    if not reg.var.is_const() or total + size > 8:
        raise reject(f"R{regno} invalid mem access '{reg.type_name()}'")
    return UNKNOWN


# --- sockets: struct bpf_sock, bpf_tcp_sock and bpf_xdp_sock (include/uapi/linux/bpf.h) ------
_SOCK_SIZE = 80  # sizeof(struct bpf_sock)
_SOCK_NARROW = frozenset({4, 8, 12, 44, 72, 76}) | set(range(24, 44)) | set(range(52, 72))
#: family, type, protocol, src_port, state, rx_queue_mapping, src_ip4/6, dst_ip4/6: loads of
#: 1, 2 or 4 bytes; dst_port (48) also 1 or 2; the padding after it, nothing
_SOCK_COMMON_HIDDEN = range(8, 24)  # type .. priority: not in struct sock_common
_TCP_SOCK_END = 112  # offsetofend(struct bpf_tcp_sock, icsk_retransmits)
_TCP_SOCK_U64 = (80, 88)  # bytes_received, bytes_acked


def _sock_field_ok(base: Base, off: int, size: int) -> bool:
    """bpf_sock_is_valid_access and its siblings, for a read."""
    if off < 0 or size <= 0 or off % size:
        return False
    if base is Base.PTR_TO_TCP_SOCK:
        if off >= _TCP_SOCK_END:
            return False
        return size == (8 if off in _TCP_SOCK_U64 else 4)
    if base is Base.PTR_TO_XDP_SOCK:
        return off < 4 and size == 4  # queue_id
    if off >= _SOCK_SIZE:
        return False
    if base is Base.PTR_TO_SOCK_COMMON and off in _SOCK_COMMON_HIDDEN:
        return False
    if off in _SOCK_NARROW:
        return size in (1, 2, 4)
    if 48 <= off < 50:  # dst_port: a 4-byte load (backward compatibility) or 1, 2 bytes
        return size in (1, 2) or (off == 48 and size == 4)
    if 50 <= off < 52:
        return False
    return size == 4


def _sock(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
          value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    """check_mem_access for a socket pointer: read only, the fields the type exposes."""
    if write:
        raise reject(f"R{regno} cannot write into {reg.type_name()}")
    if reg.var.smin < 0:
        raise reject(f"R{regno} min value is negative, either use unsigned index or do a "
                     "if (index >=0) check.")  # fmt: skip
    off += reg.off
    if not _sock_field_ok(reg.base, off, size):
        raise reject(f"R{regno} invalid {reg.type_name()} access off={off} size={size}")
    return UNKNOWN


def _tp_buffer(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
               value: Reg | None, st: bool, atomic: bool) -> Reg | None:
    """check_tp_buffer_access: a writable tracepoint's buffer, at a constant offset that
    is not negative (how far it reaches is checked against the tracepoint at attach)."""
    off += reg.off
    if off < 0:
        raise reject(f"R{regno} invalid tracepoint buffer access: off={off}, size={size}")
    if not reg.var.is_const() or reg.var.value:
        raise reject(f"R{regno} invalid variable buffer offset: off={off}, "
                     f"var_off={reg.var.var_off}")  # fmt: skip
    return None if write else UNKNOWN


_CHECKERS = {
    Base.PTR_TO_TP_BUFFER: _tp_buffer,
    Base.PTR_TO_BTF_ID: btf_access.access,
    Base.PTR_TO_SOCKET: _sock,
    Base.PTR_TO_SOCK_COMMON: _sock,
    Base.PTR_TO_TCP_SOCK: _sock,
    Base.PTR_TO_XDP_SOCK: _sock,
    Base.PTR_TO_STACK: _stack,
    Base.PTR_TO_MAP_VALUE: _map_value,
    Base.PTR_TO_MAP_KEY: _map_key,
    Base.PTR_TO_MEM: _mem,
    Base.PTR_TO_PACKET: _packet,
    Base.PTR_TO_PACKET_META: _packet,
    Base.PTR_TO_CTX: _ctx,
    Base.CONST_PTR_TO_MAP: _map_ptr,
}


# --- helper arguments: a range of bytes a helper reads or writes ---------------------------------


def helper_mem(env: Checker, regno: int, size_lo: int, size_hi: int, *, write: bool,
               uninit_ok: bool, zero_ok: bool) -> None:  # fmt: skip
    """check_helper_mem_access: R<regno> points to at least ``size_hi`` accessible bytes."""
    reg = env.state.regs[regno]
    base = reg.base
    if base in PKT_TYPES:
        _packet(env, regno, reg, 0, size_hi, write, None, False, False) if size_hi else None
        return
    if base is Base.PTR_TO_MAP_VALUE:
        map_access_type(reg.map, reg.off, size_hi, write)
        if size_hi or not zero_ok:
            check_region(regno, reg, reg.off, size_hi, reg.map.value_size, "map value",
                         zero_ok)  # fmt: skip
            special_fields(reg, reg.off, size_hi)
        return
    if base is Base.PTR_TO_MAP_KEY:
        check_region(regno, reg, reg.off, size_hi, reg.map.key_size, "map key", zero_ok)
        return
    if base is Base.PTR_TO_MEM:
        if write and reg.flags & Flag.MEM_RDONLY:
            raise reject(f"R{regno} cannot write into {reg.type_name()}")
        check_region(regno, reg, reg.off, size_hi, reg.size, "memory", zero_ok)
        return
    if base is Base.PTR_TO_CTX:
        return
    if reg.is_const(0) and zero_ok and size_hi == 0:
        return  # a zero-byte access through NULL
    if base is not Base.PTR_TO_STACK:
        raise reject(f"R{regno} type={reg.type_name()} expected=fp")
    if size_hi == 0 and not zero_ok:  # check_stack_range_initialized's first check
        raise reject("invalid zero-sized read")
    frame = env.state.frames[reg.frame]
    if reg.var.is_const():
        lo = reg.off + reg.var.signed_value
        hi = lo + size_hi
        if size_hi == 0 and zero_ok:
            return
        if lo < -STACK_SIZE or hi > 0 or size_hi <= 0:
            verb = "write to" if write else "read from"
            raise reject(f"invalid {verb} stack R{regno} off={lo} size={size_hi}")
    else:
        if reg.var.smax >= MAX_VAR_OFF or reg.var.smin <= -MAX_VAR_OFF:
            verb = "write to" if write else "read from"
            raise reject(f"invalid unbounded variable-offset {verb} stack R{regno}")
        lo = reg.off + reg.var.smin
        hi = reg.off + reg.var.smax + size_hi
        if lo < -STACK_SIZE or hi > 0:
            verb = "write to" if write else "read from"
            raise reject(f"invalid variable-offset {verb} stack R{regno} "
                         f"var_off={reg.var.var_off} off={reg.off} size={size_hi}")  # fmt: skip
    frame.depth = max(frame.depth, -lo)
    if write:
        for a in range(lo, hi):
            _set_byte(frame, a, MISC)
        return
    # reading: a spilled pointer passed as bytes is a leak only for !root; uninit is allowed,
    # an iterator's bytes are not (check_stack_range_initialized)
    del uninit_ok
    for a in range(lo, hi):
        if frame.slot((-a - 1) // 8).types[(-a - 1) % 8] == ITER:
            where = f"off {lo}" if reg.var.is_const() else f"var_off {reg.var.var_off}"
            raise reject(f"invalid read from stack R{regno} {where}+{a - lo} size {size_hi}")

