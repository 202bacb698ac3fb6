"""How long pybpf's verifier takes on a large program with loops.

Usage::

    python -m pybpf.testing.verifier_bench [--insns 10000] [--kernel]

Builds an XDP program of about ``--insns`` instructions: blocks of a
bounded loop (4 iterations over arithmetic and a stack slot), a branch on
a random number whose sides write a register that is dead after the join,
a map-free helper call and a packet bounds check, then verifies it with
:func:`pybpf.verifier.verify` and prints the size, the verdict, the
processed-instruction count and the time.  ``--kernel`` loads the same
program into the running kernel too, for the kernel's figures.
"""

from __future__ import annotations

import argparse
import sys
import time

from pybpf.asm.llvm import assemble

BLOCK = """
r1 = 0
loop{i}:
r7 += r1
r7 ^= {i}
r8 = r7
r8 &= 255
r8 <<= 2
r8 |= 1
r7 += r8
r1 += 1
if r1 < 4 goto loop{i}
*(u64 *)(r10 - {slot}) = r7
r2 = *(u64 *)(r10 - {slot})
r7 += r2
call 7
if r0 > 5 goto skip{i}
r3 = 1
r3 += r0
skip{i}:
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
r4 = r2
r4 += 14
if r4 > r3 goto nopkt{i}
r0 = *(u8 *)(r2 + 13)
r7 += r0
nopkt{i}:
r7 &= 0xffff
"""


def program_text(insns: int) -> str:
    """An XDP program of about ``insns`` instructions (at least one block)."""
    per_block = len([ln for ln in BLOCK.strip().splitlines() if not ln.endswith(":")])
    blocks = max(1, (insns - 4) // per_block)
    body = "".join(BLOCK.format(i=i, slot=8 * (i % 8 + 1)) for i in range(blocks))
    return "r6 = r1\nr7 = 0\n" + body + "r0 = 2\nexit\n"


def _target():
    from pybpf.runtime.helpers import HELPERS
    from pybpf.runtime.progtypes import PROG_TYPES
    from pybpf.verifier import Target

    allowed = PROG_TYPES[6].helpers
    return Target(6, helpers={h: HELPERS[h].proto for h in allowed if h in HELPERS})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.verifier_bench",
                                     description="time pybpf's verifier on a large program")
    parser.add_argument("--insns", type=int, default=10_000, help="program size (default 10000)")
    parser.add_argument("--kernel", action="store_true", help="load it into the kernel too")
    args = parser.parse_args(argv)
    from pybpf.verifier import verify

    insns = assemble(program_text(args.insns))
    t0 = time.perf_counter()
    verdict = verify(insns, _target())
    elapsed = time.perf_counter() - t0
    print(f"program: {sum(i.slots for i in insns)} insns (xdp)")
    print(f"pybpf: {'accept' if verdict.ok else 'reject: ' + str(verdict.error)} in "
          f"{elapsed:.2f} s; processed {verdict.insns_processed} insns, "
          f"total_states {verdict.total_states}, peak_states {verdict.peak_states}")
    if args.kernel:
        from pybpf.errors import KernelError
        from pybpf.kernel import linux

        reason = linux.available()
        if reason:
            print(f"kernel: unavailable ({reason})")
        else:
            t0 = time.perf_counter()
            try:
                prog = linux.prog_load(insns, 6, log_level=1)
                summary = prog.log.strip().splitlines()[-1]
                prog.close()
                print(f"kernel: accept in {time.perf_counter() - t0:.3f} s; {summary}")
            except KernelError as err:
                print(f"kernel: reject ({err})")
    return 0 if verdict.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
