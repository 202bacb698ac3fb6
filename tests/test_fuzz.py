"""Untrusted input never escapes as anything but a PybpfError, and never hangs.

Random bytes go through the decoder and the interpreter, random and mutated
text through every assembler.  Programs run under a small instruction
budget, so a random infinite loop ends with BudgetExceeded.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.asm import DIALECTS, ubpf
from pybpf.errors import AsmError, PybpfError
from pybpf.isa import SPECS, Instruction, decode, encode
from pybpf.vm import Interpreter, conformance_helpers

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUDGET = 20_000


def _run_untrusted(data: bytes) -> None:
    try:
        insns = decode(data)
        Interpreter(insns, helpers=conformance_helpers(), budget=BUDGET).run(memory=bytes(64))
    except PybpfError:
        pass


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes):
    _run_untrusted(data)


def _random_valid_insn(rng: random.Random) -> Instruction:
    spec = rng.choice(SPECS)
    fields = {f: 0 for f in ("dst_reg", "src_reg", "off", "imm")}
    for field in spec.uses:
        if field in ("dst_reg", "src_reg"):
            fields[field] = rng.randrange(11)
        elif field == "off":
            fields[field] = rng.choice([0, 1, -1, 2, -8, rng.randrange(-40, 40)])
        else:
            fields[field] = rng.choice([0, 1, -1, 5, 12, 0x7FFFFFFF, -0x80000000,
                                        rng.randrange(-(2**31), 2**31)])  # fmt: skip
    if spec.disc:
        fields[spec.disc[0]] = spec.disc[1]
    imm2 = rng.randrange(-(2**31), 2**31) if spec.code == 0x18 else 0
    if spec.code == 0x18:
        fields["src_reg"] = 0
    return Instruction(spec.code, fields["dst_reg"], fields["src_reg"], fields["off"],
                       fields["imm"], imm2)  # fmt: skip


def test_random_valid_instruction_streams():
    """Programs of table-valid instructions: errors are typed, loops end at the budget."""
    rng = random.Random(20261127)
    for _ in range(1500):
        insns = [_random_valid_insn(rng) for _ in range(rng.randrange(1, 24))]
        insns.append(Instruction(0x95))
        _run_untrusted(encode(insns))


@FUZZ
@given(st.sampled_from(sorted(DIALECTS)), st.text(max_size=200))
def test_random_text_every_dialect(dialect: str, text: str):
    try:
        DIALECTS[dialect].assemble(text)
    except AsmError as err:
        assert err.line >= 1 and err.column >= 1


_LLVM_WORDS = [
    "r1", "w2", "=", "+=", "*(u32 *)", "(r10 - 8)", "(r1 +0)", "goto", "+1", "pc-1", "if", "==",
    "s>", "call", "exit", "ll", "0x10", "-2147483649", "lock", "r11", "map[id:3][0]+8", ";",
    "atomic64_fetch_add((u64 *)(r10 -8), r1)", "   3: (b7)",
]  # fmt: skip


@FUZZ
@given(st.sampled_from(["llvm", "xlated"]), st.lists(st.sampled_from(_LLVM_WORDS), max_size=10))
def test_mutated_c_like_assembly(dialect: str, words: list[str]):
    try:
        DIALECTS[dialect].assemble(" ".join(words) + "\nexit\n")
    except AsmError as err:
        assert err.line >= 1 and err.column >= 1


_WORDS = ["mov", "add32", "ldxw", "stdw", "lock", "fetch", "call", "local", "lddw", "ja32",
          "%r1", "%r10", "%r11", "[%r1+4]", "[%r10-8]", "+1", "-1", "0x10", "label:", "exit",
          ",", "map_value(1, 2)", "func(+1)", "99999999999", "be16", "jeq", "neg"]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(_WORDS), max_size=12), st.integers(0, 3))
def test_mutated_assembly(words: list[str], newlines: int):
    text = " ".join(words) + "\n" * newlines + "exit\n"
    try:
        ubpf.assemble(text)
    except AsmError as err:
        assert err.line >= 1 and err.column >= 1
