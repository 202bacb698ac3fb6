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
  zero, backward jumps), run in checked mode under a small budget; r1 and
  r10 serve only as memory bases (their values are host addresses, which
  differ between the engines).

A run's outcome is r0 (64 bits), the input memory after the run, the number
of executed instructions (checked mode) or the error's type and message
(which name the pc; host addresses in messages are named relative to the
region near them or hidden, since each engine has its own stack); the two
engines must agree exactly.

Usage: ``python -m pybpf.testing.jit_diff --count 10000``; exit status 0 when
every program agreed, 1 otherwise (the first disagreements are printed).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.errors import PybpfError
from pybpf.isa import SPECS, Instruction, Kind
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

    r0: int | str | None
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


_NUMBER = re.compile(r"\b(0x[0-9a-f]+|\d+)\b")
_HOST = 1 << 40  # user-space addresses of this process are above this


def _message(err: PybpfError, bases: dict[str, int]) -> str:
    """The error as text with host addresses named by region or hidden.

    Each engine has its own stack, so an address derived from r10 differs
    between them: one near a known region becomes ``<stack-8>``, any other
    host-sized number and a fault's address ``<address>``.
    """

    fault = getattr(err, "address", None)

    def name(match: re.Match) -> str:
        text = match.group(0)
        value = int(text, 0)
        for region, base in bases.items():
            if abs(value - base) < 1 << 16:
                return f"<{region}{value - base:+d}>"
        return "<address>" if value >= _HOST or value == fault else text

    return _NUMBER.sub(name, f"{type(err).__name__}: {err}")


def _value(r0: int, bases: dict[str, int]) -> int | str:
    """r0, or the region it points into (a helper may return the memory's address)."""
    for region, base in bases.items():
        if abs(r0 - base) < 1 << 16:
            return f"<{region}{r0 - base:+d}>"
    return r0


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
    return Result(_value(result.r0, bases), bytes(buf), result.executed if count else None, None)


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


_VALUES = (0, 2, 3, 4, 5, 6, 7, 8, 9)
_POINTERS = (1, 10, 1, 10, 0, 3)
_STORES = (Kind.ST, Kind.STX, Kind.STORE_REL, Kind.ATOMIC)
_LOADS = (Kind.LDX, Kind.LDXSX, Kind.LOAD_ACQ)


def _register(spec, name: str, rng: random.Random) -> int:
    """r1 (the memory) and r10 (the frame) only ever serve as memory bases.

    Their values are host addresses, different in each engine, so a program
    that computed with them would not be comparable.
    """
    base = (spec.kind in _STORES and name == "dst_reg") or (
        spec.kind in _LOADS and name == "src_reg"
    )
    return rng.choice(_POINTERS if base else _VALUES)


def _raw_insn(rng: random.Random) -> Instruction:
    spec = rng.choice(SPECS)
    fields = {"dst_reg": 0, "src_reg": 0, "off": 0, "imm": 0}
    for name in spec.uses:
        if name in ("dst_reg", "src_reg"):
            fields[name] = _register(spec, name, rng)
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


def program_of(size: int, seed: int = 1) -> tuple[Instruction, ...]:
    """A verifier-style random program (randprog's interpreter variant) of ``size`` instructions.

    The body is cut to the longest prefix that fits, so the size may fall short by
    the few instructions one op spans.
    """
    program = randprog.generate(seed, size)
    lo, hi = 0, len(program.body)
    while lo < hi:  # the longest body prefix whose program has at most `size` instructions
        mid = (lo + hi + 1) // 2
        if len(randprog.truncate(program, mid).interp) <= size:
            lo = mid
        else:
            hi = mid - 1
    return randprog.truncate(program, lo).interp


def compile_time(size: int = 1000, repeat: int = 7, opt_level: int | None = None) -> tuple:
    """(instructions, best, median) CPU seconds to build a JitProgram of ``size`` instructions.

    Translation, LLVM and code loading included, at the default level unless
    ``opt_level`` is given; CPU time, so other processes on the machine do not count.
    """
    insns = program_of(size)
    times = []
    for _ in range(repeat):
        start = time.process_time()
        JitProgram(insns, opt_level=opt_level).close()
        times.append(time.process_time() - start)
    times.sort()
    return len(insns), times[0], times[len(times) // 2]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pybpf.testing.jit_diff",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--count", type=int, default=1000, help="programs (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--family", choices=("both", "verified", "raw"), default="both",
                   help="verified, raw, or both alternately (default)")  # fmt: skip
    p.add_argument("--max-reports", type=int, default=3, help="disagreements to print")
    p.add_argument("--compile-time", type=int, metavar="N", default=0,
                   help="instead: CPU time to compile an N-instruction program")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; see the module docstring for the exit status."""
    args = _parser().parse_args(argv)
    if args.count < 0:
        print("jit_diff: --count must be >= 0", file=sys.stderr)
        return 2
    if args.compile_time:
        size, best, median = compile_time(args.compile_time)
        print(f"jit_diff: compiling a {size}-instruction program at the default level takes "
              f"{1e3 * best:.1f} ms CPU (best of 7), {1e3 * median:.1f} ms median")  # fmt: skip
        return 0
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
