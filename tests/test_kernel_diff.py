"""The interpreter against the Linux kernel (XDP BPF_PROG_TEST_RUN).

The kernel's answers are recorded in ``kernel_facts/kernel_diff.json`` (and the live
kernel is asked too, for drift, where bpf(2) works): for the random programs of
:mod:`pybpf.testing.randprog` the return value, which is the epilogue's hash of every
register and stack slot; for the hand-written edge cases below the return value and
the words themselves.  The edge cases assert three things: the kernel verifier
accepted them, the kernel and the interpreter agree bit for bit, and the interpreter
gives the value RFC 9669 defines.

Kernel vs RFC 9669, as measured on Linux 6.18 x86-64 (JIT on):

* Semantics agree on every edge case here: division by zero (dst = 0),
  modulo by zero (dst unchanged; its low 32 bits zero-extended for ALU),
  ``INT_MIN s/ -1 = INT_MIN`` and ``INT_MIN s% -1 = 0`` in 32 and 64 bits,
  K and X, signed modulo taking the dividend's sign, register shift amounts
  masked to 63 / 31, movsx, bswap/le/be, and zero-extension of the 32-bit
  atomic fetch / xchg / cmpxchg results (r0 included).
* Validity differs: the RFC defines ``div``/``mod`` by an immediate 0 and
  immediate shifts >= the operand width; Linux's verifier rejects both
  (``div by zero``, ``invalid shift``).  Neither side is wrong -- the RFC
  leaves program verification to the implementation.
* One real kernel bug, :func:`test_kernel_bug_atomic_fetch_precision`: the
  verifier's precision backtracking does not follow the value an atomic
  *fetch* loads from a stack slot, so a later state is wrongly pruned and
  code that does run is removed as dead.  The interpreter (and the RFC) are
  right; that test xfails while the recorded kernel has the bug.
"""

from __future__ import annotations

import pytest

from pybpf.isa import Alu, AtomicOp, Class, Instruction, Jmp, Size
from pybpf.kernel import linux
from pybpf.testing import kernel_diff, randprog
from pybpf.testing.randprog import (
    Op,
    alu32,
    alu64,
    assemble,
    atomic,
    jump,
    ldx,
    mov64,
    packet_words,
    slot_offset,
    stx,
    zero_init,
)

M64 = (1 << 64) - 1
FP = 10
S0, S1, S2, S3 = (slot_offset(j) for j in range(4))


def answer(run: kernel_diff.Run) -> dict:
    """A run as a kernel fact: the return value and the 16 words the epilogue wrote."""
    return {"retval": run.retval, "words": packet_words(run.data)}


def kernel_run(program: randprog.RandomProgram) -> kernel_diff.Run:
    """The live kernel's run of ``program`` (for probes; KernelError when refused)."""
    return kernel_diff.run_kernel(program, kernel_diff.packet_for(program.seed))


def interp_run(program: randprog.RandomProgram) -> kernel_diff.Run:
    """The interpreter's run, which must report its own words in its return value."""
    run = kernel_diff.run_interp(program, kernel_diff.packet_for(program.seed))
    assert run.retval == randprog.expected_retval(list(packet_words(run.data).values()))
    return run


def run_both(facts, name: str, ops: list[Op]) -> dict[str, int]:
    """Run ``zero_init() + ops`` on the interpreter; assert it agrees with the kernel's
    recorded run (``edge/NAME``); return the words."""
    program = assemble(zero_init() + ops)
    ours = interp_run(program)
    facts.check(f"edge/{name}", answer(ours), lambda: answer(kernel_run(program)))
    return packet_words(ours.data)


def s(value: int) -> int:
    """A signed constant as the unsigned 64-bit register value."""
    return value & M64


def movsx(cls: int, dst: int, src: int, bits: int) -> Instruction:
    return Instruction(cls | Alu.MOV | 0x08, dst, src, bits, 0)


def sdiv(cls: int, op: int, dst: int, src: int | None = None, imm: int = 0) -> Instruction:
    if src is None:
        return Instruction(cls | op, dst, 0, 1, imm)
    return Instruction(cls | op | 0x08, dst, src, 1, 0)


def end(code: int, dst: int, bits: int) -> Instruction:
    return Instruction(code, dst, 0, 0, bits)


LE, BE, BSWAP = Class.ALU | Alu.END, Class.ALU | Alu.END | 0x08, Class.ALU64 | Alu.END
X = 0x0123456789ABCDEF


# --- random programs -----------------------------------------------------------


def check_random(facts, seed: int) -> str | None:
    """Compare the interpreter's return value on the random program of ``seed`` with the
    kernel's recorded one (``random/SEED``); what differs, or None."""
    program = randprog.generate(seed, 100)
    assert len(program.kernel) >= 100
    ours = interp_run(program).retval
    try:
        facts.check(f"random/{seed}", ours, lambda: kernel_run(program).retval)
    except AssertionError as err:
        return f"seed {seed}: {err}"
    return None


def test_random_programs_agree(kernel_facts) -> None:
    """300 random programs of 100 body instructions: none rejected, all agree."""
    failures = [f for seed in range(1, 301) if (f := check_random(kernel_facts, seed))]
    assert not failures, "\n".join(failures[:3]) + (
        "\n(python -m pybpf.testing.kernel_diff --seed SEED --count 1 shows one in detail)")


def test_generator_is_deterministic_and_prologues_align() -> None:
    a, b = randprog.generate(42, 120), randprog.generate(42, 120)
    assert a == b
    assert len(a.body) == 120
    assert a.kernel[randprog.PROLOGUE_LEN :] == a.interp[randprog.PROLOGUE_LEN :]
    assert a.kernel[: randprog.PROLOGUE_LEN] != a.interp[: randprog.PROLOGUE_LEN]


def test_main_reports_agreement(kernel_facts, capsys: pytest.CaptureFixture[str]) -> None:
    """The command line compares with the live kernel: on seeds the recording says agree,
    it reports agreement; without bpf(2) it says so and exits 2."""
    argv = ["--count", "5", "--length", "100", "--seed", "1"]
    assert [f for seed in range(1, 6) if (f := check_random(kernel_facts, seed))] == []
    if linux.available() is not None:
        assert kernel_diff.main(argv) == 2
        assert "bpf(2) unavailable" in capsys.readouterr().err
        return
    if kernel_facts.drifts:
        return  # the live kernel answers these seeds differently: reported as drift
    assert kernel_diff.main(argv) == 0
    out = capsys.readouterr().out
    assert "agree 5/5" in out and "verifier rejections 0" in out


# --- hand-written edge cases ----------------------------------------------------


def test_div_mod_by_zero(kernel_facts) -> None:
    w = run_both(kernel_facts, "div_mod_by_zero", [
        Op(Instruction.lddw(1, 0x123456789ABCDEF0)),
        Op(mov64(2, imm=0)),
        Op(mov64(3, 1)), Op(alu64(Alu.DIV, 3, 2)),
        Op(mov64(4, 1)), Op(alu64(Alu.MOD, 4, 2)),
        Op(mov64(5, 1)), Op(alu32(Alu.DIV, 5, 2)),
        Op(mov64(6, 1)), Op(alu32(Alu.MOD, 6, 2)),
        Op(Instruction.lddw(7, 1 << 32)),  # low 32 bits zero: a 32-bit divisor of 0
        Op(mov64(8, 1)), Op(alu32(Alu.DIV, 8, 7)),
        Op(mov64(9, 1)), Op(alu32(Alu.MOD, 9, 7)),
        Op(mov64(0, 1)), Op(sdiv(Class.ALU64, Alu.MOD, 0, 2)),
    ])  # fmt: skip
    assert (w["r3"], w["r5"], w["r8"]) == (0, 0, 0)
    assert w["r4"] == w["r0"] == 0x123456789ABCDEF0
    assert w["r6"] == w["r9"] == 0x9ABCDEF0


def test_signed_division_overflow(kernel_facts) -> None:
    w = run_both(kernel_facts, "signed_division_overflow", [
        Op(Instruction.lddw(1, 1 << 63)),
        Op(mov64(2, imm=-1)),
        Op(mov64(3, 1)), Op(sdiv(Class.ALU64, Alu.DIV, 3, 2)),
        Op(mov64(4, 1)), Op(sdiv(Class.ALU64, Alu.MOD, 4, 2)),
        Op(alu32(Alu.MOV, 5, imm=-(1 << 31))), Op(sdiv(Class.ALU, Alu.DIV, 5, imm=-1)),
        Op(alu32(Alu.MOV, 6, imm=-(1 << 31))), Op(sdiv(Class.ALU, Alu.MOD, 6, imm=-1)),
        Op(mov64(7, 1)), Op(sdiv(Class.ALU64, Alu.DIV, 7, imm=-1)),
        Op(mov64(8, 1)), Op(sdiv(Class.ALU64, Alu.MOD, 8, imm=-1)),
        Op(alu32(Alu.MOV, 0, imm=-(1 << 31))), Op(sdiv(Class.ALU, Alu.DIV, 0, 2)),
        Op(alu32(Alu.MOV, 9, imm=-(1 << 31))), Op(sdiv(Class.ALU, Alu.MOD, 9, 2)),
    ])  # fmt: skip
    assert w["r3"] == w["r7"] == 1 << 63
    assert w["r5"] == w["r0"] == 0x80000000
    assert w["r4"] == w["r6"] == w["r8"] == w["r9"] == 0


def test_signed_modulo_takes_the_dividends_sign(kernel_facts) -> None:
    w = run_both(kernel_facts, "signed_modulo_takes_the_dividends_sign", [
        Op(mov64(1, imm=-7)), Op(sdiv(Class.ALU64, Alu.MOD, 1, imm=3)),
        Op(mov64(2, imm=7)), Op(sdiv(Class.ALU64, Alu.MOD, 2, imm=-3)),
        Op(mov64(3, imm=-7)), Op(sdiv(Class.ALU64, Alu.MOD, 3, imm=-3)),
        Op(alu32(Alu.MOV, 4, imm=-7)), Op(sdiv(Class.ALU, Alu.MOD, 4, imm=3)),
        Op(mov64(5, imm=-7)), Op(sdiv(Class.ALU64, Alu.DIV, 5, imm=2)),
        Op(alu32(Alu.MOV, 6, imm=-7)), Op(sdiv(Class.ALU, Alu.DIV, 6, imm=2)),
        Op(mov64(7, imm=-7)), Op(mov64(8, imm=2)), Op(sdiv(Class.ALU64, Alu.MOD, 7, 8)),
        Op(mov64(9, imm=-7)), Op(mov64(0, imm=0)), Op(sdiv(Class.ALU64, Alu.MOD, 9, 0)),
    ])  # fmt: skip
    assert w["r1"] == w["r3"] == w["r7"] == M64
    assert w["r2"] == 1
    assert w["r4"] == 0xFFFFFFFF
    assert w["r5"] == s(-3) and w["r6"] == 0xFFFFFFFD
    assert w["r9"] == s(-7)


def test_register_shift_amounts_are_masked(kernel_facts) -> None:
    w = run_both(kernel_facts, "register_shift_amounts_are_masked", [
        Op(Instruction.lddw(1, 0x8000000000000001)),
        Op(mov64(2, imm=63)), Op(mov64(3, imm=64)), Op(mov64(9, imm=33)),
        Op(mov64(4, 1)), Op(alu64(Alu.LSH, 4, 2)),
        Op(mov64(5, 1)), Op(alu64(Alu.LSH, 5, 3)),
        Op(mov64(6, 1)), Op(alu64(Alu.ARSH, 6, 2)),
        Op(mov64(7, 1)), Op(alu64(Alu.RSH, 7, 3)),
        Op(alu32(Alu.MOV, 8, imm=-0x7FFFFFFF)), Op(alu32(Alu.ARSH, 8, 9)),
        Op(alu32(Alu.MOV, 0, imm=-0x7FFFFFFF)), Op(alu32(Alu.RSH, 0, 3)),
    ])  # fmt: skip
    assert w["r4"] == 1 << 63
    assert w["r5"] == w["r7"] == 0x8000000000000001
    assert w["r6"] == M64
    assert w["r8"] == 0xC0000000  # 0x80000001 s>> (33 & 31)
    assert w["r0"] == 0x80000001  # >> (64 & 31) == >> 0, zero-extended


def test_movsx(kernel_facts) -> None:
    w = run_both(kernel_facts, "movsx", [
        Op(Instruction.lddw(1, 0x1234567880008080)),
        Op(movsx(Class.ALU64, 2, 1, 8)), Op(movsx(Class.ALU64, 3, 1, 16)),
        Op(movsx(Class.ALU64, 4, 1, 32)), Op(movsx(Class.ALU, 5, 1, 8)),
        Op(movsx(Class.ALU, 6, 1, 16)),
        Op(mov64(7, imm=0x7F)), Op(movsx(Class.ALU64, 8, 7, 8)),
        Op(Instruction.lddw(9, 0xFFFFFFFF7FFFFFFF)), Op(movsx(Class.ALU64, 0, 9, 32)),
    ])  # fmt: skip
    assert w["r2"] == s(-0x80) and w["r3"] == s(-0x7F80) and w["r4"] == 0xFFFFFFFF80008080
    assert w["r5"] == 0xFFFFFF80 and w["r6"] == 0xFFFF8080
    assert w["r8"] == 0x7F and w["r0"] == 0x7FFFFFFF


def test_byte_swaps(kernel_facts) -> None:
    codes = [(BSWAP, 16), (BSWAP, 32), (BSWAP, 64), (BE, 16), (BE, 32), (BE, 64),
             (LE, 16), (LE, 32), (LE, 64)]  # fmt: skip
    ops = [Op(Instruction.lddw(r, X)) for r in range(1, 10)]
    ops += [Op(end(code, r, bits)) for r, (code, bits) in enumerate(codes, start=1)]
    w = run_both(kernel_facts, "byte_swaps", ops)
    assert [w[f"r{r}"] for r in range(1, 10)] == [
        0xEFCD, 0xEFCDAB89, 0xEFCDAB8967452301, 0xEFCD, 0xEFCDAB89, 0xEFCDAB8967452301,
        0xCDEF, 0x89ABCDEF, X,
    ]  # fmt: skip


def test_atomic_fetch_results_are_zero_extended(kernel_facts) -> None:
    w = run_both(kernel_facts, "atomic_fetch_results_are_zero_extended", [
        Op(Instruction.lddw(1, 0xFFFFFFFFFFFFFFF0)), Op(stx(Size.DW, FP, S0, 1)),
        Op(mov64(1, imm=-1)), Op(atomic(Size.W, AtomicOp.ADD | AtomicOp.FETCH, FP, S0, 1)),
        Op(Instruction.lddw(2, 0xAAAAAAAABBBBBBBB)), Op(stx(Size.DW, FP, S1, 2)),
        Op(Instruction.lddw(2, 0x1111111122222222)), Op(atomic(Size.W, AtomicOp.XCHG, FP, S1, 2)),
        # cmpxchg32 that succeeds (low halves equal, r0's high half differs)
        Op(Instruction.lddw(0, 0xDEADBEEF22222222)), Op(mov64(3, imm=0x33)),
        Op(atomic(Size.W, AtomicOp.CMPXCHG, FP, S1, 3)), Op(mov64(5, 0)),
        # cmpxchg32 that fails
        Op(mov64(4, imm=0x55)), Op(stx(Size.DW, FP, S2, 4)),
        Op(Instruction.lddw(0, 0xFFFFFFFF00000000)), Op(mov64(4, imm=0x44)),
        Op(atomic(Size.W, AtomicOp.CMPXCHG, FP, S2, 4)), Op(mov64(6, 0)),
        # cmpxchg64 that succeeds, and a 32-bit fetch_or with the sign bit
        Op(mov64(0, imm=9)), Op(stx(Size.DW, FP, S3, 0)), Op(mov64(7, imm=0x77)),
        Op(atomic(Size.DW, AtomicOp.CMPXCHG, FP, S3, 7)),
        Op(mov64(8, imm=-(1 << 31))), Op(atomic(Size.W, AtomicOp.OR | AtomicOp.FETCH, FP, S3, 8)),
    ])  # fmt: skip
    assert w["r1"] == 0xFFFFFFF0 and w["slot0"] == 0xFFFFFFFFFFFFFFEF
    assert w["r2"] == 0xBBBBBBBB
    assert w["r5"] == 0x22222222 and w["slot1"] == 0xAAAAAAAA00000033
    assert w["r6"] == 0x55 and w["slot2"] == 0x55
    assert w["r0"] == 9 and w["r8"] == 0x77 and w["slot3"] == 0x80000077


def test_kernel_bug_atomic_fetch_precision(kernel_facts) -> None:
    """Linux drops code that runs when an atomic fetch feeds a branch (verifier bug).

    ``r4 = atomic64_fetch_add(slot1, r4)`` loads slot1 into r4; the branch
    on r4 makes the verifier mark r4 precise, but its backtracking treats
    the fetch like an ALU op on r4 (walking on to ``r4 = 0``) instead of a
    fill from slot1, so slot1 is never marked precise.  The path through M
    (slot1 = 0) is then pruned at L as "equivalent" to the path that stored
    7 there, the ``r5 = 0x55`` it would reach is never visited, and the
    verifier deletes it as dead code.  At run time that path is the one
    taken: RFC 9669 (and the interpreter) give r5 = 0x55; Linux 6.18 gives 0.
    Found by ``kernel_diff`` (seed 6177); with a plain ``ldx`` the kernel is
    right (second half of this test).
    """

    def body(fetch: bool) -> list[Op]:
        ops = zero_init()
        ops += [
            Op(mov64(2, imm=7)), Op(stx(Size.DW, FP, S1, 2)),
            Op(atomic(Size.DW, AtomicOp.ADD, FP, S0, 9)),  # slot0 becomes unknown to the verifier
            Op(ldx(Size.DW, 1, FP, S0)),  # r1 = 0 at run time, unknown to the verifier
        ]  # fmt: skip
        c = len(ops)
        m, lbl = c + 3, c + 5
        load = (Op(atomic(Size.DW, AtomicOp.ADD | AtomicOp.FETCH, FP, S1, 4)) if fetch
                else Op(ldx(Size.DW, 4, FP, S1)))  # fmt: skip
        ops += [
            Op(jump(Class.JMP, Jmp.JEQ, 1, imm=0), m),  # c: run time goes to M
            Op(mov64(3, imm=0)),
            Op(Instruction(Class.JMP | Jmp.JA), lbl),  # verified first: slot1 = 7 at L
            Op(mov64(2, imm=0)), Op(stx(Size.DW, FP, S1, 2)),  # M: slot1 = 0
            Op(mov64(4, imm=0)), load,  # L: r4 = slot1
            Op(jump(Class.JMP, Jmp.JEQ, 4, imm=7), lbl + 4),
            Op(mov64(5, imm=0x55)),  # runs: slot1 is 0
        ]  # fmt: skip
        return ops

    plain = assemble(body(fetch=False))
    ours = interp_run(plain)
    kernel_facts.check("atomic_fetch_precision/ldx", answer(ours),
                       lambda: answer(kernel_run(plain)))  # fmt: skip
    assert packet_words(ours.data)["r5"] == 0x55
    fetch = assemble(body(fetch=True))
    ours = interp_run(fetch)
    assert packet_words(ours.data)["r5"] == 0x55  # RFC 9669
    kernel = kernel_facts.fact("atomic_fetch_precision/fetch", lambda: answer(kernel_run(fetch)))
    if kernel != answer(ours):
        pytest.xfail("Linux verifier: precision backtracking ignores atomic fetch from stack "
                     f"(the recorded kernel: {kernel})")
