"""Differential testing of the pybpf interpreter against the running Linux kernel.

Usage::

    python -m pybpf.testing.kernel_diff --count 10000 --length 100 --seed 1

Each program of :mod:`pybpf.testing.randprog` (seeds ``seed .. seed+count-1``)
is loaded as XDP and run once with BPF_PROG_TEST_RUN on a 128-byte packet,
and run by :class:`~pybpf.vm.interpreter.Interpreter` on a copy of the same
packet.  They agree when the 32-bit return values and the 128 output bytes
(r0..r9 and the six stack slots, see randprog) are equal.  A program the
verifier rejects is a generator bug and counts as a failure, with the tail
of the verifier log printed.  The first mismatch is shrunk to the shortest
failing body prefix and printed with its instructions.

``--rnd-hi32`` loads with BPF_F_TEST_RND_HI32, which makes the verifier
put random bits in the upper halves of 32-bit results it believes nobody
reads as 64 bits.  On Linux 6.18 about one program in six then disagrees,
and none does when the generator emits no jumps: the verifier's
zero-extension marks get lost across branches/pruned paths.  That only
matters to JITs that rely on the verifier's zero-extension (32-bit hosts
and a few 64-bit ones), not to x86-64, so it is off by default.

Exit status: 0 when every program agreed, 1 on any mismatch, rejection or
interpreter error, 2 when bpf(2) is unusable here.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pybpf.errors import KernelError, PybpfError
from pybpf.isa import Instruction, encode, try_lookup
from pybpf.kernel import linux
from pybpf.testing import randprog
from pybpf.testing.randprog import PACKET_SIZE, RandomProgram
from pybpf.vm.interpreter import Interpreter

BPF_F_TEST_RND_HI32 = 1 << 2  # randomise upper halves the verifier believes dead


@dataclass(frozen=True)
class Run:
    """What one side produced: the u32 return value and the packet after the run."""

    retval: int
    data: bytes


@dataclass
class Outcome:
    """The verdict on one program.

    ``status`` is ``"agree"``, ``"mismatch"``, ``"rejected"`` (the verifier
    refused it; ``log`` holds the verifier log) or ``"interp-error"`` (the
    interpreter raised; ``error`` says what).
    """

    program: RandomProgram
    status: str
    kernel: Run | None = None
    interp: Run | None = None
    log: str = ""
    error: str = ""
    times: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when both sides agreed."""
        return self.status == "agree"


def packet_for(seed: int | None) -> bytes:
    """The input packet of a program (random bytes; the epilogue overwrites them all)."""
    return random.Random(f"packet-{seed}").randbytes(PACKET_SIZE)


def run_kernel(program: RandomProgram, packet: bytes, *, prog_flags: int = 0,
               times: dict[str, float] | None = None) -> Run:  # fmt: skip
    """Load ``program.kernel`` as XDP and test-run it once; raises KernelError."""
    t0 = time.perf_counter()
    prog = linux.prog_load(program.kernel, linux.XDP, log_level=0, name="pybpf_diff",
                           prog_flags=prog_flags)  # fmt: skip
    t1 = time.perf_counter()
    with prog:
        result = prog.test_run(packet)
    t2 = time.perf_counter()
    if times is not None:
        times["kernel_load"] = t1 - t0
        times["kernel_run"] = t2 - t1
    return Run(result.retval, result.data_out)


def run_interp(program: RandomProgram, packet: bytes,
               times: dict[str, float] | None = None) -> Run:  # fmt: skip
    """Run ``program.interp`` on a copy of ``packet``; raises VmError/IsaError."""
    t0 = time.perf_counter()
    buf = bytearray(packet)
    result = Interpreter(program.interp).run(memory=buf)
    if times is not None:
        times["interp"] = time.perf_counter() - t0
    return Run(result.r0 & 0xFFFFFFFF, bytes(buf))


def compare(program: RandomProgram, *, prog_flags: int = 0) -> Outcome:
    """Run ``program`` on both sides and judge (see :class:`Outcome`)."""
    packet = packet_for(program.seed)
    times: dict[str, float] = {}
    try:
        kernel = run_kernel(program, packet, prog_flags=prog_flags, times=times)
    except KernelError as err:
        return Outcome(program, "rejected", log=err.log, error=str(err), times=times)
    try:
        interp = run_interp(program, packet, times)
    except PybpfError as err:
        return Outcome(program, "interp-error", kernel, error=f"{type(err).__name__}: {err}",
                       times=times)  # fmt: skip
    status = "agree" if kernel == interp else "mismatch"
    return Outcome(program, status, kernel, interp, times=times)


def shrink(program: RandomProgram, *, prog_flags: int = 0) -> Outcome:
    """The outcome of the shortest body prefix that still fails (the first diverging op)."""
    for n in range(randprog.INIT_LEN, len(program.body) + 1):
        outcome = compare(randprog.truncate(program, n), prog_flags=prog_flags)
        if not outcome.ok:
            return outcome
    return compare(program, prog_flags=prog_flags)  # pragma: no cover - flaky kernel


# --- reporting ------------------------------------------------------------------


def format_insn(insn: Instruction) -> str:
    """``name dst src off imm`` of one instruction, from the opcode table."""
    spec = try_lookup(insn)
    name = spec.name if spec else "(invalid)"
    imm = f"{insn.imm64:#x}" if insn.slots == 2 else f"{insn.imm:#x}"
    return f"{name:<20} dst=r{insn.dst_reg} src=r{insn.src_reg} off={insn.off:+d} imm={imm}"


def format_program(insns: Sequence[Instruction], start: int = 0, stop: int | None = None,
                   mark: int | None = None) -> str:  # fmt: skip
    """A listing of the instructions whose pc is in ``[start, stop)``: pc, hex, decoding.

    The instruction at pc ``mark`` gets an arrow.
    """
    lines, pc = [], 0
    for insn in insns:
        if pc >= start and (stop is None or pc < stop):
            arrow = "->" if pc == mark else "  "
            lines.append(f"{arrow}{pc:4d}: {encode([insn]).hex(' ', 1):<48} {format_insn(insn)}")
        pc += insn.slots
    return "\n".join(lines)


def describe(outcome: Outcome, tail_lines: int = 30) -> str:
    """A human report of a failing outcome."""
    prog = outcome.program
    out = [f"seed {prog.seed}: {outcome.status} (body of {len(prog.body)} ops)"]
    if outcome.status == "rejected":
        out.append(f"  {outcome.error}")
        out.append("  verifier log (tail):")
        out += ["    " + line for line in outcome.log.rstrip().splitlines()[-tail_lines:]]
        return "\n".join(out)
    if outcome.status == "interp-error":
        out.append(f"  interpreter: {outcome.error}")
    if outcome.kernel and outcome.interp:
        k, i = outcome.kernel, outcome.interp
        out.append(f"  retval: kernel {k.retval:#010x}  interpreter {i.retval:#010x}")
        kw, iw = randprog.packet_words(k.data), randprog.packet_words(i.data)
        for name in kw:
            if kw[name] != iw[name]:
                out.append(f"  {name:>6}: kernel {kw[name]:#018x}  interpreter {iw[name]:#018x}")
        if len(k.data) != len(i.data):
            out.append(f"  packet length: kernel {len(k.data)}  interpreter {len(i.data)}")
    last = prog.body_end - prog.body[-1].insn.slots if prog.body else prog.body_start
    out.append(f"  body (pcs {prog.body_start}..{prog.body_end - 1}; the last op is the first"
               " that diverges when shrunk):")  # fmt: skip
    out.append(format_program(prog.interp, prog.body_start, prog.body_end, mark=last))
    return "\n".join(out)


# --- command line ---------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pybpf.testing.kernel_diff", description=__doc__.split("\n")[0]
    )
    p.add_argument("--count", type=int, default=1000, help="number of programs (default 1000)")
    p.add_argument("--length", type=int, default=100,
                   help="body instructions per program, >= 16 (default 100)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument(
        "--rnd-hi32",
        action="store_true",
        help="load with BPF_F_TEST_RND_HI32 (checks the verifier's zero-extension)",
    )
    p.add_argument("--no-shrink", action="store_true", help="print the first mismatch unshrunk")
    p.add_argument("--max-reports", type=int, default=5,
                   help="failing seeds to list (default 5)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the differential test; see the module docstring for the exit status."""
    args = _parser().parse_args(argv)
    if args.count < 0 or args.length < 16:
        print("kernel_diff: --count must be >= 0 and --length >= 16", file=sys.stderr)
        return 2
    reason = linux.available()
    if reason is not None:
        print(f"kernel_diff: bpf(2) unavailable: {reason}", file=sys.stderr)
        return 2
    flags = BPF_F_TEST_RND_HI32 if args.rnd_hi32 else 0
    counts = {"agree": 0, "mismatch": 0, "rejected": 0, "interp-error": 0}
    totals = {"generate": 0.0, "kernel_load": 0.0, "kernel_run": 0.0, "interp": 0.0}
    failures: list[Outcome] = []
    insns_total = 0
    started = time.perf_counter()
    for seed in range(args.seed, args.seed + args.count):
        t0 = time.perf_counter()
        program = randprog.generate(seed, args.length)
        totals["generate"] += time.perf_counter() - t0
        insns_total += len(program.kernel)
        outcome = compare(program, prog_flags=flags)
        for key, value in outcome.times.items():
            totals[key] += value
        counts[outcome.status] += 1
        if not outcome.ok:
            failures.append(outcome)
    elapsed = time.perf_counter() - started

    n = max(args.count, 1)
    print(f"kernel_diff: {args.count} programs, body {args.length} instructions "
          f"({insns_total / n:.0f} per program with prologue/epilogue), seeds "
          f"{args.seed}..{args.seed + args.count - 1}, Linux {platform.release()} "
          f"{platform.machine()}{', BPF_F_TEST_RND_HI32' if flags else ''}")  # fmt: skip
    print(f"agree {counts['agree']}/{args.count} ({100 * counts['agree'] / n:.2f}%), "
          f"mismatches {counts['mismatch']}, verifier rejections {counts['rejected']}, "
          f"interpreter errors {counts['interp-error']}")  # fmt: skip
    print(
        f"time {elapsed:.1f} s: "
        + ", ".join(f"{k} {v:.1f} s ({1e3 * v / n:.2f} ms/program)" for k, v in totals.items())
    )
    if failures:
        seeds = ", ".join(str(f.program.seed) for f in failures[: args.max_reports])
        more = " ..." if len(failures) > args.max_reports else ""
        print(f"failing seeds: {seeds}{more}")
        rejected = [f for f in failures if f.status == "rejected"]
        if rejected:
            print("\nfirst rejection (a generator bug):")
            print(describe(rejected[0]))
        diverged = [f for f in failures if f.status != "rejected"]
        if diverged:
            first = diverged[0]
            if not args.no_shrink:
                first = shrink(first.program, prog_flags=flags)
            print("\nfirst mismatch" + ("" if args.no_shrink else " (shrunk)") + ":")
            print(describe(first))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
