"""Differential test: the native JIT against the reference interpreter.

Two families of seeded random programs run through both engines:

* **verified** programs from :mod:`pybpf.testing.randprog` (what the kernel's
  verifier accepts: straight-line ALU, stack memory, atomics, forward
  jumps); their epilogue writes r0..r9 and the stack slots into the packet,
  so comparing r0 and the packet bytes compares every register and slot.
  Even seeds run the JIT in checked mode, odd seeds in direct (verified)
  mode.
* **raw** streams of table-valid instructions with random fields, as the
  fuzz test makes them (faults, budget exhaustion, bad calls, division by
  zero, backward jumps), run in checked mode under a small budget.

A run's outcome is r0 (64 bits), the input memory after the run, the number
of executed instructions (checked mode) or the error's type and message
(which name the pc; a fault's address is named relative to the region near
it, since each engine has its own stack); the two engines must agree exactly.

Usage: ``python -m pybpf.testing.jit_diff --count 10000``; exit status 0 when
every program agreed, 1 otherwise (the first disagreements are printed).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.errors import MemoryFault, PybpfError
from pybpf.isa import SPECS, Instruction
from pybpf.jit.engine import JitProgram
from pybpf.testing import randprog
from pybpf.testing.kernel_diff import format_program, packet_for
from pybpf.vm import Interpreter, conformance_helpers
from pybpf.vm.memory import buffer_address

RAW_BUDGET = 20_000
RAW_MEMORY = 64


@dataclass(frozen=True)
class Result:
    """What one engine produced for one program."""

    r0: int | None
    memory: bytes
    executed: int | None
    error: str | None


@dataclass(frozen=True)
class Case:
    """One program, how to run it, and both engines' results."""

    family: str
    seed: int
    insns: tuple[Instruction, ...]
    checked: bool
    interp: Result
    jit: Result

    @property
    def agree(self) -> bool:
        """True when the engines produced the same result."""
        return self.interp == self.jit


def _message(err: PybpfError, bases: dict[str, int]) -> str:
    """The error as text, a fault's address named by region (each engine has its own stack)."""
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, MemoryFault):
        for name, base in bases.items():
            if abs(err.address - base) < 1 << 16:
                return text.replace(f"{err.address:#x}", f"<{name}{err.address - base:+d}>")
    return text


def _outcome(build, memory: bytes, count: bool) -> Result:
    buf = bytearray(memory)
    engine = None
    bases = {"memory": buffer_address(buf)[0]} if buf else {}
    try:
        engine = build()
        bases["stack"] = engine.stack.base
        result = engine.run(memory=buf)
    except PybpfError as err:
        return Result(None, bytes(buf), None, _message(err, bases))
    finally:
        if engine is not None:
            engine.close()
    return Result(result.r0, bytes(buf), result.executed if count else None, None)


def run_both(family: str, seed: int, insns: Sequence[Instruction], memory: bytes, *,
             checked: bool, budget: int) -> Case:  # fmt: skip
    """Run ``insns`` on ``memory`` through both engines."""
    helpers = conformance_helpers()
    insns = tuple(insns)
    interp = _outcome(lambda: Interpreter(insns, helpers=helpers, budget=budget), memory, checked)
    jit = _outcome(lambda: JitProgram(insns, helpers=helpers, budget=budget, checked=checked),
                   memory, checked)  # fmt: skip
    return Case(family, seed, insns, checked, interp, jit)


def verified_case(seed: int, length: int = 100) -> Case:
    """A randprog program (see the module docstring)."""
    program = randprog.generate(seed, length)
    return run_both("verified", seed, program.interp, packet_for(seed), checked=seed % 2 == 0,
                    budget=1 << 32)  # fmt: skip


def _raw_insn(rng: random.Random) -> Instruction:
    spec = rng.choice(SPECS)
    fields = {"dst_reg": 0, "src_reg": 0, "off": 0, "imm": 0}
    for name in spec.uses:
        if name in ("dst_reg", "src_reg"):
            fields[name] = rng.randrange(11)
        elif name == "off":
            fields[name] = rng.choice([0, 1, -1, 2, 3, -3, -8, rng.randrange(-40, 40)])
        else:
            fields[name] = rng.choice([0, 1, -1, 5, 12, 63, 0x7FFFFFFF, -0x80000000,
                                       rng.randrange(-(2**31), 2**31)])  # fmt: skip
    if spec.disc:
        fields[spec.disc[0]] = spec.disc[1]
    imm2 = 0
    if spec.code == 0x18:
        fields["src_reg"] = 0
        imm2 = rng.randrange(-(2**31), 2**31)
    return Instruction(spec.code, fields["dst_reg"], fields["src_reg"], fields["off"],
                       fields["imm"], imm2)  # fmt: skip


def raw_case(seed: int, length: int = 24) -> Case:
    """A stream of random table-valid instructions ending in exit, on 64 random bytes."""
    rng = random.Random(f"jit-raw-{seed}")
    insns = [_raw_insn(rng) for _ in range(rng.randrange(1, length))]
    insns.append(Instruction(0x95))
    memory = rng.randbytes(RAW_MEMORY)
    return run_both("raw", seed, insns, memory, checked=True, budget=RAW_BUDGET)


def describe(case: Case) -> str:
    """A report of one disagreement: the program and both results."""
    mode = "checked" if case.checked else "direct"
    return "\n".join([
        f"{case.family} seed {case.seed} ({mode}):",
        format_program(case.insns),
        f"  interp: {case.interp}",
        f"  jit:    {case.jit}",
    ])  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pybpf.testing.jit_diff",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--count", type=int, default=1000, help="programs (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--family", choices=("both", "verified", "raw"), default="both",
                   help="verified, raw, or both alternately (default)")  # fmt: skip
    p.add_argument("--max-reports", type=int, default=3, help="disagreements to print")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; see the module docstring for the exit status."""
    args = _parser().parse_args(argv)
    if args.count < 0:
        print("jit_diff: --count must be >= 0", file=sys.stderr)
        return 2
    counts = {"verified": 0, "raw": 0}
    errors = 0
    failures: list[Case] = []
    started = time.perf_counter()
    for i, seed in enumerate(range(args.seed, args.seed + args.count)):
        family = args.family if args.family != "both" else ("verified", "raw")[i % 2]
        case = verified_case(seed) if family == "verified" else raw_case(seed)
        counts[family] += 1
        errors += case.interp.error is not None
        if not case.agree:
            failures.append(case)
    elapsed = time.perf_counter() - started
    print(f"jit_diff: {args.count} programs (verified {counts['verified']}, raw {counts['raw']}),"
          f" seeds {args.seed}..{args.seed + args.count - 1}: "
          f"agree {args.count - len(failures)}, disagree {len(failures)}; "
          f"{errors} ended in an error on both sides; {elapsed:.1f} s")  # fmt: skip
    for case in failures[: args.max_reports]:
        print(describe(case))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
