"""Soundness fuzz: no program pybpf's verifier accepts may fault in pybpf's interpreter.

Random XDP programs made of memory-touching shapes (packet loads and stores behind
bounds checks of random width, map value accesses with and without the NULL check,
constant and variable offsets, stack accesses inside and outside the frame, bounded
loops, two paths joining with a good and a bad offset, pointers spilled and filled)
are loaded into a pybpf ``Kernel`` with the verifier on.  Every accepted one is run on
packets of several lengths; a ``MemoryFault`` (or any ``VmError`` but the instruction
budget) means the verifier accepted an unsafe program.

The same programs' verdicts from the kernel are recorded in
``kernel_facts/verifier_fuzz.json`` (seeds 0..999, the kernel's error line or null for
an accept; the live kernel is asked too, for drift): pybpf may refuse more than the
kernel, never less (a laxer verdict is a soundness bug even where the interpreter
happens not to fault).

``PYBPF_VERIFIER_FUZZ=N`` sets the number of programs (default 1000);
``PYBPF_VERIFIER_FUZZ_SEED`` the first seed (default 0).  Seeds beyond the recording
are compared with the live kernel alone (``--record-kernel`` records them).  Each shape
is unsafe with some probability, so a share of the programs must be refused, and a share
must be accepted or the run proves nothing: both shares are asserted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from dataclasses import dataclass, replace

import pytest

from pybpf.asm import llvm
from pybpf.errors import BudgetExceeded, KernelError, VerifierError, VmError
from pybpf.isa import LDDW, Pseudo
from pybpf.kernel import linux
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapType
from pybpf.runtime.progtypes import ProgType
from pybpf.runtime.testrun import test_run as run_prog
from pybpf.testing.verifier_diff import verifier_ready

COUNT = int(os.environ.get("PYBPF_VERIFIER_FUZZ", "1000"))
SEED = int(os.environ.get("PYBPF_VERIFIER_FUZZ_SEED", "0"))
PACKET_LENGTHS = (14, 15, 40, 100)
VALUE_SIZE = 32
SIZES = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}

PROLOGUE = """\
r6 = r1
r7 = *(u32 *)(r6 + 0)
r8 = *(u32 *)(r6 + 4)
r1 = 0
*(u32 *)(r10 - 4) = r1
*(u64 *)(r10 - 16) = r1
*(u64 *)(r10 - 24) = r1
*(u64 *)(r10 - 32) = r1
*(u64 *)(r10 - 40) = r1
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
r9 = r0
r0 = 0"""


@dataclass(frozen=True)
class FuzzProgram:
    """One generated program: its seed, its text and whether every shape chose safety."""

    seed: int
    text: str
    safe: bool


class _Gen:
    """Builds one program from a seeded random source; ``unsafe`` counts risky choices."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"verifier-fuzz-{seed}")
        self.labels = 0
        self.unsafe = 0
        self.lines: list[str] = []

    def risky(self, p: float = 0.2) -> bool:
        hit = self.rng.random() < p
        self.unsafe += hit
        return hit

    def label(self) -> str:
        self.labels += 1
        return f"L{self.labels}"

    def size(self) -> int:
        return self.rng.choice((1, 2, 4, 8))

    def access(self, base: str, off: int, size: int) -> str:
        sign = "-" if off < 0 else "+"
        mem = f"*({SIZES[size]} *)({base} {sign} {abs(off)})"
        if self.rng.random() < 0.3:
            return f"{mem} = r0"
        return f"r0 = {mem}"

    # --- shapes: each appends lines and jumps only forward to its own label -------------
    def pkt_const(self) -> None:
        end, size = self.label(), self.size()
        width = self.rng.randint(size, 48)
        off = self.rng.randint(0, width - size)
        if self.risky(0.25):
            off = self.rng.choice((width - size + 1, width, -1, -size, width + 8))
        self.lines += ["r2 = r7", f"r2 += {width}", f"if r2 > r8 goto {end}",
                       self.access("r7", off, size), f"{end}:"]  # fmt: skip

    def pkt_var(self) -> None:
        end, size = self.label(), self.size()
        mask = self.rng.choice((1, 3, 7, 15, 31))
        after = self.rng.randint(size, 16)
        off = self.rng.randint(0, after - size)
        recheck = not self.risky(0.2)
        if self.risky(0.15):
            off = after - size + 1
        lines = ["r2 = r7", "r2 += 1", f"if r2 > r8 goto {end}", "r3 = *(u8 *)(r7 + 0)",
                 f"r3 &= {mask}", "r2 = r7", "r2 += r3"]  # fmt: skip
        if recheck:
            lines += ["r4 = r2", f"r4 += {after}", f"if r4 > r8 goto {end}"]
        self.lines += lines + [self.access("r2", off, size), f"{end}:"]

    def map_const(self) -> None:
        end, size = self.label(), self.size()
        off = self.rng.randint(0, VALUE_SIZE - size)
        if self.risky(0.2):
            off = self.rng.choice((VALUE_SIZE - size + 1, VALUE_SIZE, -1, -size))
        check = [] if self.risky(0.15) else [f"if r9 == 0 goto {end}"]
        self.lines += check + [self.access("r9", off, size), f"{end}:"]

    def map_var(self) -> None:
        end, size = self.label(), self.size()
        shift = self.rng.choice((0, 1, 2, 3))
        limit = (VALUE_SIZE - size) >> shift
        if self.risky(0.2):
            limit += self.rng.randint(1, 4)
        bound = (f"if r3 > {limit} goto {end}" if self.rng.random() < 0.5
                 else f"r3 &= {max(1, (1 << max(0, limit.bit_length() - 1)) - 1)}")  # fmt: skip
        if self.risky(0.1):
            bound = "r3 = r3"
        self.lines += [f"if r9 == 0 goto {end}", "r3 = *(u8 *)(r9 + 0)", bound,
                       f"r3 <<= {shift}", "r4 = r9", "r4 += r3",
                       self.access("r4", 0, size), f"{end}:"]  # fmt: skip

    def stack_const(self) -> None:
        size = self.size()
        slot = self.rng.randint(1, 64 // size) * size
        off = -slot
        if self.risky(0.15):
            off = self.rng.choice((0, 8, -520, -513, -slot + 1 if size > 1 else 4))
        self.lines += [self.access("r10", off, size)]

    def stack_var(self) -> None:
        end, size = self.label(), self.size()
        mask = self.rng.choice((0, 8, 16, 24))
        base = -64
        if self.risky(0.15):
            base = self.rng.choice((-8, -4, 0))
        self.lines += ["r2 = r7", "r2 += 1", f"if r2 > r8 goto {end}", "r3 = *(u8 *)(r7 + 0)",
                       f"r3 &= {mask}", "r4 = r10", f"r4 += {base}", "r4 += r3",
                       self.access("r4", 0, size), f"{end}:"]  # fmt: skip

    def loop(self) -> None:
        top, end = self.label(), self.label()
        n = self.rng.randint(1, 4)
        step = self.rng.choice((1, 4, 8))
        limit = VALUE_SIZE - 1 if not self.risky(0.2) else VALUE_SIZE + step
        self.lines += [f"if r9 == 0 goto {end}", "r3 = 0", f"{top}:", "r4 = r9", "r4 += r3",
                       "r0 = *(u8 *)(r4 + 0)", f"r3 += {step}", f"if r3 > {limit} goto {end}",
                       f"if r3 < {n * step} goto {top}", f"{end}:"]  # fmt: skip

    def join(self) -> None:
        """Two paths pick an offset, then join and use it: pruning must keep the bad one."""
        other, joined, end = self.label(), self.label(), self.label()
        size = self.size()
        good = self.rng.randint(0, VALUE_SIZE - size)
        bad = good if not self.risky(0.3) else self.rng.choice((VALUE_SIZE, VALUE_SIZE - size + 1))
        first, second = (good, bad) if self.rng.random() < 0.5 else (bad, good)
        spill = self.rng.random() < 0.4
        lines = [
            f"if r9 == 0 goto {end}",
            "r3 = *(u8 *)(r9 + 1)",
            f"if r3 > 7 goto {other}",
            f"r5 = {first}",
            f"goto {joined}",
            f"{other}:",
            f"r5 = {second}",
            f"{joined}:",
        ]
        if spill:
            lines += ["*(u64 *)(r10 - 48) = r5", "r5 = 0", "r5 = *(u64 *)(r10 - 48)"]
        self.lines += lines + ["r4 = r9", "r4 += r5", self.access("r4", 0, size), f"{end}:"]

    def spill(self) -> None:
        """A pointer goes through the stack; a partial overwrite makes the fill a scalar."""
        end, size = self.label(), self.size()
        base = self.rng.choice(("r9", "r7"))
        lines = [f"*(u64 *)(r10 - 56) = {base}"]
        if self.risky(0.15):
            lines += ["r3 = 0", "*(u8 *)(r10 - 56) = r3"]
        lines += ["r4 = *(u64 *)(r10 - 56)"]
        if base == "r9":
            lines += [f"if r4 == 0 goto {end}"]
            off = self.rng.randint(0, VALUE_SIZE - size)
        else:
            lines += ["r2 = r4", f"r2 += {size}", f"if r2 > r8 goto {end}"]
            off = 0
        self.lines += lines + [self.access("r4", off, size), f"{end}:"]

    def alu(self) -> None:
        op = self.rng.choice(("+=", "-=", "*=", "&=", "|=", "^=", ">>=", "<<="))
        imm = self.rng.randint(0, 63) if op in (">>=", "<<=") else self.rng.randint(-100, 100)
        self.lines += [f"r0 {op} {imm}"]

    SHAPES = ("pkt_const", "pkt_var", "map_const", "map_var", "stack_const", "stack_var",
              "loop", "join", "spill", "alu")  # fmt: skip

    def build(self) -> str:
        self.lines = PROLOGUE.splitlines()
        for _ in range(self.rng.randint(1, 4)):
            getattr(self, self.rng.choice(self.SHAPES))()
        self.lines += ["r0 = 2", "exit"]
        return "\n".join(self.lines) + "\n"


def generate(seed: int) -> FuzzProgram:
    """The program of ``seed`` (deterministic)."""
    gen = _Gen(seed)
    text = gen.build()
    return FuzzProgram(seed, text, gen.unsafe == 0)


def load(kernel: Kernel, program: FuzzProgram, *, verify: bool = True):
    """Load ``program`` as XDP with its hash map (key 0 present); VerifierError when refused.

    A hash, not an array: the kernel knows a constant in-range key of an array cannot
    miss, and the NULL checks the generator may leave out would not matter.
    """
    values = kernel.map_create(MapAttr(MapType.HASH, 4, VALUE_SIZE, 4, 0, "fuzz"))
    values.update(bytes(4), bytes(range(VALUE_SIZE)))
    # the interpreter checks every access: an unsound verdict shows as a fault, where the
    # JIT's direct mode (what verified programs get by default) would touch host memory
    return kernel.prog_load(llvm.assemble(program.text), ProgType.XDP, maps={0: values},
                            verify=verify, engine="interp")  # fmt: skip


def kernel_load(program: FuzzProgram) -> str | None:
    """Load ``program`` into the running kernel; None when accepted, else the error line."""
    values = linux.map_create(MapType.HASH, 4, VALUE_SIZE, 4)
    insns = [
        replace(i, imm=values.fd) if i.code == LDDW and i.src_reg == Pseudo.MAP_FD else i
        for i in llvm.assemble(program.text)
    ]
    try:
        linux.prog_load(insns, linux.XDP, log_level=0).close()
    except KernelError as err:
        lines = [s for s in err.log.strip().splitlines() if not s.startswith("processed ")]
        return lines[-1] if lines else str(err)
    finally:
        values.close()
    return None


def kernel_verdict(facts, seed: int) -> str | None:
    """The kernel's verdict on the program of ``seed`` (see :func:`kernel_load`): recorded,
    or from the live kernel alone for a seed beyond the recording; UNKNOWN without either."""
    key = f"verdict/{seed}"
    probe = functools.partial(kernel_load, generate(seed))
    if facts.record or facts.file.get(key) is not None:
        return facts.fact(key, probe)
    return UNKNOWN if facts.live is None else probe()


UNKNOWN = "(not recorded, no bpf(2) here)"


def run_all(prog) -> None:
    """Run ``prog`` on each packet length; budget exhaustion is not a fault."""
    for length in PACKET_LENGTHS:
        with contextlib.suppress(BudgetExceeded):
            run_prog(prog, bytes(range(length)))


# --- the generator itself ---------------------------------------------------------------------


def test_generation_is_deterministic_and_mixed():
    programs = [generate(s) for s in range(200)]
    assert [p.text for p in programs] == [generate(s).text for s in range(200)]
    safe = sum(p.safe for p in programs)
    assert 0.25 * len(programs) < safe < 0.9 * len(programs)


def test_the_harness_sees_a_fault():
    """Without the verifier, an unsafe program faults: the fuzz can fail."""
    text = PROLOGUE + "\nr0 = *(u64 *)(r9 + 4096)\nr0 = 2\nexit\n"
    kernel = Kernel()
    prog = load(kernel, FuzzProgram(-1, text, False), verify=False)
    with pytest.raises(VmError):
        run_all(prog)


def test_safe_programs_pass_the_kernel(kernel_facts):
    """The generator's safe programs are safe by the kernel's verifier too."""
    refused = [(s, kernel_verdict(kernel_facts, s)) for s in range(300) if generate(s).safe]
    assert [r for r in refused if r[1] is not None] == []


# --- the fuzz -----------------------------------------------------------------------------------


def test_accepted_programs_never_fault():
    assert verifier_ready(), "pybpf.verifier has no verify() yet: nothing to fuzz"
    accepted = refused = 0
    faults = []
    for seed in range(SEED, SEED + COUNT):
        program = generate(seed)
        kernel = Kernel()
        try:
            prog = load(kernel, program)
        except VerifierError:
            refused += 1
            continue
        accepted += 1
        try:
            run_all(prog)
        except VmError as err:
            faults.append(f"seed {seed}: {type(err).__name__}: {err}\n{program.text}")
    print(f"verifier fuzz: {COUNT} programs, {accepted} accepted, {refused} refused, "
          f"{len(faults)} faults")  # fmt: skip
    assert faults == []
    assert accepted >= COUNT // 5, f"only {accepted} of {COUNT} accepted: the fuzz proves little"
    assert refused >= COUNT // 10, f"only {refused} of {COUNT} refused: the generator is too tame"


def test_pybpf_accepts_nothing_the_kernel_refuses(kernel_facts):
    """The same programs, verdict against verdict: pybpf may be stricter, never laxer."""
    assert verifier_ready(), "pybpf.verifier has no verify() yet"
    laxer, stricter, unknown = [], [], []
    for seed in range(SEED, SEED + COUNT):
        program = generate(seed)
        try:
            load(Kernel(), program)
            ours = None
        except VerifierError as err:
            ours = err.reason
        theirs = kernel_verdict(kernel_facts, seed)
        if theirs == UNKNOWN:
            unknown.append(seed)
        elif ours is None and theirs is not None:
            laxer.append(f"seed {seed}: kernel: {theirs}")
        elif ours is not None and theirs is None:
            stricter.append(f"seed {seed}: pybpf: {ours.splitlines()[0]}")
    print(f"verifier fuzz vs kernel: {COUNT} programs, pybpf laxer on {len(laxer)}, "
          f"stricter on {len(stricter)}, no kernel verdict for {len(unknown)}")  # fmt: skip
    assert laxer == []
    if len(unknown) == COUNT:
        pytest.skip(f"seeds {SEED}..{SEED + COUNT - 1} are not recorded and bpf(2) is unusable")
