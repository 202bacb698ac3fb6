"""A scalar register's abstract value: a tnum plus signed/unsigned 32/64-bit bounds.

:class:`Scalar` is what the kernel's ``struct bpf_reg_state`` holds for a
``SCALAR_VALUE``: ``var_off`` (a :class:`~pybpf.verifier.tnum.Tnum`) and the
eight bounds ``smin/smax`` (s64), ``umin/umax`` (u64), ``s32_min/s32_max``
(s32) and ``u32_min/u32_max`` (u32), all plain Python ints in those ranges.
A concrete u64 ``x`` is a member when it satisfies all nine (see
:meth:`Scalar.member`).

The transfer functions reproduce Linux 6.18's ``kernel/bpf/verifier.c``
step for step — ``adjust_scalar_min_max_vals`` and its ``scalar*_min_max_*``
helpers, ``reg_bounds_sync``, ``zext_32_to_64``, ``coerce_reg_to_size*``,
``is_scalar_branch_taken`` and ``regs_refine_cond_op`` — so that bounds, and
hence verdicts and log lines, match the kernel's exactly, including where
the kernel is imprecise (division and modulo, shifts by a non-constant, give
a fully unknown scalar).  The reference is the 6.18 stable series as this
project's test machine runs it (6.18.44), stable fixes included: bounds
narrowed to a single tnum member (``tnum_step``), wrapping s32 ranges, and
the split of ``[-1, 0]`` values before AND/OR.  tests/test_verifier_scalar.py
replays recorded kernel logs to hold this to the kernel's text.

Inside, the computations run on :class:`_Reg`, a mutable mirror of the
kernel structure, so each kernel function translates to one Python function
with the same steps; a frozen :class:`Scalar` is built once per operation.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.verifier.tnum import (
    U32,
    U64,
    Tnum,
    hex_or_dec,
    t_add,
    t_and,
    t_arshift,
    t_intersect,
    t_mul,
    t_or,
    t_range,
    t_step,
    t_sub,
    t_xor,
)

S64_MIN = -(1 << 63)
S64_MAX = (1 << 63) - 1
S32_MIN = -(1 << 31)
S32_MAX = (1 << 31) - 1
_HI32 = U64 & ~U32
_SIGN64 = 1 << 63
_B31 = 1 << 31

# BPF_ALU operation bits (pybpf.isa.opcodes.Alu), as plain ints for speed
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
NEG, MOD, XOR, MOV, ARSH, END = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
# BPF_JMP operation bits (pybpf.isa.opcodes.Jmp)
JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE = 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
JLT, JLE, JSLT, JSLE = 0xA0, 0xB0, 0xC0, 0xD0
_JSET_FALSE = JSET | 0x08  # the kernel's encoding of "not JSET" (rev_opcode)

_FLIP = {JEQ: JEQ, JNE: JNE, JSET: JSET, JGE: JLE, JGT: JLT, JLE: JGE, JLT: JGT,
         JSGE: JSLE, JSGT: JSLT, JSLE: JSGE, JSLT: JSGT}
_REVERSE = {JEQ: JNE, JNE: JEQ, JSET: _JSET_FALSE, _JSET_FALSE: JSET, JGE: JLT, JGT: JLE,
            JLE: JGT, JLT: JGE, JSGE: JSLT, JSGT: JSLE, JSLE: JSGT, JSLT: JSGE}

# numbers in this range are printed in decimal by the kernel's log
_SNUM_DECIMAL_MIN = -(1 << 15)
_SNUM_DECIMAL_MAX = (1 << 15) - 1


def _s64(x: int) -> int:
    x &= U64
    return x - (1 << 64) if x >> 63 else x


def _s32(x: int) -> int:
    x &= U32
    return x - (1 << 32) if x & 0x80000000 else x


def _snum(value: int) -> str:
    """A signed number as the kernel's log prints it (``verbose_snum``)."""
    if _SNUM_DECIMAL_MIN <= value <= _SNUM_DECIMAL_MAX:
        return str(value)
    return f"{value & U64:#x}"


class _Reg:
    """The mutable working copy of a scalar (the fields of ``struct bpf_reg_state``)."""

    __slots__ = ("m", "s32max", "s32min", "smax", "smin", "u32max", "u32min", "umax", "umin",
                 "v")

    def __init__(self, s: Scalar) -> None:
        self.v = s.var_off.value
        self.m = s.var_off.mask
        self.smin = s.smin
        self.smax = s.smax
        self.umin = s.umin
        self.umax = s.umax
        self.s32min = s.s32_min
        self.s32max = s.s32_max
        self.u32min = s.u32_min
        self.u32max = s.u32_max

    def freeze(self) -> Scalar:
        return _make(Tnum(self.v, self.m), self.smin, self.smax, self.umin, self.umax,
                     self.s32min, self.s32max, self.u32min, self.u32max)


# --- marking (__mark_reg_known, __mark_reg*_unbounded) ----------------------


def _known(r: _Reg, imm: int) -> None:
    imm &= U64
    r.v, r.m = imm, 0
    r.smin = r.smax = _s64(imm)
    r.umin = r.umax = imm
    r.s32min = r.s32max = _s32(imm)
    r.u32min = r.u32max = imm & U32


def _known32(r: _Reg, imm: int) -> None:
    r.v = (r.v & _HI32) | (imm & U32)
    r.m &= _HI32
    r.s32min = r.s32max = _s32(imm)
    r.u32min = r.u32max = imm & U32


def _unbounded64(r: _Reg) -> None:
    r.smin, r.smax, r.umin, r.umax = S64_MIN, S64_MAX, 0, U64


def _unbounded32(r: _Reg) -> None:
    r.s32min, r.s32max, r.u32min, r.u32max = S32_MIN, S32_MAX, 0, U32


# --- reg_bounds_sync and its parts ------------------------------------------


def _update32(r: _Reg) -> None:
    v = r.v & U32
    m = r.m & U32
    x = ((v | (m & _B31)) ^ _B31) - _B31
    if x > r.s32min:
        r.s32min = x
    x = ((v | (m & S32_MAX)) ^ _B31) - _B31
    if x < r.s32max:
        r.s32max = x
    if v > r.u32min:
        r.u32min = v
    if v | m < r.u32max:
        r.u32max = v | m


def _update(r: _Reg) -> None:
    """``__update_reg_bounds``: :func:`_update32` then :func:`_update64`, on locals."""
    v, m = r.v, r.m
    v32, m32 = v & U32, m & U32
    x = ((v32 | (m32 & _B31)) ^ _B31) - _B31
    if x > r.s32min:
        r.s32min = x
    x = ((v32 | (m32 & S32_MAX)) ^ _B31) - _B31
    if x < r.s32max:
        r.s32max = x
    if v32 > r.u32min:
        r.u32min = v32
    if v32 | m32 < r.u32max:
        r.u32max = v32 | m32
    x = ((v | (m & _SIGN64)) ^ _SIGN64) - _SIGN64
    if x > r.smin:
        r.smin = x
    x = ((v | (m & S64_MAX)) ^ _SIGN64) - _SIGN64
    if x < r.smax:
        r.smax = x
    umin = v if v > r.umin else r.umin
    tmax = v | m
    umax = tmax if tmax < r.umax else r.umax
    r.umin, r.umax = umin, umax
    if not m:
        # what the tnum_step checks below come to for a constant tnum
        if umin != v or v > umax:
            _known(r, v)
        return
    nxt = t_step(v, m, umin)
    if (umin & ~m) == v:
        if nxt > umax:
            _known(r, umin)
    elif nxt == tmax:
        _known(r, tmax)
    elif nxt <= umax and t_step(v, m, nxt) > umax:
        _known(r, nxt)


def _deduce(r: _Reg) -> bool:
    """One pass of ``__reg_deduce_bounds``: the 32-bit, 64-bit and mixed deductions.

    Works on locals (this is the verifier's hottest function); returns
    whether anything changed, so that :func:`_sync` can stop at a fixpoint.
    """
    umin, umax, smin, smax = r.umin, r.umax, r.smin, r.smax
    u32min, u32max, s32min, s32max = r.u32min, r.u32max, r.s32min, r.s32max
    before = (umin, umax, smin, smax, u32min, u32max, s32min, s32max)

    # __reg32_deduce_bounds
    if umin >> 32 == umax >> 32:
        lo, hi = umin & U32, umax & U32
        if lo > u32min:
            u32min = lo
        if hi < u32max:
            u32max = hi
        lo, hi = (lo ^ _B31) - _B31, (hi ^ _B31) - _B31
        if lo <= hi:
            if lo > s32min:
                s32min = lo
            if hi < s32max:
                s32max = hi
    if smin >> 32 == smax >> 32:
        lo, hi = smin & U32, smax & U32
        if lo <= hi:
            if lo > u32min:
                u32min = lo
            if hi < u32max:
                u32max = hi
        lo, hi = (lo ^ _B31) - _B31, (hi ^ _B31) - _B31
        if lo <= hi:
            if lo > s32min:
                s32min = lo
            if hi < s32max:
                s32max = hi
    # upper halves two consecutive numbers, lower halves crossing -1 -> 0
    if (((umin >> 32) + 1) & U32) == (umax >> 32) & U32:
        lo, hi = ((umin & U32) ^ _B31) - _B31, ((umax & U32) ^ _B31) - _B31
        if lo < 0 <= hi:
            if lo > s32min:
                s32min = lo
            if hi < s32max:
                s32max = hi
    if ((((smin >> 32) & U32) + 1) & U32) == (smax >> 32) & U32:
        lo, hi = ((smin & U32) ^ _B31) - _B31, ((smax & U32) ^ _B31) - _B31
        if lo < 0 <= hi:
            if lo > s32min:
                s32min = lo
            if hi < s32max:
                s32max = hi
    lo, hi = (u32min ^ _B31) - _B31, (u32max ^ _B31) - _B31
    if lo <= hi:
        if lo > s32min:
            s32min = lo
        if hi < s32max:
            s32max = hi
    lo, hi = s32min & U32, s32max & U32
    if lo <= hi:
        if lo > u32min:
            u32min = lo
        if hi < u32max:
            u32max = hi
    elif u32max < lo:
        # the s32 range wraps; the u32 range meets only its non-negative part
        # (a 6.18 stable fix, "32-bit range overflow", that Linux 6.18.44 has)
        s32min = (u32min ^ _B31) - _B31
        if hi < u32max:
            u32max = hi
    elif hi < u32min:
        # ... or only its negative part
        s32max = (u32max ^ _B31) - _B31
        if lo > u32min:
            u32min = lo

    # __reg64_deduce_bounds
    lo, hi = (umin ^ _SIGN64) - _SIGN64, (umax ^ _SIGN64) - _SIGN64
    if lo <= hi:
        if lo > smin:
            smin = lo
        if hi < smax:
            smax = hi
    lo, hi = smin & U64, smax & U64
    if lo <= hi:
        if lo > umin:
            umin = lo
        if hi < umax:
            umax = hi
    elif umax < lo:
        # the u64 range meets only the non-negative part of the s64 range
        smin = (umin ^ _SIGN64) - _SIGN64
        if hi < umax:
            umax = hi
    elif hi < umin:
        # ... or only its negative part
        smax = (umax ^ _SIGN64) - _SIGN64
        if lo > umin:
            umin = lo

    # __reg_deduce_mixed_bounds
    x = (umin & _HI32) | u32min
    if x > umin:
        umin = x
    x = (umax & _HI32) | u32max
    if x < umax:
        umax = x
    x = (((smin & _HI32) | u32min) ^ _SIGN64) - _SIGN64
    if x > smin:
        smin = x
    x = (((smax & _HI32) | u32max) ^ _SIGN64) - _SIGN64
    if x < smax:
        smax = x
    r.umin, r.umax, r.smin, r.smax = umin, umax, smin, smax
    r.u32min, r.u32max, r.s32min, r.s32max = u32min, u32max, s32min, s32max
    # a sign-extended 32-bit value whose low half is non-negative
    if s32min >= 0 and smin >= S32_MIN and smax <= S32_MAX:
        r.smin = r.umin = s32min
        r.smax = r.umax = s32max
        v, m = t_intersect(r.v, r.m, *t_range(s32min & U64, s32max & U64))
        changed = v != r.v or m != r.m
        r.v, r.m = v, m
        return changed or before != (s32min, s32max, s32min, s32max, u32min, u32max,
                                     s32min, s32max)
    return before != (umin, umax, smin, smax, u32min, u32max, s32min, s32max)


def _bound_offset(r: _Reg) -> None:
    v64, m64 = t_intersect(r.v, r.m, *t_range(r.umin, r.umax))
    v32, m32 = t_intersect(v64 & U32, m64 & U32, *t_range(r.u32min, r.u32max))
    r.v = (v64 & _HI32) | v32
    r.m = ((m64 & _HI32) | m32) & ~r.v


def _sync(r: _Reg) -> None:
    """``reg_bounds_sync``: the kernel deduces three times; a pass that changes nothing ends it."""
    _update(r)
    if _deduce(r) and _deduce(r):
        _deduce(r)
    _bound_offset(r)
    _update(r)


def _zext(r: _Reg) -> None:
    """``zext_32_to_64``: the 32-bit bounds become the 64-bit ones."""
    r.v &= U32
    r.m &= U32
    r.umin, r.umax = r.u32min, r.u32max
    if r.s32min >= 0 and r.s32max >= 0:
        r.smin, r.smax = r.s32min, r.s32max
    else:
        r.smin, r.smax = 0, U32


# --- coerce_reg_to_size and the sign-extending variants ---------------------


def _coerce(r: _Reg, size: int) -> None:
    mask = (1 << (size * 8)) - 1
    r.v &= mask
    r.m &= mask
    if r.umin & ~mask == r.umax & ~mask:
        r.umin &= mask
        r.umax &= mask
    else:
        r.umin, r.umax = 0, mask
    r.smin, r.smax = r.umin, r.umax
    if size < 4:
        _unbounded32(r)
    _sync(r)


_SX_LIMITS = {1: (-(1 << 7), (1 << 7) - 1), 2: (-(1 << 15), (1 << 15) - 1), 4: (S32_MIN, S32_MAX)}


def _sext(x: int, size: int) -> int:
    bits = size * 8
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def _coerce_sx(r: _Reg, size: int) -> None:
    if not r.m:
        _known(r, _sext(r.v, size))
        return
    bits = size * 8
    if (r.smax & U64) >> bits == (r.smin & U64) >> bits:
        a, b = _sext(r.smax, size), _sext(r.smin, size)
        lo, hi = min(a, b), max(a, b)
        if (lo >= 0) == (hi >= 0):
            r.smin = r.s32min = lo
            r.smax = r.s32max = hi
            r.umin, r.umax = lo & U64, hi & U64
            r.u32min, r.u32max = lo & U32, hi & U32
            r.v, r.m = t_range(lo & U64, hi & U64)
            return
    lo, hi = _SX_LIMITS[size]
    r.smin = r.s32min = lo
    r.smax = r.s32max = hi
    r.umin = r.u32min = 0
    r.umax, r.u32max = U64, U32
    r.v, r.m = 0, U64


def _coerce_subreg_sx(r: _Reg, size: int) -> None:
    if not r.m:
        # the kernel takes the whole register as constant here; only the
        # 32-bit fields are set, the 64-bit ones come from the zext after
        value = _sext(r.v & U32, size) & U64
        r.v, r.m = value, 0
        r.s32min = r.s32max = _s32(value)
        r.u32min = r.u32max = value & U32
        return
    bits = size * 8
    if (r.s32max & U32) >> bits == (r.s32min & U32) >> bits:
        a, b = _sext(r.s32max, size), _sext(r.s32min, size)
        lo, hi = min(a, b), max(a, b)
        if (lo >= 0) == (hi >= 0):
            r.s32min, r.s32max = lo, hi
            r.u32min, r.u32max = lo & U32, hi & U32
            v, m = t_range(lo & U64, hi & U64)
            r.v, r.m = v & U32, m & U32
            return
    lo, hi = _SX_LIMITS[size]
    r.s32min, r.s32max = lo, hi
    r.u32min, r.u32max = 0, U32
    r.v, r.m = 0, U32


# --- the ALU transfer functions (scalar*_min_max_*) -------------------------


def _add(d: _Reg, s: Scalar) -> None:
    lo, hi = d.s32min + s.s32_min, d.s32max + s.s32_max
    if S32_MIN <= lo <= S32_MAX and S32_MIN <= hi <= S32_MAX:
        d.s32min, d.s32max = lo, hi
    else:
        d.s32min, d.s32max = S32_MIN, S32_MAX
    lo, hi = d.u32min + s.u32_min, d.u32max + s.u32_max
    if lo <= U32 and hi > U32:
        d.u32min, d.u32max = 0, U32
    else:
        d.u32min, d.u32max = lo & U32, hi & U32

    lo, hi = d.smin + s.smin, d.smax + s.smax
    if S64_MIN <= lo <= S64_MAX and S64_MIN <= hi <= S64_MAX:
        d.smin, d.smax = lo, hi
    else:
        d.smin, d.smax = S64_MIN, S64_MAX
    lo, hi = d.umin + s.umin, d.umax + s.umax
    if lo <= U64 and hi > U64:
        d.umin, d.umax = 0, U64
    else:
        d.umin, d.umax = lo & U64, hi & U64
    d.v, d.m = t_add(d.v, d.m, s.var_off.value, s.var_off.mask)


def _sub_bounds(d: _Reg, s32min: int, s32max: int, u32min: int, u32max: int, smin: int,
                smax: int, umin: int, umax: int) -> None:
    lo, hi = d.s32min - s32max, d.s32max - s32min
    if S32_MIN <= lo <= S32_MAX and S32_MIN <= hi <= S32_MAX:
        d.s32min, d.s32max = lo, hi
    else:
        d.s32min, d.s32max = S32_MIN, S32_MAX
    lo, hi = d.u32min - u32max, d.u32max - u32min
    if lo < 0 <= hi:
        d.u32min, d.u32max = 0, U32
    else:
        d.u32min, d.u32max = lo & U32, hi & U32

    lo, hi = d.smin - smax, d.smax - smin
    if S64_MIN <= lo <= S64_MAX and S64_MIN <= hi <= S64_MAX:
        d.smin, d.smax = lo, hi
    else:
        d.smin, d.smax = S64_MIN, S64_MAX
    lo, hi = d.umin - umax, d.umax - umin
    if lo < 0 <= hi:
        d.umin, d.umax = 0, U64
    else:
        d.umin, d.umax = lo & U64, hi & U64


def _sub(d: _Reg, s: Scalar) -> None:
    _sub_bounds(d, s.s32_min, s.s32_max, s.u32_min, s.u32_max, s.smin, s.smax, s.umin,
                s.umax)
    d.v, d.m = t_sub(d.v, d.m, s.var_off.value, s.var_off.mask)


def _neg(d: _Reg) -> None:
    old = (d.s32min, d.s32max, d.u32min, d.u32max, d.smin, d.smax, d.umin, d.umax)
    ov, om = d.v, d.m
    _known(d, 0)
    _sub_bounds(d, *old)
    d.v, d.m = t_sub(0, 0, ov, om)


def _mul(d: _Reg, s: Scalar) -> None:
    d.v, d.m = t_mul(d.v, d.m, s.var_off.value, s.var_off.mask)
    hi, lo = d.u32max * s.u32_max, d.u32min * s.u32_min
    if hi > U32 or lo > U32:
        d.u32min, d.u32max = 0, U32
    else:
        d.u32min, d.u32max = lo, hi
    prods = (d.s32min * s.s32_min, d.s32min * s.s32_max, d.s32max * s.s32_min,
             d.s32max * s.s32_max)
    if all(S32_MIN <= p <= S32_MAX for p in prods):
        d.s32min, d.s32max = min(prods), max(prods)
    else:
        d.s32min, d.s32max = S32_MIN, S32_MAX

    hi, lo = d.umax * s.umax, d.umin * s.umin
    if hi > U64 or lo > U64:
        d.umin, d.umax = 0, U64
    else:
        d.umin, d.umax = lo, hi
    prods = (d.smin * s.smin, d.smin * s.smax, d.smax * s.smin, d.smax * s.smax)
    if all(S64_MIN <= p <= S64_MAX for p in prods):
        d.smin, d.smax = min(prods), max(prods)
    else:
        d.smin, d.smax = S64_MIN, S64_MAX


def _signed32_from_unsigned(d: _Reg) -> None:
    if _s32(d.u32min) <= _s32(d.u32max):
        d.s32min, d.s32max = _s32(d.u32min), _s32(d.u32max)
    else:
        d.s32min, d.s32max = S32_MIN, S32_MAX


def _signed64_from_unsigned(d: _Reg) -> None:
    if _s64(d.umin) <= _s64(d.umax):
        d.smin, d.smax = _s64(d.umin), _s64(d.umax)
    else:
        d.smin, d.smax = S64_MIN, S64_MAX


def _bitwise(d: _Reg, s: Scalar, op: int) -> None:
    """AND, OR and XOR: the tnum first, then 32- and 64-bit bounds from it."""
    sv, sm = s.var_off.value, s.var_off.mask
    if op == AND:
        d.v, d.m = t_and(d.v, d.m, sv, sm)
    elif op == OR:
        d.v, d.m = t_or(d.v, d.m, sv, sm)
    else:
        d.v, d.m = t_xor(d.v, d.m, sv, sm)
    v32, m32 = d.v & U32, d.m & U32
    if not sm & U32 and not m32:
        _known32(d, v32)
    else:
        if op == AND:
            d.u32min, d.u32max = v32, min(d.u32max, s.u32_max)
        elif op == OR:
            d.u32min, d.u32max = max(d.u32min, s.u32_min), v32 | m32
        else:
            d.u32min, d.u32max = v32, v32 | m32
        _signed32_from_unsigned(d)
    if not sm and not d.m:
        _known(d, d.v)
        return
    if op == AND:
        d.umin, d.umax = d.v, min(d.umax, s.umax)
    elif op == OR:
        d.umin, d.umax = max(d.umin, s.umin), d.v | d.m
    else:
        d.umin, d.umax = d.v, d.v | d.m
    _signed64_from_unsigned(d)
    _update(d)


def _lsh32_bounds(d: _Reg, umin_val: int, umax_val: int) -> None:
    d.s32min, d.s32max = S32_MIN, S32_MAX
    if umax_val > 31 or d.u32max > 1 << (31 - umax_val):
        d.u32min, d.u32max = 0, U32
    else:
        d.u32min = (d.u32min << umin_val) & U32
        d.u32max = (d.u32max << umax_val) & U32


def _lsh(d: _Reg, s: Scalar, is64: bool) -> None:
    if not is64:
        lo, hi = s.u32_min, s.u32_max
        v, m = d.v & U32, d.m & U32
        _lsh32_bounds(d, lo, hi)
        d.v, d.m = (v << lo) & U32, (m << lo) & U32
        _unbounded64(d)
        _update32(d)
        return
    lo, hi = s.umin, s.umax
    # <<32 is the compilers' first half of a 32-to-64 sign extension
    if lo == 32 and hi == 32:
        d.smax, d.smin = d.s32max << 32, d.s32min << 32
    else:
        d.smin, d.smax = S64_MIN, S64_MAX
    if d.umax > 1 << (63 - hi):
        d.umin, d.umax = 0, U64
    else:
        d.umin = (d.umin << lo) & U64
        d.umax = (d.umax << hi) & U64
    _lsh32_bounds(d, lo, hi)
    d.v, d.m = (d.v << lo) & U64, (d.m << lo) & U64
    _update(d)


def _rsh(d: _Reg, s: Scalar, is64: bool) -> None:
    if not is64:
        lo, hi = s.u32_min, s.u32_max
        d.s32min, d.s32max = S32_MIN, S32_MAX
        d.v, d.m = (d.v & U32) >> lo, (d.m & U32) >> lo
        d.u32min >>= hi
        d.u32max >>= lo
        _unbounded64(d)
        _update32(d)
        return
    lo, hi = s.umin, s.umax
    d.smin, d.smax = S64_MIN, S64_MAX
    d.v >>= lo
    d.m >>= lo
    d.umin >>= hi
    d.umax >>= lo
    _unbounded32(d)
    _update(d)


def _arsh(d: _Reg, s: Scalar, is64: bool) -> None:
    if not is64:
        k = s.u32_min
        d.s32min >>= k
        d.s32max >>= k
        d.v, d.m = t_arshift(d.v & U32, d.m & U32, k, 32)
        d.u32min, d.u32max = 0, U32
        _unbounded64(d)
        _update32(d)
        return
    k = s.umin
    d.smin >>= k
    d.smax >>= k
    d.v, d.m = t_arshift(d.v, d.m, k, 64)
    d.umin, d.umax = 0, U64
    _unbounded32(d)
    _update(d)


def _safe_operands(op: int, s: Scalar, is64: bool) -> bool:
    """``is_safe_to_compute_dst_reg_range``: ops whose result bounds the kernel computes."""
    if op in (ADD, SUB, NEG, AND, XOR, OR, MUL, END):
        return True
    if op not in (LSH, RSH, ARSH):
        return False
    if is64:
        const = not s.var_off.mask and s.smin == s.smax and s.umin == s.umax
        return const and s.umax < 64
    const = (not s.var_off.mask & U32 and s.s32_min == s.s32_max
             and s.u32_min == s.u32_max)
    # the kernel checks the 64-bit umax even for a 32-bit shift
    return const and s.umax < 32


# --- branches (is_scalar_branch_taken, regs_refine_cond_op) -----------------


def _taken(op: int, a: Scalar, b: Scalar, is32: bool) -> int:
    ta, tb = a.var_off, b.var_off
    if is32:
        av, am, bv, bm = ta.value & U32, ta.mask & U32, tb.value & U32, tb.mask & U32
        umin1, umax1, smin1, smax1 = a.u32_min, a.u32_max, a.s32_min, a.s32_max
        umin2, umax2, smin2, smax2 = b.u32_min, b.u32_max, b.s32_min, b.s32_max
    else:
        av, am, bv, bm = ta.value, ta.mask, tb.value, tb.mask
        umin1, umax1, smin1, smax1 = a.umin, a.umax, a.smin, a.smax
        umin2, umax2, smin2, smax2 = b.umin, b.umax, b.smin, b.smax
    if op in (JEQ, JNE):
        eq = op == JEQ
        if not am and not bm:
            return int((av == bv) == eq)
        mu = ~am & ~bm
        if (av & mu) != (bv & mu):
            return int(not eq)
        if umin1 > umax2 or umax1 < umin2 or smin1 > smax2 or smax1 < smin2:
            return int(not eq)
        if not is32 and (a.u32_min > b.u32_max or a.u32_max < b.u32_min
                         or a.s32_min > b.s32_max or a.s32_max < b.s32_min):
            return int(not eq)
        return -1
    if op == JSET:
        if bm:
            av, am, bv, bm = bv, bm, av, am
        if bm:
            return -1
        if ~am & av & bv:
            return 1
        if not (am | av) & bv:
            return 0
        return -1
    if op == JGT:
        return 1 if umin1 > umax2 else 0 if umax1 <= umin2 else -1
    if op == JSGT:
        return 1 if smin1 > smax2 else 0 if smax1 <= smin2 else -1
    if op == JLT:
        return 1 if umax1 < umin2 else 0 if umin1 >= umax2 else -1
    if op == JSLT:
        return 1 if smax1 < smin2 else 0 if smin1 >= smax2 else -1
    if op == JGE:
        return 1 if umin1 >= umax2 else 0 if umax1 < umin2 else -1
    if op == JSGE:
        return 1 if smin1 >= smax2 else 0 if smax1 < smin2 else -1
    if op == JLE:
        return 1 if umax1 <= umin2 else 0 if umin1 > umax2 else -1
    if op == JSLE:
        return 1 if smax1 <= smin2 else 0 if smin1 > smax2 else -1
    return -1


def _is_const(r: _Reg, is32: bool) -> bool:
    return not (r.m & U32 if is32 else r.m)


def _refine(r1: _Reg, r2: _Reg, op: int, is32: bool) -> None:
    if op in (JGE, JGT, JSGE, JSGT):
        op = _FLIP[op]
        r1, r2 = r2, r1
    if op == JEQ:
        if is32:
            r1.u32min = r2.u32min = max(r1.u32min, r2.u32min)
            r1.u32max = r2.u32max = min(r1.u32max, r2.u32max)
            r1.s32min = r2.s32min = max(r1.s32min, r2.s32min)
            r1.s32max = r2.s32max = min(r1.s32max, r2.s32max)
            v, m = t_intersect(r1.v & U32, r1.m & U32, r2.v & U32, r2.m & U32)
            r1.v, r1.m = (r1.v & _HI32) | v, (r1.m & _HI32) | m
            r2.v, r2.m = (r2.v & _HI32) | v, (r2.m & _HI32) | m
        else:
            r1.umin = r2.umin = max(r1.umin, r2.umin)
            r1.umax = r2.umax = min(r1.umax, r2.umax)
            r1.smin = r2.smin = max(r1.smin, r2.smin)
            r1.smax = r2.smax = min(r1.smax, r2.smax)
            r1.v, r1.m = t_intersect(r1.v, r1.m, r2.v, r2.m)
            r2.v, r2.m = r1.v, r1.m
    elif op in (JNE, JSET, _JSET_FALSE):
        if not _is_const(r2, is32):
            r1, r2 = r2, r1
        if not _is_const(r2, is32):
            return
        val = r2.v & U32 if is32 else r2.v
        if op == JNE:
            _refine_ne(r1, val, is32)
        elif op == JSET:
            if val and not val & (val - 1):
                r1.v |= val
                r1.m &= ~val
        else:
            # forget the ranges first: this branch may be dead
            _unbounded64(r1)
            _unbounded32(r1)
            keep = (~val & U32) | _HI32 if is32 else ~val & U64
            r1.v &= keep
            r1.m &= keep
    elif op == JLE:
        if is32:
            r1.u32max = min(r1.u32max, r2.u32max)
            r2.u32min = max(r1.u32min, r2.u32min)
        else:
            r1.umax = min(r1.umax, r2.umax)
            r2.umin = max(r1.umin, r2.umin)
    elif op == JLT:
        if is32:
            r1.u32max = min(r1.u32max, (r2.u32max - 1) & U32)
            r2.u32min = max((r1.u32min + 1) & U32, r2.u32min)
        else:
            r1.umax = min(r1.umax, (r2.umax - 1) & U64)
            r2.umin = max((r1.umin + 1) & U64, r2.umin)
    elif op == JSLE:
        if is32:
            r1.s32max = min(r1.s32max, r2.s32max)
            r2.s32min = max(r1.s32min, r2.s32min)
        else:
            r1.smax = min(r1.smax, r2.smax)
            r2.smin = max(r1.smin, r2.smin)
    elif op == JSLT:
        if is32:
            r1.s32max = min(r1.s32max, _s32(r2.s32max - 1))
            r2.s32min = max(_s32(r1.s32min + 1), r2.s32min)
        else:
            r1.smax = min(r1.smax, _s64(r2.smax - 1))
            r2.smin = max(_s64(r1.smin + 1), r2.smin)


def _refine_ne(r: _Reg, val: int, is32: bool) -> None:
    """``r != val``: only a bound equal to ``val`` can move."""
    if is32:
        if r.u32min == val:
            r.u32min = (r.u32min + 1) & U32
        if r.u32max == val:
            r.u32max = (r.u32max - 1) & U32
        if r.s32min == _s32(val):
            r.s32min = _s32(r.s32min + 1)
        if r.s32max == _s32(val):
            r.s32max = _s32(r.s32max - 1)
    else:
        if r.umin == val:
            r.umin = (r.umin + 1) & U64
        if r.umax == val:
            r.umax = (r.umax - 1) & U64
        if r.smin == _s64(val):
            r.smin = _s64(r.smin + 1)
        if r.smax == _s64(val):
            r.smax = _s64(r.smax - 1)


def _insane(r: _Reg) -> str | None:
    """``reg_bounds_sanity_check``: what is wrong with the bounds, None when they are sane."""
    if r.umin > r.umax or r.smin > r.smax or r.u32min > r.u32max or r.s32min > r.s32max:
        return "range bounds violation"
    if not r.m and not (r.umin == r.umax == r.v and r.smin == r.smax == _s64(r.v)):
        return "const tnum out of sync with range bounds"
    if not r.m & U32:
        v32 = r.v & U32
        if not (r.u32min == r.u32max == v32 and r.s32min == r.s32max == _s32(v32)):
            return "const subreg tnum out of sync with range bounds"
    return None


def _violation(r: _Reg, name: str, what: str) -> str:
    """The kernel's log line for bounds that fail the sanity check."""
    return (f"verifier bug: REG INVARIANTS VIOLATION ({name}): {what} "
            f"u64=[{r.umin:#x}, {r.umax:#x}] s64=[{r.smin & U64:#x}, {r.smax & U64:#x}] "
            f"u32=[{r.u32min:#x}, {r.u32max:#x}] s32=[{r.s32min & U32:#x}, {r.s32max & U32:#x}] "
            f"var_off=({r.v:#x}, {r.m:#x})")


def _untouched_const(r: _Reg, s: Scalar) -> bool:
    """``r`` still holds the constant ``s`` (well-formed), so syncing it would change nothing."""
    v = s.var_off.value
    return (not s.var_off.mask and r.v == v and not r.m
            and r.umin == r.umax == s.umin == s.umax == v
            and r.smin == r.smax == s.smin == s.smax == _s64(v)
            and r.u32min == r.u32max == s.u32_min == s.u32_max == v & U32
            and r.s32min == r.s32max == s.s32_min == s.s32_max == _s32(v))


def _sane(r: _Reg) -> bool:
    return _insane(r) is None


def _alu_bounds(a: Scalar, op: int, src: Scalar, is64: bool) -> Scalar:
    """``adjust_scalar_min_max_vals`` for an operation it tracks."""
    d = _Reg(a)
    if op == ADD:
        _add(d, src)
    elif op == SUB:
        _sub(d, src)
    elif op == NEG:
        _neg(d)
    elif op == MUL:
        _mul(d, src)
    elif op in (AND, OR, XOR):
        _bitwise(d, src, op)
    elif op == LSH:
        _lsh(d, src, is64)
    elif op == RSH:
        _rsh(d, src, is64)
    else:
        _arsh(d, src, is64)
    if not is64:
        _zext(d)
    _sync(d)
    return d.freeze()


def _fold_arsh(x: int, y: int, is64: bool) -> int:
    if is64:
        return ((x ^ _SIGN64) - _SIGN64) >> y
    return (((x & U32) ^ _B31) - _B31) >> y


_FOLD = {
    ADD: lambda x, y, is64: (x + y) & U64,
    SUB: lambda x, y, is64: (x - y) & U64,
    MUL: lambda x, y, is64: (x * y) & U64,
    OR: lambda x, y, is64: x | y,
    AND: lambda x, y, is64: x & y,
    XOR: lambda x, y, is64: x ^ y,
    LSH: lambda x, y, is64: (x << y) & U64,
    RSH: lambda x, y, is64: (x if is64 else x & U32) >> y,
    ARSH: _fold_arsh,
    NEG: lambda x, y, is64: -x & U64,
}


@dataclass(frozen=True, slots=True)
class Scalar:
    """The verifier's knowledge of a scalar register: a tnum and eight bounds.

    Fields hold ints in their C types' ranges: ``smin/smax`` s64, ``umin/umax``
    u64, ``s32_min/s32_max`` s32, ``u32_min/u32_max`` u32; ``var_off`` is over
    the u64 value.  Operations return new scalars, never mutate.
    """

    var_off: Tnum
    smin: int
    smax: int
    umin: int
    umax: int
    s32_min: int
    s32_max: int
    u32_min: int
    u32_max: int

    # --- constructors ------------------------------------------------------

    @staticmethod
    def const(value: int) -> Scalar:
        """A known value (``__mark_reg_known``), given as any int taken modulo 2**64."""
        v = value & U64
        s = _s64(v)
        v32 = v & U32
        s32 = _s32(v32)
        return _make(Tnum(v, 0), s, s, v, v, s32, s32, v32, v32)

    @staticmethod
    def unknown() -> Scalar:
        """Nothing known (``__mark_reg_unknown``)."""
        return _UNKNOWN

    @staticmethod
    def from_range(lo: int, hi: int, *, signed: bool = False) -> Scalar:
        """Every value in ``[lo, hi]`` (u64, or s64 when ``signed``), bounds synced.

        Raises ``ValueError`` when ``lo > hi``.
        """
        if lo > hi:
            raise ValueError(f"empty range [{lo}, {hi}]")
        r = _Reg(_UNKNOWN)
        if signed:
            r.smin, r.smax = _s64(lo), _s64(hi)
        else:
            r.umin, r.umax = lo & U64, hi & U64
        _sync(r)
        return r.freeze()

    @staticmethod
    def from_signed(lo: int, hi: int) -> Scalar:
        """Both signed ranges, 64- and 32-bit, set to ``[lo, hi]`` (an s32 range), the
        rest derived from them (do_refine_retval_range's bounds)."""
        r = _Reg(_UNKNOWN)
        r.smin, r.smax, r.s32min, r.s32max = lo, hi, lo, hi
        _sync(r)
        return r.freeze()

    @staticmethod
    def from_tnum(var_off: Tnum) -> Scalar:
        """Every member of ``var_off``, bounds derived from it."""
        r = _Reg(_UNKNOWN)
        r.v, r.m = var_off.value, var_off.mask
        _sync(r)
        return r.freeze()

    def synced(self) -> Scalar:
        """The bounds and tnum made to agree (``reg_bounds_sync``)."""
        d = _Reg(self)
        _sync(d)
        return d.freeze()

    # --- queries -----------------------------------------------------------

    def is_const(self) -> bool:
        """The 64-bit value is known (``tnum_is_const(var_off)``)."""
        return not self.var_off.mask

    def subreg_is_const(self) -> bool:
        """The low 32 bits are known."""
        return not self.var_off.mask & U32

    @property
    def value(self) -> int:
        """The known bits as a u64 (the value itself when :meth:`is_const`)."""
        return self.var_off.value

    @property
    def signed_value(self) -> int:
        """:attr:`value` as an s64."""
        return _s64(self.var_off.value)

    def member(self, x: int) -> bool:
        """``x`` (taken modulo 2**64) satisfies the tnum and all eight bounds."""
        x &= U64
        x32 = x & U32
        return ((x & ~self.var_off.mask) == self.var_off.value
                and self.umin <= x <= self.umax and self.smin <= _s64(x) <= self.smax
                and self.u32_min <= x32 <= self.u32_max
                and self.s32_min <= _s32(x32) <= self.s32_max)

    def is_sane(self) -> bool:
        """The kernel's ``reg_bounds_sanity_check`` holds (ordered bounds, consistent constants)."""
        return _sane(_Reg(self))

    def within(self, old: Scalar) -> bool:
        """``self`` (the current state) is covered by ``old``: ``range_within`` and ``tnum_in``.

        This is the scalar part of the kernel's ``regsafe`` for a precise
        scalar: every value ``self`` allows, ``old`` allows too.
        """
        return (old.umin <= self.umin and old.umax >= self.umax
                and old.smin <= self.smin and old.smax >= self.smax
                and old.u32_min <= self.u32_min and old.u32_max >= self.u32_max
                and old.s32_min <= self.s32_min and old.s32_max >= self.s32_max
                and old.var_off.contains(self.var_off))

    # --- ALU ---------------------------------------------------------------

    def alu(self, op: int, src: Scalar, *, is64: bool) -> Scalar:
        """``self op= src`` for a BPF_ALU/ALU64 operation (``op`` = opcode & 0xf0).

        For ``op=K`` instructions pass ``Scalar.const(imm)`` with ``imm``
        sign-extended, as the kernel does.  NEG ignores ``src``; MOV returns
        ``src`` (zero-extended for 32-bit); END needs :meth:`endian`.  DIV and
        MOD, and shifts by anything but a constant below the width, give
        :meth:`unknown` — Linux 6.18 does not track them.  32-bit results
        are zero-extended.
        """
        if op == MOV:
            return src if is64 else src.zext32()
        if op == END:
            raise ValueError("byte swaps go through Scalar.endian")
        if not _safe_operands(op, src, is64):
            return _UNKNOWN
        if not self.var_off.mask and not src.var_off.mask and op in _FOLD:
            # two constants: the kernel's bounds arithmetic ends at the exact result
            value = _FOLD[op](self.var_off.value, src.var_off.value, is64)
            return Scalar.const(value if is64 else value & U32)
        return _alu_bounds(self, op, src, is64)

    def ptr_alu(self, op: int, off: Scalar) -> Scalar:
        """A pointer's variable part after ``ptr += off`` or ``ptr -= off`` (64-bit only).

        ``self`` is the pointer's ``var_off`` and bounds, ``off`` the scalar
        added; ``op`` is ADD or SUB.  This is ``adjust_ptr_min_max_vals``,
        whose rules differ from scalar arithmetic: any unsigned overflow
        (ADD) or a possible borrow (SUB) loses the unsigned bounds, and the
        32-bit bounds start unbounded.  A constant ``off`` that the kernel
        folds into the fixed offset (``ptr->off``) is the caller's to handle;
        here it is added to the variable part like any other.
        """
        if op not in (ADD, SUB):
            raise ValueError("pointers only add and subtract")
        d = _Reg(self)
        if op == ADD:
            lo, hi = self.smin + off.smin, self.smax + off.smax
            ulo, uhi = self.umin + off.umin, self.umax + off.umax
            d.v, d.m = t_add(d.v, d.m, off.var_off.value, off.var_off.mask)
        else:
            lo, hi = self.smin - off.smax, self.smax - off.smin
            ulo, uhi = self.umin - off.umax, self.umax - off.umin
            d.v, d.m = t_sub(d.v, d.m, off.var_off.value, off.var_off.mask)
        if S64_MIN <= lo <= S64_MAX and S64_MIN <= hi <= S64_MAX:
            d.smin, d.smax = lo, hi
        else:
            d.smin, d.smax = S64_MIN, S64_MAX
        if ulo < 0 or uhi > U64:
            d.umin, d.umax = 0, U64
        else:
            d.umin, d.umax = ulo, uhi & U64
        _unbounded32(d)
        _sync(d)
        return d.freeze()

    def add_delta(self, delta: int) -> Scalar:
        """``self + delta`` as ``sync_linked_regs`` computes a linked copy's value.

        When a branch narrows a register, the kernel gives each register
        linked to it with a constant difference (``id=1+4`` in the log) the
        narrowed value plus that difference: the 32- and 64-bit additions,
        with no zero-extension and no ``reg_bounds_sync``.  ``delta`` is the
        s32 difference of the two registers' offsets.
        """
        d = _Reg(self)
        _add(d, Scalar.const(delta))
        return d.freeze()

    def neg(self, is64: bool) -> Scalar:
        """``-self`` (BPF_NEG)."""
        return self.alu(NEG, self, is64=is64)

    def endian(self, bits: int, *, to_be: bool, is64: bool) -> Scalar:
        """BPF_END: ``bswap``/``be``/``le`` of width ``bits`` (16, 32, 64) on a little-endian host.

        ``is64`` is the ALU64 class (the unconditional ``bswap``); ``to_be``
        the BPF_TO_BE source bit.  A conversion that does not swap only
        truncates to ``bits``.
        """
        if bits not in (16, 32, 64):
            raise ValueError(f"byte swap width must be 16, 32 or 64, not {bits}")
        d = _Reg(self)
        if is64 or to_be:
            n = bits // 8
            keep = (1 << bits) - 1
            d.v = int.from_bytes((d.v & keep).to_bytes(n, "little"), "big")
            d.m = int.from_bytes((d.m & keep).to_bytes(n, "little"), "big")
            _unbounded64(d)
            _unbounded32(d)
        if bits < 64:
            _coerce(d, bits // 8)
        _sync(d)
        return d.freeze()

    def sign_mask_split(self, op: int, src: Scalar) -> tuple[Scalar, Scalar] | None:
        """The kernel's fork before ``AND``/``OR`` by a constant of a value in ``[-1, 0]``.

        When ``src`` is a constant and ``self`` (64-bit, else its low 32 bits)
        is known to lie in ``[-1, 0]``, Linux 6.18 splits the path
        (``maybe_fork_scalars``): it returns ``(minus_one, zero)`` where
        ``minus_one`` replaces ``self`` before the operation on the current
        path, and ``zero`` replaces it on a new path pushed to run this same
        instruction again (the log's ``from 3 to 3: R0=0``).  For a 32-bit
        split only the low half becomes known.  Returns None when no split
        happens.
        """
        if op not in (AND, OR) or src.var_off.mask:
            return None
        if self.smin == -1 and self.smax == 0:
            return Scalar.const(-1), Scalar.const(0)
        if self.s32_min == -1 and self.s32_max == 0:
            minus, zero = _Reg(self), _Reg(self)
            _known32(minus, U32)
            _known32(zero, 0)
            return minus.freeze(), zero.freeze()
        return None

    # --- width changes -----------------------------------------------------

    def zext32(self) -> Scalar:
        """The low 32 bits, zero-extended (a 32-bit ``mov``: ``zext_32_to_64`` and sync)."""
        d = _Reg(self)
        _zext(d)
        _sync(d)
        return d.freeze()

    def truncate(self, size: int) -> Scalar:
        """The low ``size`` bytes, zero-extended (``coerce_reg_to_size``; a narrow load)."""
        if size >= 8:
            return self
        d = _Reg(self)
        _coerce(d, size)
        return d.freeze()

    def sign_extend_load(self, size: int) -> Scalar:
        """The low ``size`` bytes sign-extended to 64 bits (``coerce_reg_to_size_sx``).

        As in the kernel, the bounds are not synced afterwards (used by
        sign-extending loads and 64-bit ``movsx``).
        """
        if size not in _SX_LIMITS:
            raise ValueError(f"sign extension from {size} bytes")
        d = _Reg(self)
        _coerce_sx(d, size)
        return d.freeze()

    def movsx(self, bits: int, is64: bool) -> Scalar:
        """``dst = (s8/s16/s32) self`` (BPF_MOVSX, ``bits`` = the insn's ``off``).

        64-bit: sign-extend to 64 bits.  32-bit (``bits`` 8 or 16): sign-extend
        into the low 32 bits, then zero-extend.
        """
        if is64:
            return self.sign_extend_load(bits // 8)
        if bits not in (8, 16):
            raise ValueError(f"32-bit movsx from {bits} bits")
        d = _Reg(self)
        _coerce_subreg_sx(d, bits // 8)
        _zext(d)
        _sync(d)
        return d.freeze()

    # --- branches ----------------------------------------------------------

    @staticmethod
    def branch_taken(op: int, a: Scalar, b: Scalar, *, is32: bool) -> int:
        """Whether ``if a op b goto`` jumps: 1 always, 0 never, -1 unknown.

        ``op`` is a BPF_JMP operation (opcode & 0xf0) among JEQ..JSLE and
        JSET; ``is32`` compares the low 32 bits (JMP32).  The kernel's
        ``is_scalar_branch_taken``.
        """
        return _taken(op, a, b, is32)

    @staticmethod
    def refine(op: int, a: Scalar, b: Scalar, *, is32: bool,
               taken: bool) -> tuple[Scalar, Scalar] | None:
        """``a`` and ``b`` narrowed by knowing that ``a op b`` is ``taken`` (or not).

        The kernel's ``regs_refine_cond_op`` (with the reversed condition on
        the fall-through side) followed by ``reg_bounds_sync`` of both.
        Returns None when the result breaks the kernel's sanity check, i.e.
        the branch cannot happen (the kernel instead logs a verifier bug and
        continues with the register unbounded: :meth:`refine_as_kernel`).
        """
        if op not in _FLIP:
            return a, b
        r1, r2 = _Reg(a), _Reg(b)
        _refine(r1, r2, op if taken else _REVERSE[op], is32)
        _sync(r1)
        if _untouched_const(r2, b):
            return (r1.freeze(), b) if _sane(r1) else None
        _sync(r2)
        if not (_sane(r1) and _sane(r2)):
            return None
        return r1.freeze(), r2.freeze()

    @staticmethod
    def refine_as_kernel(op: int, a: Scalar, b: Scalar, *, is32: bool,
                         taken: bool) -> tuple[Scalar, Scalar, list[str]]:
        """:meth:`refine` as the kernel carries on when the result is not sane.

        Linux does not drop such a branch: it logs ``verifier bug: REG
        INVARIANTS VIOLATION (true_reg1): ...`` for each register that fails
        ``reg_bounds_sanity_check``, resets that register's bounds to
        unbounded (keeping its tnum) and goes on.  Returns both registers and
        those log lines (empty when the branch refined cleanly).
        """
        if op not in _FLIP:
            return a, b, []
        r1, r2 = _Reg(a), _Reg(b)
        _refine(r1, r2, op if taken else _REVERSE[op], is32)
        _sync(r1)
        _sync(r2)
        side = "true" if taken else "false"
        lines = []
        for name, r in ((f"{side}_reg1", r1), (f"{side}_reg2", r2)):
            what = _insane(r)
            if what is not None:
                lines.append(_violation(r, name, what))
                _unbounded64(r)
                _unbounded32(r)
        return r1.freeze(), r2.freeze(), lines

    # --- the log -----------------------------------------------------------

    def range_fields(self) -> list[str]:
        """The ``name=value`` items the kernel prints for a non-constant value.

        ``print_scalar_ranges`` (bounds other than the type's limits, equal
        ones merged as ``smin=smin32=0``) followed by ``var_off=(v; m)`` unless
        the tnum is unknown.  Pointers with a variable offset print the same.
        """
        s32min_shown = self.s32_min if _SNUM_DECIMAL_MIN <= self.s32_min <= _SNUM_DECIMAL_MAX \
            else self.s32_min & U32
        s32max_shown = self.s32_max if _SNUM_DECIMAL_MIN <= self.s32_max <= _SNUM_DECIMAL_MAX \
            else self.s32_max & U32
        items = [
            ["smin", self.smin, self.smin == S64_MIN],
            ["smax", self.smax, self.smax == S64_MAX],
            ["umin", self.umin, self.umin == 0],
            ["umax", self.umax, self.umax == U64],
            ["smin32", s32min_shown, self.s32_min == S32_MIN],
            ["smax32", s32max_shown, self.s32_max == S32_MAX],
            ["umin32", self.u32_min, self.u32_min == 0],
            ["umax32", self.u32_max, self.u32_max == U32],
        ]
        out = []
        for i, (name, val, omit) in enumerate(items):
            if omit:
                continue
            signed = name[0] == "s"
            neg = signed and val < 0
            names = [name]
            for other in items[i + 2::2]:
                if other[2] or (other[1] & U64) != (val & U64):
                    continue
                if (other[0][0] == "s" and other[1] < 0) != neg:
                    continue
                other[2] = True
                names.append(other[0])
            shown = _snum(val) if signed else hex_or_dec(val)
            out.append("=".join(names) + "=" + shown)
        if self.var_off.mask != U64:
            out.append(f"var_off={self.var_off}")
        return out

    def format(self, *, id: int = 0, delta: int | None = None, precise: bool = False) -> str:
        """The register as the kernel's log prints it: ``5``, ``scalar()``, ``scalar(id=2,...)``.

        ``id`` is the scalar's link id (0 for none), ``delta`` the constant a
        linked copy was moved by (printed ``id=2+4``), ``precise`` prefixes
        ``P`` as the kernel does for precise scalars at log level 2.
        """
        prefix = "P" if precise else ""
        if not self.var_off.mask:
            return prefix + _snum(_s64(self.var_off.value))
        items = self.range_fields()
        if id:
            head = f"id={id}" if delta is None else f"id={id}{delta:+d}"
            items.insert(0, head)
        return f"{prefix}scalar({','.join(items)})"

    def __str__(self) -> str:
        return self.format()


_UNKNOWN = Scalar(Tnum(0, U64), S64_MIN, S64_MAX, 0, U64, S32_MIN, S32_MAX, 0, U32)

# Building a Scalar through its slots' descriptors skips the frozen dataclass's
# per-field __setattr__ checks: half the cost, on the verifier's hottest path.
_SETTERS = tuple(getattr(Scalar, name).__set__ for name in (
    "var_off", "smin", "smax", "umin", "umax", "s32_min", "s32_max", "u32_min", "u32_max"))


def _make(var_off: Tnum, smin: int, smax: int, umin: int, umax: int, s32_min: int,
          s32_max: int, u32_min: int, u32_max: int) -> Scalar:
    s = object.__new__(Scalar)
    a, b, c, d, e, f, g, h, i = _SETTERS
    a(s, var_off)
    b(s, smin)
    c(s, smax)
    d(s, umin)
    e(s, umax)
    f(s, s32_min)
    g(s, s32_max)
    h(s, u32_min)
    i(s, u32_max)
    return s
