"""The scalar domain: soundness against the interpreter, precision and log text against Linux.

Soundness: for abstract values built around random concrete members, every
concrete result (computed by pybpf's interpreter running the one
instruction) is a member of the abstract result; branch prediction never
contradicts a concrete pair; refinement keeps every pair that takes the
branch.  Precision: known kernel results.  Text: the kernel's own level-2 log
lines, recorded kernel facts (``kernel_facts/verifier_scalar.json``, re-recorded
with ``--record-kernel``), are reproduced by running the same instructions through
:class:`Scalar`; when bpf(2) works the running kernel is asked too, and a log that
differs from its recording is drift (reported, the test an xfail), never a failure.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from functools import cache

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pybpf.asm import llvm
from pybpf.isa import Instruction
from pybpf.kernel import linux
from pybpf.testing import kernel_plugin
from pybpf.verifier.scalar import (
    _FOLD,
    ADD,
    AND,
    ARSH,
    DIV,
    JEQ,
    JGE,
    JGT,
    JLE,
    JLT,
    JNE,
    JSET,
    JSGE,
    JSGT,
    JSLE,
    JSLT,
    LSH,
    MOD,
    MOV,
    MUL,
    NEG,
    OR,
    RSH,
    S32_MAX,
    S64_MIN,
    SUB,
    XOR,
    Scalar,
    _alu_bounds,
    _safe_operands,
)
from pybpf.verifier.tnum import U32, U64, Tnum
from pybpf.vm import Interpreter

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALU64, ALU, JMP, JMP32, LDX = 0x07, 0x04, 0x05, 0x06, 0x01
X = 0x08
EXIT = Instruction(0x95, 0, 0, 0, 0)
MOV_R0_R1 = Instruction(ALU64 | X | MOV, 0, 1, 0, 0)

BINARY = [ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, MOD, XOR, MOV, ARSH]
JUMPS = [JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE]


def s64(x: int) -> int:
    x &= U64
    return x - (1 << 64) if x >> 63 else x


def s32(x: int) -> int:
    x &= U32
    return x - (1 << 32) if x >> 31 else x


# --- concrete semantics: the interpreter runs the one instruction ----------


@cache
def _vm(*insns: Instruction) -> Interpreter:
    return Interpreter(insns)


def run(insns: tuple[Instruction, ...], x: int, y: int = 0) -> int:
    return _vm(*insns).run(args=[x, y]).r0


def concrete_alu(op: int, x: int, y: int, is64: bool, off: int = 0) -> int:
    """``x op y`` as pybpf's interpreter computes it (r1 op r2 into r0)."""
    cls = ALU64 if is64 else ALU
    if op == NEG:  # unary, K form only
        return run((MOV_R0_R1, Instruction(cls | NEG, 0, 0, 0, 0), EXIT), x)
    return run((MOV_R0_R1, Instruction(cls | X | op, 0, 2, off, 0), EXIT), x, y)


def concrete_jump(op: int, x: int, y: int, is32: bool) -> bool:
    cls = JMP32 if is32 else JMP
    prog = (
        Instruction(cls | X | op, 1, 2, 2, 0),
        Instruction(ALU64 | MOV, 0, 0, 0, 0),
        EXIT,
        Instruction(ALU64 | MOV, 0, 0, 0, 1),
        EXIT,
    )
    return bool(run(prog, x, y))


# --- abstract values around concrete members -------------------------------

SPECIAL = [0, 1, 2, 3, 7, 8, 31, 32, 63, 64, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
           0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, 0x7FFFFFFFFFFFFFFF,
           1 << 63, (1 << 63) + 1, U64 - 1, U64, U64 - 0x7FFFFFFF, U64 - 0x80000000]

u64s = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(0, U64),
    st.integers(0, 300),
    st.integers(-300, 300).map(lambda v: v & U64),
    st.integers(-(1 << 33), 1 << 33).map(lambda v: v & U64),
)


def hull(values: list[int]) -> Scalar:
    """The tightest scalar holding ``values`` before syncing: tnum union and per-domain min/max."""
    t = Tnum.const(values[0])
    for v in values[1:]:
        t = t.union(Tnum.const(v))
    sv = [s64(v) for v in values]
    lo32 = [v & U32 for v in values]
    sv32 = [s32(v) for v in values]
    return Scalar(t, min(sv), max(sv), min(values), max(values), min(sv32), max(sv32),
                  min(lo32), max(lo32))


@st.composite
def members(draw, *, small: bool = False, near: tuple[int, ...] = ()) -> tuple[Scalar, list[int]]:
    """An abstract scalar and some of its concrete members (the first is the one to use).

    With ``near``, the members often start at or next to one of those values,
    so that two scalars share edges (where ``<`` and ``<=`` differ).
    """
    base = draw(st.integers(0, 63) if small else u64s)
    if near and draw(st.booleans()):
        base = (draw(st.sampled_from(near)) + draw(st.integers(-1, 1))) & U64
    values = [base]
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            values.append((base + draw(st.integers(-70, 70))) & U64)
        else:
            values.append(draw(st.integers(0, 63) if small else u64s))
    a = hull(values)
    if draw(st.booleans()):
        # widen: forget some bits and loosen some bounds, keeping every member
        extra = draw(st.integers(0, U64)) & draw(st.sampled_from([0, 0xF, 0xFF00, U32, U64]))
        t = Tnum(a.var_off.value & ~extra, a.var_off.mask | extra)
        loosen = draw(st.integers(0, 1 << 40))
        a = Scalar(t, max(S64_MIN, a.smin - loosen), a.smax, max(0, a.umin - loosen),
                   min(U64, a.umax + loosen), a.s32_min, min(S32_MAX, a.s32_max + loosen),
                   a.u32_min, a.u32_max)
    a = a.synced()
    pick = draw(st.sampled_from(values))
    return a, [pick, *values]


def shift_amounts(is64: bool):
    bits = 64 if is64 else 32
    return st.one_of(
        st.integers(0, bits - 1).map(lambda k: (Scalar.const(k), [k])),
        members(small=True),
    )


# --- tnum ------------------------------------------------------------------


@st.composite
def tnum_members(draw) -> tuple[Tnum, int]:
    mask = draw(st.integers(0, U64)) & draw(st.sampled_from([0, 1, 0xFF, U32, U64, 0xF0F0]))
    value = draw(u64s) & ~mask
    return Tnum(value, mask), value | (draw(st.integers(0, U64)) & mask)


TNUM_OPS = {
    "add": (Tnum.add, lambda x, y: x + y),
    "sub": (Tnum.sub, lambda x, y: x - y),
    "mul": (Tnum.mul, lambda x, y: x * y),
    "and": (Tnum.and_, lambda x, y: x & y),
    "or": (Tnum.or_, lambda x, y: x | y),
    "xor": (Tnum.xor, lambda x, y: x ^ y),
}


@SETTINGS
@given(tnum_members(), tnum_members(), st.sampled_from(sorted(TNUM_OPS)), st.integers(0, 63))
def test_tnum_operations_are_sound(a, b, name, k):
    (ta, x), (tb, y) = a, b
    assert ta.member(x) and tb.member(y)
    abstract, concrete = TNUM_OPS[name]
    assert abstract(ta, tb).member(concrete(x, y) & U64)
    assert ta.union(tb).member(x) and ta.union(tb).member(y)
    assert ta.neg().member(-x & U64)
    assert ta.lshift(k).member((x << k) & U64)
    assert ta.rshift(k).member(x >> k)
    assert ta.arshift(k).member((s64(x) >> k) & U64)
    assert ta.arshift(k % 32, 32).member((s32(x) >> (k % 32)) & U32)
    for size in (1, 2, 4, 8):
        assert ta.cast(size).member(x & ((1 << (8 * size)) - 1))
    assert ta.subreg().member(x & U32)
    assert ta.clear_subreg().member(x & ~U32 & U64)
    assert ta.with_subreg(tb).member((x & ~U32 & U64) | (y & U32))
    assert ta.bswap(16).member(int.from_bytes((x & 0xFFFF).to_bytes(2, "little"), "big"))
    assert ta.bswap(64).member(int.from_bytes(x.to_bytes(8, "little"), "big"))
    if tb.member(x):
        assert ta.intersect(tb).member(x)
        assert ta.overlap(tb)
    if ta.contains(tb):
        assert ta.member(y)


def kernel_tnum_mul(a: Tnum, b: Tnum) -> Tnum:
    """tnum_mul's loop exactly as tnum.c runs it, to every bit of the multiplier."""
    acc = Tnum.const(0)
    while a.value or a.mask:
        if a.value & 1:
            acc = acc.add(b)
        elif a.mask & 1:
            acc = acc.union(acc.add(b))
        a, b = a.rshift(1), b.lshift(1)
    return acc


@SETTINGS
@given(tnum_members(), tnum_members())
def test_tnum_mul_stops_early_with_the_kernels_result(a, b):
    (ta, _), (tb, _) = a, b
    assert ta.mul(tb) == kernel_tnum_mul(ta, tb)
    assert tb.mul(ta) == kernel_tnum_mul(tb, ta)


@SETTINGS
@given(u64s, u64s, st.integers(0, U64))
def test_tnum_range_holds_its_range(a, b, pick):
    lo, hi = min(a, b), max(a, b)
    t = Tnum.range(lo, hi)
    for x in (lo, hi, lo + pick % (hi - lo + 1)):
        assert t.member(x)


@SETTINGS
@given(st.integers(0, 0xFF), st.integers(0, 0xFF), st.integers(0, U64 >> 8), st.integers(0, 300))
def test_tnum_step_is_the_next_member(mask, value, high, z):
    value &= ~mask
    t = Tnum((high << 8) | value, mask)
    z = (high << 8) | z if z < 256 else z
    members_ = sorted((high << 8) | value | (s & mask) for s in range(256) if s & ~mask == 0)
    nxt = t.step(z)
    later = [m for m in members_ if m > z]
    expect = later[0] if later else members_[-1]
    if z < members_[0]:
        expect = members_[0]
    assert nxt == expect


def test_tnum_text_and_known_results():
    assert str(Tnum(0, 0xFF)) == "(0x0; 0xff)"
    assert str(Tnum.const(5)) == "5"
    assert str(Tnum.const(0x10000)) == "0x10000"
    assert Tnum.range(0, 255) == Tnum(0, 0xFF)
    assert Tnum.range(16, 31) == Tnum(16, 0xF)
    assert Tnum.range(0, U64).is_unknown()
    assert Tnum.const(3).mul(Tnum(1, 2)) == Tnum(1, 0xE)  # 3 * {1, 3}
    assert Tnum(0, 0xFF).contains(Tnum(0x10, 0x0F))
    assert not Tnum(0, 0x0F).contains(Tnum(0x10, 0))
    assert Tnum(0, 0xFC).is_aligned(4) and not Tnum(0, 0xFE).is_aligned(4)


# --- scalar soundness ------------------------------------------------------


@SETTINGS
@given(members(), st.sampled_from(BINARY), st.booleans(), st.data())
def test_alu_is_sound(a, op, is64, data):
    (sa, xs) = a
    if op in (LSH, RSH, ARSH):
        sb, ys = data.draw(shift_amounts(is64))
    else:
        sb, ys = data.draw(members())
    for x in xs:
        assert sa.member(x)
    result = sa.alu(op, sb, is64=is64)
    for x in xs[:3]:
        for y in ys[:3]:
            got = concrete_alu(op, x, y, is64)
            assert result.member(got), (sa, sb, x, y, got, result)
            if op in (DIV, MOD):  # the signed forms (off=1) are untracked too
                assert result.member(concrete_alu(op, x, y, is64, off=1))


@SETTINGS
@given(members(), members(), st.sampled_from([ADD, SUB]))
def test_pointer_offsets_are_sound(a, b, op):
    (sa, xs), (sb, ys) = a, b
    result = sa.ptr_alu(op, sb)
    for x in xs[:3]:
        for y in ys[:3]:
            assert result.member(concrete_alu(op, x, y, True)), (sa, sb, x, y, result)


@SETTINGS
@given(members(), st.sampled_from(JUMPS), st.booleans(), st.data())
def test_branches_are_sound(a, op, is32, data):
    sa, xs = a
    sb, ys = data.draw(members(near=tuple(xs)))
    taken_pred = Scalar.branch_taken(op, sa, sb, is32=is32)
    for x in xs[:3]:
        for y in ys[:3]:
            taken = concrete_jump(op, x, y, is32)
            if taken_pred != -1:
                assert taken_pred == int(taken), (op, sa, sb, x, y)
            refined = Scalar.refine(op, sa, sb, is32=is32, taken=taken)
            assert refined is not None, (op, sa, sb, x, y, taken)
            ra, rb = refined
            assert ra.member(x) and rb.member(y), (op, sa, sb, x, y, taken, ra, rb)


@SETTINGS
@given(members(), st.booleans(), st.sampled_from([16, 32, 64]), st.booleans())
def test_neg_and_byte_swaps_are_sound(a, is64, bits, to_be):
    sa, xs = a
    neg = sa.neg(is64)
    cls = ALU64 if is64 else ALU
    swapped = sa.endian(bits, to_be=to_be and not is64, is64=is64)
    code = (ALU64 | 0xD0) if is64 else (ALU | 0xD0 | (X if to_be else 0))
    for x in xs:
        assert neg.member(run((MOV_R0_R1, Instruction(cls | NEG, 0, 0, 0, 0), EXIT), x))
        assert swapped.member(run((MOV_R0_R1, Instruction(code, 0, 0, 0, bits), EXIT), x))


@SETTINGS
@given(members(), st.sampled_from([(True, 8), (True, 16), (True, 32), (False, 8), (False, 16)]))
def test_sign_extending_moves_are_sound(a, form):
    sa, xs = a
    is64, bits = form
    result = sa.movsx(bits, is64)
    cls = ALU64 if is64 else ALU
    for x in xs:
        assert result.member(run((Instruction(cls | X | MOV, 0, 1, bits, 0), EXIT), x))


@SETTINGS
@given(members(), st.sampled_from([1, 2, 4, 8]))
def test_width_changes_are_sound(a, size):
    sa, xs = a
    keep = (1 << (8 * size)) - 1
    for x in xs:
        assert sa.truncate(size).member(x & keep)
        if size < 8:
            sext = x & keep
            sext = sext - (1 << (8 * size)) if sext >> (8 * size - 1) else sext
            assert sa.sign_extend_load(size).member(sext & U64)
        assert sa.zext32().member(x & U32)
        assert sa.synced().member(x)


@SETTINGS
@given(members(), st.integers(-(1 << 31), (1 << 31) - 1))
def test_add_delta_is_sound(a, delta):
    sa, xs = a
    moved = sa.add_delta(delta)
    for x in xs:
        assert moved.member((x + delta) & U64)


@SETTINGS
@given(members(), st.sampled_from([AND, OR]), st.integers(-(1 << 31), (1 << 31) - 1))
def test_sign_mask_split_covers_both_values(a, op, imm):
    sa, xs = a
    split = sa.sign_mask_split(op, Scalar.const(imm))
    if split is None:
        return
    minus, zero = split
    for x in xs:
        assert minus.member(x) or zero.member(x)


@SETTINGS
@given(members(), members())
def test_within_means_every_member_is_covered(a, b):
    (sa, xs), (sb, _) = a, b
    if sa.within(sb):
        for x in xs:
            assert sb.member(x)
    assert sa.within(sa)
    assert sa.within(Scalar.unknown())


STEP = st.one_of(
    st.tuples(st.just("alu"), st.sampled_from(BINARY + [NEG]), st.booleans(),
              st.one_of(st.integers(0, 31), u64s)),
    st.tuples(st.just("jmp"), st.sampled_from(JUMPS), st.booleans(), u64s),
    st.tuples(st.just("movsx"), st.sampled_from([(True, 8), (True, 16), (True, 32), (False, 8),
                                                 (False, 16)]), st.booleans(), st.just(0)),
    st.tuples(st.just("load"), st.sampled_from([1, 2, 4]), st.booleans(), st.just(0)),
)


@SETTINGS
@given(members(), members(), st.lists(STEP, min_size=1, max_size=8))
def test_chains_of_operations_stay_sound(a, b, steps):
    """Several instructions in a row: the abstract value keeps holding the concrete one."""
    (sa, xs), (sb, ys) = a, b
    x, y = xs[0], ys[0]
    for kind, op, flag, imm in steps:
        if kind == "alu":
            use_reg = imm > 31
            src, v = (sb, y) if use_reg else (Scalar.const(imm), imm)
            if op in (LSH, RSH, ARSH) and use_reg:
                src, v = Scalar.const(imm % 32), imm % 32
            split = sa.sign_mask_split(op, src)
            if split is not None:
                sa = split[0] if split[0].member(x) else split[1]
                assert sa.member(x)
            sa, x = sa.alu(op, src, is64=flag), concrete_alu(op, x, v, flag)
        elif kind == "jmp":
            src, v = (sb, y) if imm & 1 else (Scalar.const(imm & 0xFFFF), imm & 0xFFFF)
            outcome = concrete_jump(op, x, v, flag)
            sa = Scalar.refine(op, sa, src, is32=flag, taken=outcome)[0]
        elif kind == "movsx":
            is64, bits = op
            cls = ALU64 if is64 else ALU
            sa = sa.movsx(bits, is64)
            x = run((Instruction(cls | X | MOV, 0, 1, bits, 0), EXIT), x)
        else:
            low = x & ((1 << (8 * op)) - 1)
            if flag:
                sa, x = sa.sign_extend_load(op), (low - ((low >> (8 * op - 1)) << (8 * op))) & U64
            else:
                sa, x = sa.truncate(op), low
        assert sa.member(x), (kind, op, flag, imm, sa, x)


# --- precision on known kernel results --------------------------------------


def fmt(s: Scalar) -> str:
    return s.format()


def test_and_with_a_mask_bounds_the_value():
    r = Scalar.unknown().alu(AND, Scalar.const(0xFF), is64=True)
    assert (r.umin, r.umax, r.smin, r.smax) == (0, 255, 0, 255)
    assert r.var_off == Tnum(0, 0xFF)
    assert fmt(r) == "scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"


@pytest.mark.parametrize(("op", "x", "y", "is64", "want"), [
    (ADD, 5, 7, True, 12),
    (SUB, 5, 7, True, -2 & U64),
    (SUB, 5, 7, False, -2 & U32),
    (MUL, 1 << 40, 3, True, 3 << 40),
    (OR, 0xF0, 0x0F, True, 0xFF),
    (AND, 0xF0, 0x3C, False, 0x30),
    (XOR, U64, 1, True, U64 - 1),
    (LSH, 1, 63, True, 1 << 63),
    (RSH, U64, 60, True, 0xF),
    (ARSH, 1 << 63, 62, True, U64 - 1),
    (ARSH, 0x80000000, 31, False, U32),
])
def test_constants_fold(op, x, y, is64, want):
    r = Scalar.const(x).alu(op, Scalar.const(y), is64=is64)
    assert r.is_const() and r.value == want
    assert r == Scalar.const(want)


@pytest.mark.parametrize("is64", [True, False], ids=["alu64", "alu32"])
@pytest.mark.parametrize("op", sorted(_FOLD))
@settings(max_examples=100, deadline=None)
@given(x=u64s, y=st.one_of(st.integers(0, 31), u64s))
@example(x=1 << 32, y=1)
@example(x=0xFFFFFFFF80000000, y=4)
def test_constant_folding_is_what_the_bounds_arithmetic_gives(op, is64, x, y):
    """alu() folds two constants directly; the kernel's full computation must agree."""
    a, b = Scalar.const(x), Scalar.const(y)
    if _safe_operands(op, b, is64):
        assert a.alu(op, b, is64=is64) == _alu_bounds(a, op, b, is64)


def test_untracked_operations_give_unknown():
    five = Scalar.const(5)
    assert five.alu(DIV, Scalar.const(2), is64=True) == Scalar.unknown()
    assert five.alu(MOD, Scalar.const(2), is64=False) == Scalar.unknown()
    byte = Scalar.unknown().alu(AND, Scalar.const(7), is64=True)
    assert five.alu(LSH, byte, is64=True) == Scalar.unknown()
    assert five.alu(RSH, Scalar.const(64), is64=True) == Scalar.unknown()


def test_compare_refines_both_branches():
    byte = Scalar.unknown().alu(AND, Scalar.const(0xFF), is64=True)
    ten = Scalar.const(10)
    assert Scalar.branch_taken(JGT, byte, ten, is32=False) == -1
    (taken, _), (fall, _) = (Scalar.refine(JGT, byte, ten, is32=False, taken=t) for t in (1, 0))
    assert (taken.umin, taken.umax) == (11, 255)
    assert (fall.umin, fall.umax, fall.var_off) == (0, 10, Tnum(0, 0xF))
    assert Scalar.branch_taken(JGT, byte, Scalar.const(255), is32=False) == 0
    assert Scalar.branch_taken(JLE, byte, Scalar.const(255), is32=False) == 1
    assert Scalar.branch_taken(JSET, byte, Scalar.const(0x100), is32=False) == 0
    assert Scalar.branch_taken(JNE, Scalar.const(1 << 32), Scalar.const(0), is32=True) == 0


def test_refine_of_an_impossible_branch_is_none():
    byte = Scalar.unknown().alu(AND, Scalar.const(0xFF), is64=True)
    assert Scalar.refine(JGT, byte, Scalar.const(1000), is32=True, taken=True) is None
    # like the kernel, some dead branches still sync into sane-looking bounds
    assert Scalar.refine(JSGT, byte, Scalar.const(1000), is32=False, taken=True) is not None


def test_shift_pair_sign_extends_a_subregister():
    w = Scalar.unknown().alu(AND, Scalar.const(0xFF), is64=False).alu(
        ADD, Scalar.const(-10), is64=False)
    r = w.alu(LSH, Scalar.const(32), is64=True).alu(ARSH, Scalar.const(32), is64=True)
    assert (r.smin, r.smax) == (s32(0xFFFFFFF6), 245)


def test_format_merges_equal_bounds_and_prints_kernel_numbers():
    assert Scalar.unknown().format() == "scalar()"
    assert Scalar.const(-1).format() == "-1"
    assert Scalar.const(1000000).format() == "0xf4240"
    assert Scalar.const(-100000).format() == "0xfffffffffffe7960"
    byte = Scalar.unknown().alu(AND, Scalar.const(0xFF), is64=True)
    assert byte.format(id=3) == \
        "scalar(id=3,smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"
    assert byte.format(id=3, delta=4, precise=True).startswith("Pscalar(id=3+4,smin=")
    assert Scalar.unknown().zext32().format() == \
        "scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff))"


def test_pointer_offsets_follow_the_pointer_rules():
    byte = Scalar.unknown().truncate(1)
    added = Scalar.const(0).ptr_alu(ADD, byte)
    assert (added.umin, added.umax, added.var_off) == (0, 255, Tnum(0, 0xFF))
    # unlike scalar SUB, a possible borrow loses the unsigned bounds at once
    taken = Scalar.const(0).ptr_alu(SUB, byte)
    assert (taken.smin, taken.smax, taken.umin, taken.umax) == (-255, 0, 0, U64)
    with pytest.raises(ValueError, match="add and subtract"):
        Scalar.const(0).ptr_alu(MUL, byte)


def test_a_linked_copy_follows_its_narrowed_register():
    # r0 &= 255; r1 = r0; r1 += 4; if r0 < 10 goto ...: Linux prints r1 on the fall-through as
    r0 = Scalar.unknown().alu(AND, Scalar.const(0xFF), is64=True)
    fall, _ = Scalar.refine(JLT, r0, Scalar.const(10), is32=False, taken=False)
    assert fall.add_delta(4).format() == \
        "scalar(smin=umin=smin32=umin32=14,smax=umax=smax32=umax32=259,var_off=(0x0; 0x1ff))"
    assert fall.add_delta(-10).umin == 0 and fall.add_delta(-11).umin == 0


def test_from_range_rejects_an_empty_range():
    with pytest.raises(ValueError, match="empty"):
        Scalar.from_range(5, 4)
    r = Scalar.from_range(-3, 3, signed=True)
    assert (r.smin, r.smax, r.s32_min, r.s32_max) == (-3, 3, -3, 3)


# --- the kernel's own log text ----------------------------------------------
#
# Each recorded program gets unknown scalars from bpf_get_prandom_u32 (helper
# 7) and works on them with ALU instructions and conditional jumps to an exit
# block.  The replay walks the kernel's level-2 log in its own order (paths
# popped last-in first-out, pruned paths ending at "safe"), runs each logged
# instruction through Scalar, and compares every scalar register the kernel
# prints.  Link ids and precision marks belong to the core, so they are
# stripped from the kernel's text first.
#
# The logs are kernel facts: under the program's name, {"asm": the program, "log": the
# level-2 log lines from the initial state on}.  Where kernels differ (sign-extending
# moves: decisions.json) pybpf follows the recorded kernel.

FACTS = kernel_plugin.facts_dir(__file__) / "verifier_scalar.json"

_FROM = re.compile(r"^from (\d+) to (\d+): (.*)$")
_SAFE = re.compile(r"^(\d+): safe$")
_INSN = re.compile(r"^(\d+): \(([0-9a-f]{2})\) ([^;]*?)\s*(?:; (.*))?$")
_REG = re.compile(r"R(\d+)(?:_[rw]+)?=(.*?)(?=\s+R\d+(?:_[rw]+)?=|\s+fp-?\d+=|$)")
_ID = re.compile(r"id=\d+(?:[+-]\d+)?,?")


def kernel_scalar_text(text: str) -> str | None:
    """The kernel's text of a scalar without link ids and precision marks, None for a pointer."""
    text = text.removeprefix("P")
    if not (text.startswith("scalar(") or re.fullmatch(r"-?\d+|0x[0-9a-f]+", text)):
        return None
    return _ID.sub("", text).replace(",)", ")")


_PTR_ITEMS = ("id=", "off=", "r=", "ref_obj_id=", "map=", "ks=", "vs=", "sz=")


def kernel_pointer_ranges(text: str) -> str | None:
    """The variable-offset part of a pointer the kernel prints (``imm=``, ranges, var_off)."""
    m = re.fullmatch(r"P?[a-z_]+\((.*)\)", text)
    if m is None or text.startswith(("scalar(", "ctx(")):
        return None
    items = [item for item in m.group(1).split(",") if item and not item.startswith(_PTR_ITEMS)]
    return ",".join(items)


@dataclass(frozen=True)
class Ptr:
    """A packet pointer in the replay: only its variable part is the scalar domain's."""

    kind: str
    var: Scalar

    def ranges(self) -> str:
        if self.var.is_const():
            return f"imm={self.var.format()}" if self.var.value else ""
        return ",".join(self.var.range_fields())


class Replay:
    """Runs a program's instructions through Scalar in the order the kernel's log visits them."""

    def __init__(self, insns: list[Instruction]) -> None:
        self.insns = insns
        self.pushed: list[tuple[int, int, dict]] = []
        self.regs: dict | None = None
        self.pc = 0
        self.mismatches: list[str] = []
        self.compared = 0
        self.bugs: list[str] = []  # "verifier bug" lines the kernel is about to print

    def compare(self, where: str, printed: str) -> None:
        assert self.regs is not None, where
        for m in _REG.finditer(printed):
            reg, text = int(m.group(1)), m.group(2).strip()
            want = kernel_scalar_text(text)
            mine = self.regs.get(reg)
            if isinstance(mine, Ptr):
                self.compared += 1
                if kernel_pointer_ranges(text) != mine.ranges():
                    self.mismatches.append(f"{where} R{reg}: kernel {text} pybpf {mine.ranges()}")
                continue
            if want is None and not isinstance(mine, Scalar):
                continue
            got = mine.format() if isinstance(mine, Scalar) else repr(mine)
            self.compared += 1
            if got != want:
                self.mismatches.append(f"{where} R{reg}: kernel {want} pybpf {got}")

    def feed(self, line: str) -> None:
        if m := _FROM.match(line):
            src, dst, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            assert self.pushed, f"kernel pops {src}->{dst}, nothing pushed"
            p_src, p_dst, regs = self.pushed.pop()
            assert (p_src, p_dst) == (src, dst), (line, p_src, p_dst)
            self.regs, self.pc = (None, None) if rest == "safe" else (regs, dst)
            if self.regs is not None:
                self.compare(f"from {src} to {dst}", rest)
        elif line.startswith("verifier bug:"):
            mine = self.bugs.pop(0) if self.bugs else "nothing"
            self.compared += 1
            if mine != line:
                self.mismatches.append(f"kernel {line!r} pybpf {mine!r}")
        elif _SAFE.match(line):
            self.regs = None
        elif m := _INSN.match(line):
            pc = int(m.group(1))
            assert self.regs is not None and pc == self.pc, (line, self.pc)
            self.step(self.insns[pc])
            if m.group(4) and self.regs is not None:
                self.compare(f"{pc}: {m.group(3)}", m.group(4))
        elif line.startswith("0: R1=") and self.regs is None and not self.pushed:
            self.regs, self.pc = {1: "ctx", 10: "fp"}, 0

    def step(self, insn: Instruction) -> None:
        regs, pc = self.regs, self.pc
        cls, op, x = insn.code & 7, insn.code & 0xF0, insn.code & X
        if cls in (JMP, JMP32):
            if op == 0x80:  # call: a helper returning an unknown scalar
                for r in range(1, 6):
                    regs.pop(r, None)
                regs[0] = Scalar.unknown()
                self.pc = pc + 1
            elif op == 0x90:
                self.regs = None
            elif op == 0x00:
                self.pc = pc + 1 + insn.off
            else:
                self.branch(insn, cls == JMP32)
            return
        if cls == LDX:
            self.load(insn)
            return
        is64 = cls == ALU64
        dst = regs.get(insn.dst_reg)
        src = regs[insn.src_reg] if x else Scalar.const(insn.imm)
        if op == MOV and not isinstance(src, Scalar):
            regs[insn.dst_reg] = src  # a pointer copied
            self.pc = pc + 1
            return
        if isinstance(dst, Ptr) and op != MOV:
            if not src.is_const():  # a constant goes into the fixed offset
                regs[insn.dst_reg] = Ptr(dst.kind, dst.var.ptr_alu(op, src))
            self.pc = pc + 1
            return
        if op == MOV:
            if not x:
                result = Scalar.const(insn.imm if is64 else insn.imm & U32)
            elif insn.off:
                result = src.movsx(insn.off, is64)
            else:
                result = src if is64 else src.zext32()
        elif op == NEG:
            result = dst.neg(is64)
        elif op == 0xD0:
            result = dst.endian(insn.imm, to_be=bool(x), is64=is64)
        else:
            split = dst.sign_mask_split(op, src)
            if split is not None:
                self.pushed.append((pc, pc, {**regs, insn.dst_reg: split[1]}))
                dst = split[0]
            result = dst.alu(op, src, is64=is64)
        regs[insn.dst_reg] = result
        self.pc = pc + 1

    def load(self, insn: Instruction) -> None:
        """A load from the packet: an unknown value of the access size (zero- or sign-extended)."""
        size = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}[insn.code & 0x18]
        if self.regs[insn.src_reg] == "ctx":  # xdp_md->data, data_end
            kind = "pkt" if insn.off == 0 else "pkt_end"
            self.regs[insn.dst_reg] = Ptr(kind, Scalar.const(0))
        elif insn.code & 0xE0 == 0x80:
            self.regs[insn.dst_reg] = Scalar.unknown().sign_extend_load(size)
        else:
            self.regs[insn.dst_reg] = Scalar.unknown().truncate(size)
        self.pc += 1

    def branch(self, insn: Instruction, is32: bool) -> None:
        regs, pc = self.regs, self.pc
        op, x = insn.code & 0xF0, insn.code & X
        a = regs[insn.dst_reg]
        b = regs[insn.src_reg] if x else Scalar.const(insn.imm)
        target = pc + 1 + insn.off
        if not (isinstance(a, Scalar) and isinstance(b, Scalar)):
            self.pushed.append((pc, target, dict(regs)))  # packet pointers: both ways
            self.pc = pc + 1
            return
        taken = Scalar.branch_taken(op, a, b, is32=is32)
        if taken != -1:
            self.pc = target if taken else pc + 1
            return
        sides = []
        for outcome in (True, False):
            ra, rb, bugs = Scalar.refine_as_kernel(op, a, b, is32=is32, taken=outcome)
            self.bugs += bugs
            side = {**regs, insn.dst_reg: ra}
            if x:
                side[insn.src_reg] = rb
            sides.append(side)
        self.pushed.append((pc, target, sides[0]))
        self.regs, self.pc = sides[1], pc + 1


def replay(asm_text: str, log: list[str]) -> Replay:
    r = Replay(llvm.assemble(asm_text))
    for line in log:
        r.feed(line)
    return r


def recorded(name: str) -> dict:
    """The recorded fact of program ``name`` ({"asm", "log"}), without asking the kernel."""
    got = kernel_plugin.fact_file(FACTS).get(name)
    assert got is not None, f"{name} was never recorded: run with --record-kernel (root)"
    return got[0]


def kernel_run(asm_text: str) -> dict:
    """The running kernel's log of ``asm_text`` (a kernel-facts probe)."""
    return {"asm": asm_text, "log": kernel_log(llvm.assemble(asm_text))}


def replay_recorded(kernel_facts, programs: dict[str, str]) -> tuple[int, list[str]]:
    """Each program's recorded log replayed: (registers compared, mismatches)."""
    total, mismatches = 0, []
    for name, asm_text in programs.items():
        fact = kernel_facts.fact(name, functools.partial(kernel_run, asm_text))
        # --record-kernel keeps these facts (decisions.json): delete a stale one to re-record it
        assert fact["asm"] == asm_text, f"{name}: not the program {FACTS.name} recorded"
        r = replay(asm_text, fact["log"])
        total += r.compared
        mismatches += [f"{name}: {m}" for m in r.mismatches]
    return total, mismatches


def test_golden_logs_cover_the_domain():
    logs = [recorded(name)["log"] for name in golden_programs()]
    assert len(logs) >= 100
    text = "\n".join(line for log in logs for line in log)
    for mnemonic in ("s>>=", "<<=", ">>=", "*=", "/=", "%=", "&=", "|=", "^=", "= -", "be16",
                     "bswap", "(s8)", "(s16)", "(s32)", "if w", " & ", " s< ", " s>= ", "!="):
        assert mnemonic in text, mnemonic


def test_kernel_log_text_is_reproduced(kernel_facts):
    """Every scalar register in the recorded kernel logs prints the same from Scalar."""
    total, mismatches = replay_recorded(kernel_facts, golden_programs())
    assert total > 2000
    assert not mismatches, "\n".join(mismatches[:20]) + f"\n({len(mismatches)} of {total})"


def test_a_wrong_bound_is_caught_by_the_replay():
    fact = recorded("and_mask_then_compare")
    log = [line.replace("umax32=255", "umax32=254") for line in fact["log"]]
    assert replay(fact["asm"], log).mismatches


def test_programs_pybpf_was_not_tuned_on_reproduce_the_kernel_log(kernel_facts):
    """80 more random programs (another seed), recorded like the golden ones."""
    total, mismatches = replay_recorded(kernel_facts, more_programs())
    assert total > 1000
    assert not mismatches, "\n".join(mismatches[:20])


# --- the programs ---------------------------------------------------------------------------

CURATED = {
    "and_mask_then_compare": "call 7\nr0 &= 255\nif r0 > 10 goto +1\nr0 += 5\nr0 = 0\nexit",
    "add_const_and_zext": "call 7\nr0 &= 255\nr0 += 5\nw0 = w0\nr0 = 0\nexit",
    "shift_pair_sign_extends": "call 7\nr6 = r0\nr6 &= 255\nr6 += -10\nr6 <<= 32\n"
                               "r6 s>>= 32\nw6 += -10\nr0 = 0\nexit",
    "split_or_64": "call 7\nr0 <<= 63\nr0 s>>= 63\nr0 |= 8\nr0 = r0\nexit",
    "split_and_32": "call 7\nw0 <<= 31\nw0 s>>= 31\nr0 &= 6\nexit",
    "div_mod_untracked": "call 7\nr6 = r0\nr6 &= 1023\nr6 /= 3\nr7 = r0\nw7 %= 7\nr0 = 0\nexit",
    "constants": "call 7\nr6 = -1\nr7 = 1000000\nr8 = -100000\nw6 = -1\nr7 = 32767\n"
                 "r8 = -32768\nr6 = 65535\nr7 = 65536\nr0 = 0\nexit",
    "byte_swaps": "call 7\nr0 = be16 r0\nr6 = r0\nr6 = le32 r6\nr6 = bswap16 r6\nr7 = r0\n"
                  "r7 = be64 r7\nr0 = 0\nexit",
    "sign_extensions": "call 7\nr6 = r0\nr6 &= 511\nr6 = (s8)r6\nr7 = r0\nr7 = (s16)r7\n"
                       "r8 = r0\nr8 &= 127\nr8 = (s32)r8\nw0 = (s8)w0\nr0 = 0\nexit",
    "jmp32_refines_subregister": "call 7\nif w0 > 100 goto +3\nif w0 s< 5 goto +2\n"
                                 "if w0 == 50 goto +1\nr0 += 1\nr0 = 0\nexit",
    "signed_compares": "call 7\nif r0 s> 1000 goto +3\nif r0 s< -1000 goto +2\nr0 *= 3\n"
                       "r0 -= 7\nr0 = 0\nexit",
    "jset": "call 7\nr0 &= 0xff\nif r0 & 0x10 goto +1\nif r0 & 0x3 goto +1\nr0 |= 1\n"
            "r0 = 0\nexit",
    "dead_branch_invariants": "call 7\nr6 = r0\ncall 7\nr7 = r0\ncall 7\nr8 = r0\ncall 7\n"
                              "w8 *= 15\nr7 <<= 45\nif r8 s>= r7 goto +3\nif r7 > r8 goto +2\n"
                              "r7 += 1\nr8 += 1\nr0 = 0\nexit",
    "packet_loads": "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 8\n"
                    "if r4 > r3 goto +11\nr5 = *(u8 *)(r2 + 0)\nr6 = *(u16 *)(r2 + 2)\n"
                    "r7 = *(u32 *)(r2 + 4)\nr8 = *(s8 *)(r2 + 1)\nr9 = *(s16 *)(r2 + 2)\n"
                    "r0 = *(s32 *)(r2 + 4)\nr5 += r6\nr8 = (s8)r8\nw9 += 3\nr0 *= r8\n"
                    "r0 = *(u64 *)(r2 + 0)\nr0 = 0\nexit",
    "packet_pointer_offsets": "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\n"
                              "r4 += 8\nif r4 > r3 goto +7\nr6 = *(u8 *)(r2 + 0)\n"
                              "r7 = *(s16 *)(r2 + 2)\nr5 = r2\nr5 += r6\nr5 -= r7\n"
                              "r5 += 4\nif r5 > r3 goto +0\nr0 = 0\nexit",
    "shift_by_register": "call 7\nr6 = r0\nr6 &= 7\nr7 = 1\nr7 <<= r6\nr8 = 0x80\nr8 >>= r6\n"
                         "r0 = 0\nexit",
}


def kernel_log(insns: list[Instruction]) -> list[str]:
    """The level-2 log lines from the initial state on, without the summary."""
    prog = linux.prog_load(insns, prog_type=linux.XDP, log_level=2)
    with prog:
        lines = prog.log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("0: R1="))
    return [line for line in lines[start:]
            if line and not line.startswith(("processed ", "mark_precise:"))]


PACKET_HEAD = ["r2 = *(u32 *)(r1 + 0)", "r3 = *(u32 *)(r1 + 4)", "r4 = r2", "r4 += 8",
               "if r4 > r3 goto EXIT"]


def random_program(rng, packet: bool = False) -> str:
    """Straight-line ALU work on scalars with forward exits (no register copies).

    The scalars are four unknown helper results, or with ``packet`` five loads
    of random widths and signedness from a checked XDP packet (tight ranges).
    """
    pool = [0, 6, 7, 8, 9] if packet else [0, 6, 7, 8]
    imms = [0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 100, 255, 0xFFFF, 0x7FFFFFFF, -1, -2, -8,
            -256, 1000, -100000]
    body = []
    for _ in range(rng.randint(10, 18)):
        kind = rng.random()
        d = rng.choice(pool)
        w = rng.choice(("r", "w"))
        bits = 64 if w == "r" else 32
        if kind < 0.35:
            op = rng.choice(["+=", "-=", "*=", "|=", "&=", "^=", "<<=", ">>=", "s>>=", "/=", "%="])
            if op in ("<<=", ">>=", "s>>="):
                imm = rng.randrange(bits)
            else:
                imm = rng.choice(imms + [rng.randint(-(1 << 31), (1 << 31) - 1)])
                if op in ("/=", "%=") and imm == 0:
                    imm = 3
            body.append(f"{w}{d} {op} {imm}")
        elif kind < 0.55:
            op = rng.choice(["+=", "-=", "*=", "|=", "&=", "^=", "<<=", ">>=", "s>>=", "/=", "%="])
            body.append(f"{w}{d} {op} {w}{rng.choice(pool)}")
        elif kind < 0.6:
            body.append(f"{w}{d} = -{w}{d}")
        elif kind < 0.65:
            swap = rng.choice(["be16", "le32", "bswap32", "be64", "le16"])
            body.append(f"r{d} = {swap} r{d}")
        elif kind < 0.7:
            size = rng.choice([8, 16, 32]) if w == "r" else rng.choice([8, 16])
            body.append(f"{w}{d} = (s{size}){w}{d}")
        elif kind < 0.75:
            body.append(f"{w}{d} = {rng.choice(imms)}")
        elif kind < 0.78:
            body.append(f"w{d} = w{d}")
        else:
            op = rng.choice(["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"])
            s = rng.choice([x for x in pool if x != d])
            rhs = f"{w}{s}" if rng.random() < 0.4 else str(rng.choice(imms))
            body.append(f"if {w}{d} {op} {rhs} goto EXIT")
    if packet:
        head = list(PACKET_HEAD)
        for r in pool:
            size = rng.choice([1, 2, 4, 8])
            kind = rng.choice(["u", "s"]) if size < 8 else "u"
            head.append(f"r{r} = *({kind}{size * 8} *)(r2 + {rng.randrange(9 - size)})")
            if size <= 2 and rng.random() < 0.5:
                # a packet pointer with a variable offset, checked against the end
                head += ["r5 = r2", f"r5 {rng.choice(['+=', '+=', '-='])} r{r}",
                         f"r5 += {rng.randrange(1, 9)}", "if r5 > r3 goto EXIT"]
    else:
        head = ["call 7", "r6 = r0", "call 7", "r7 = r0", "call 7", "r8 = r0", "call 7"]
    lines = head + body + ["r0 = 0", "exit"]
    exit_at = len(lines) - 2
    out = []
    for i, line in enumerate(lines):
        out.append(line.replace("goto EXIT", f"goto {exit_at - i - 1:+d}"))
    return "\n".join(out)


@functools.cache
def golden_programs() -> dict[str, str]:
    """The curated programs, then 110 random ones and 70 on a packet (seed 6)."""
    rng = random.Random(6)
    programs = dict(CURATED)
    for i in range(110):
        programs[f"random_{i:03d}"] = random_program(rng)
    for i in range(70):
        programs[f"packet_{i:03d}"] = random_program(rng, packet=True)
    return programs


@functools.cache
def more_programs() -> dict[str, str]:
    """80 random programs of another seed, half of them on a packet."""
    rng = random.Random(2026)
    return {f"extra_{i:03d}": random_program(rng, packet=i % 2 == 1) for i in range(80)}


def bench(count: int = 100_000, seed: int = 1) -> None:
    """Time a verifier-like mix of scalar operations (ALU on ranges and constants, branches)."""
    import time

    rng = random.Random(seed)
    pool = [Scalar.unknown(), Scalar.const(5), Scalar.unknown().truncate(1),
            Scalar.from_range(-100, 100, signed=True), Scalar.unknown().zext32()]
    work = []
    for _ in range(count):
        a = rng.choice(pool)
        if rng.random() < 0.6:
            op = rng.choice([ADD, SUB, MUL, OR, AND, XOR, LSH, RSH, ARSH])
            b = (Scalar.const(rng.randrange(32)) if op in (LSH, RSH, ARSH)
                 else rng.choice([*pool, Scalar.const(rng.randrange(-1000, 1000))]))
            work.append((op, a, b, rng.random() < 0.5))
        else:
            work.append((-rng.choice(JUMPS), a, Scalar.const(rng.randrange(-50, 300)),
                         rng.random() < 0.3))
    start = time.perf_counter()
    for op, a, b, flag in work:
        if op >= 0:
            a.alu(op, b, is64=flag)
        elif Scalar.branch_taken(-op, a, b, is32=flag) == -1:
            Scalar.refine(-op, a, b, is32=flag, taken=True)
            Scalar.refine(-op, a, b, is32=flag, taken=False)
    took = time.perf_counter() - start
    print(f"{count} operations in {took:.2f} s: {took / count * 1e6:.1f} us each")


if __name__ == "__main__":
    import sys

    if "--bench" in sys.argv:
        bench()
