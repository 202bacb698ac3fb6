"""Interpreter throughput on loop-heavy programs (a benchmark, not a test).

Run ``pybpf bench`` (or ``python -m pybpf.testing.bench``).  Each program
runs ``--repeat`` times; the report gives the executed instruction count,
the best wall time and millions of eBPF instructions per second.  Numbers
from a noisy machine vary by tens of percent between runs; compare runs made
back to back, not across days.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from pybpf.asm import ubpf
from pybpf.vm import Interpreter

# Each program loops N times; keep them about a second per run.
PROGRAMS: dict[str, str] = {
    # arithmetic in a single self-looping block
    "alu-loop": """
        mov %r0, 0
        mov %r1, 0
        mov %r2, 1000000
    loop:
        add %r0, %r1
        xor %r0, 0x5a5a
        mul %r0, 3
        rsh %r0, 1
        add %r1, 1
        jlt %r1, %r2, loop
        exit
    """,
    # stack traffic: store, reload, 32-bit ops
    "stack-loop": """
        mov %r1, 0
        mov %r2, 500000
        stdw [%r10-8], 0
    loop:
        ldxdw %r3, [%r10-8]
        add %r3, %r1
        stxdw [%r10-8], %r3
        stxw [%r10-16], %r1
        ldxw %r4, [%r10-16]
        add32 %r4, 7
        add %r1, 1
        jlt %r1, %r2, loop
        ldxdw %r0, [%r10-8]
        exit
    """,
    # branchy control flow across several blocks and a bpf-to-bpf call
    "branchy": """
        mov %r0, 0
        mov %r6, 0
    loop:
        mov %r1, %r6
        call local f
        add %r6, 1
        jlt %r6, 200000, loop
        exit
    f:
        jset %r1, 1, odd
        add %r0, %r1
        exit
    odd:
        sub %r0, 1
        exit
    """,
    # memory input: sum the bytes of a buffer, byte by byte
    "memory-sum": """
        mov %r0, 0
        mov %r3, 0
    outer:
        mov %r4, %r1
        mov %r5, %r1
        add %r5, %r2
    inner:
        ldxb %r6, [%r4]
        add %r0, %r6
        add %r4, 1
        jlt %r4, %r5, inner
        add %r3, 1
        jlt %r3, 1000, outer
        exit
    """,
}


@dataclass(frozen=True)
class Measurement:
    """One program's result: instructions per run and the best time of the runs."""

    name: str
    executed: int
    seconds: float

    @property
    def mips(self) -> float:
        """Millions of eBPF instructions per second."""
        return self.executed / self.seconds / 1e6


def measure(name: str, repeat: int = 3) -> Measurement:
    """Run program ``name`` ``repeat`` times; keep the best time."""
    vm = Interpreter(ubpf.assemble(PROGRAMS[name]))
    memory = bytes(range(256)) * 2
    best, executed = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        executed = vm.run(memory=memory).executed
        best = min(best, time.perf_counter() - start)
    return Measurement(name, executed, best)


def main(argv: list[str] | None = None) -> int:
    """Print a throughput table; exit status 0."""
    parser = argparse.ArgumentParser(prog="pybpf bench", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per program (best is kept)")
    parser.add_argument("programs", nargs="*", choices=[[], *PROGRAMS], default=[])
    args = parser.parse_args(argv)
    names = args.programs or list(PROGRAMS)
    print(f"{'program':<12} {'insns/run':>12} {'best s':>9} {'M insn/s':>9}")
    total_insns = total_time = 0.0
    for name in names:
        m = measure(name, max(1, args.repeat))
        total_insns += m.executed
        total_time += m.seconds
        print(f"{m.name:<12} {m.executed:>12,} {m.seconds:>9.3f} {m.mips:>9.1f}")
    mips = total_insns / total_time / 1e6
    print(f"{'all':<12} {int(total_insns):>12,} {total_time:>9.3f} {mips:>9.1f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
