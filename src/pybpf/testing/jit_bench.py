"""pybpf's JIT against the kernel's JIT, program by program (a benchmark, not a test).

Run ``python -m pybpf.testing.jit_bench [--repeat N] [--rounds R]``.  Each
program of :data:`PROGRAMS` is an XDP program loaded twice in the same
process: into a pybpf :class:`~pybpf.runtime.kernel.Kernel` with the JIT
engine and the native hot path (:func:`jit_engine`), and into the running
kernel through :mod:`pybpf.kernel.linux`.  Both run ``repeat`` times on the
same 64-byte Ethernet/IPv4/UDP packet; the kernel's figure is
BPF_PROG_TEST_RUN's duration (ns per run, its own timer around its own
loop, leaving out time spent rescheduled), pybpf's the native repeat loop's
(:class:`~pybpf.jit.maps_ir.RepeatDriver`, the thread's CPU time around its
own loop).  pybpf's engine trusts the program (direct mode, map hooks
without pointer checks), as the kernel verified the same instructions in the
same run.  Each figure is the median of ``rounds`` rounds; the report gives
ns/run for both, the ratio pybpf/kernel and the geometric mean of the ratios
(the JIT's target is <= 1.0).  The return values of both sides are compared
on every program (the tests compare packets and maps too).  Without bpf(2)
the kernel column is skipped, with the reason.

The figures are noisy on a shared machine: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from pybpf.asm import llvm
from pybpf.jit import maps_ir
from pybpf.jit.abi import Slot, Status
from pybpf.jit.engine import JitProgram
from pybpf.jit.native import AUTO_O2_LIMIT
from pybpf.runtime.context import XDP_PACKET_HEADROOM, XdpBuff, XdpMd
from pybpf.runtime.env import ExecEnv
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapType

XDP = 6  # BPF_PROG_TYPE_XDP


def _packet() -> bytes:
    """A 64-byte frame: Ethernet, IPv4 (checksummed), UDP to port 1234."""
    ip = bytearray.fromhex("4500003200010000401100000a0000010a000002")
    total = sum(int.from_bytes(ip[i : i + 2], "big") for i in range(0, 20, 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    ip[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
    udp = (4321).to_bytes(2, "big") + (1234).to_bytes(2, "big") + (30).to_bytes(2, "big") + bytes(2)
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    frame = eth + bytes(ip) + udp
    return frame + bytes(range(64 - len(frame)))


PACKET = _packet()


@dataclass(frozen=True)
class BenchMap:
    """A map a benchmark program uses: ``{m:name}`` in its text is the map's fd or id."""

    name: str
    map_type: MapType
    key_size: int
    value_size: int
    max_entries: int


@dataclass(frozen=True)
class BenchProgram:
    """One benchmark: llvm-dialect text with ``{m:NAME}`` map references."""

    name: str
    what: str
    text: str
    maps: tuple[BenchMap, ...] = field(default=())

    def assemble(self, refs: dict[str, int]):
        text = self.text
        for name, ref in refs.items():
            text = text.replace("{m:" + name + "}", str(ref))
        return llvm.assemble(text)


def _ip_checksum() -> str:
    """Sum the 10 header words (unrolled: the verifier needs constant packet offsets)."""
    lines = ["  r5 = 0"]
    for i in range(10):
        lines += [f"  r4 = *(u16 *)(r1 + {14 + 2 * i})", "  r5 += r4"]
    lines += ["  r4 = r5", "  r4 >>= 16", "  r5 &= 0xffff", "  r5 += r4",
              "  r4 = r5", "  r4 >>= 16", "  r5 += r4", "  r5 &= 0xffff"]  # fmt: skip
    return "\n".join(lines)


def _copy_words() -> str:
    """Packet -> stack -> stack -> packet in 8-byte words (unrolled)."""
    lines = []
    for i in range(8):
        lines += [f"  r4 = *(u64 *)(r1 + {8 * i})", f"  *(u64 *)(r10 - {64 - 8 * i}) = r4"]
    for i in range(8):
        lines += [f"  r4 = *(u64 *)(r10 - {64 - 8 * i})", "  r4 ^= r6",
                  f"  *(u64 *)(r10 - {128 - 8 * i}) = r4", "  r6 += r4"]  # fmt: skip
    for i in range(8):
        lines += [f"  r4 = *(u64 *)(r10 - {128 - 8 * i})", "  r4 ^= r6",
                  f"  *(u64 *)(r1 + {56 - 8 * i}) = r4"]  # fmt: skip
    return "\n".join(lines)


_COUNTS = (BenchMap("counts", MapType.HASH, 4, 8, 128),)
_SLOTS = (BenchMap("slots", MapType.ARRAY, 4, 8, 64),)

PROGRAMS: tuple[BenchProgram, ...] = (
    BenchProgram("arith-loop", "500 iterations of add/xor/mul/shift", """
  r0 = 0
  r1 = 0
loop:
  r0 += r1
  r0 ^= 0x5a5a
  r0 *= 3
  r0 >>= 1
  r1 += 1
  if r1 < 500 goto loop
  r0 &= 3
  exit
"""),
    BenchProgram("parse-udp", "Eth/IPv4/UDP parsing with bounds checks and the IPv4 checksum", f"""
  r2 = *(u32 *)(r1 + 4)
  r1 = *(u32 *)(r1 + 0)
  r3 = r1
  r3 += 42
  if r3 > r2 goto pass
  r4 = *(u16 *)(r1 + 12)
  if r4 != 0x8 goto pass
  r4 = *(u8 *)(r1 + 14)
  r4 &= 0xf
  if r4 != 5 goto pass
  r4 = *(u8 *)(r1 + 23)
  if r4 != 17 goto pass
{_ip_checksum()}
  if r5 != 0xffff goto drop
  r4 = *(u16 *)(r1 + 36)
  r4 = be16 r4
  if r4 == 53 goto drop
  r0 = 2
  exit
drop:
  r0 = 1
  exit
pass:
  r0 = 2
  exit
"""),
    BenchProgram("hash-count", "32 hash lookups per run, atomic increments (insert on miss)", """
  r6 = 0
loop:
  r7 = r6
  r7 *= 7
  r7 &= 63
  *(u32 *)(r10 - 4) = r7
  r1 = {m:counts} ll
  r2 = r10
  r2 += -4
  call bpf_map_lookup_elem
  if r0 == 0 goto miss
  r1 = 1
  lock *(u64 *)(r0 + 0) += r1
  goto next
miss:
  *(u64 *)(r10 - 16) = 1
  r1 = {m:counts} ll
  r2 = r10
  r2 += -4
  r3 = r10
  r3 += -16
  r4 = 0
  call bpf_map_update_elem
next:
  r6 += 1
  if r6 < 32 goto loop
  r0 = 2
  exit
""".replace("r1 = {m:counts} ll", "ld_pseudo r1, 1, {m:counts}"), _COUNTS),
    BenchProgram("array-count", "32 array lookups per run, atomic increments", """
  r6 = 0
loop:
  r7 = r6
  r7 *= 5
  r7 &= 63
  *(u32 *)(r10 - 4) = r7
  ld_pseudo r1, 1, {m:slots}
  r2 = r10
  r2 += -4
  call bpf_map_lookup_elem
  if r0 == 0 goto next
  r1 = 1
  lock *(u64 *)(r0 + 0) += r1
next:
  r6 += 1
  if r6 < 32 goto loop
  r0 = 2
  exit
""", _SLOTS),
    BenchProgram("memcpy", "64 packet bytes to the stack, stack to stack, back to the packet", f"""
  r2 = *(u32 *)(r1 + 4)
  r1 = *(u32 *)(r1 + 0)
  r3 = r1
  r3 += 64
  if r3 > r2 goto out
  r6 = 0
{_copy_words()}
out:
  r0 = 2
  exit
"""),
    BenchProgram("csum-diff", "16 x bpf_csum_diff: a 4-byte replacement and a 40-byte sum", """
  *(u64 *)(r10 - 8) = 0x12345678
  r1 = 0x0a000001
  *(u32 *)(r10 - 4) = r1
  r6 = 0
  r7 = 0
loop:
  *(u64 *)(r10 - 48) = r6
  *(u64 *)(r10 - 40) = r7
  *(u64 *)(r10 - 32) = r6
  *(u64 *)(r10 - 24) = r7
  *(u64 *)(r10 - 16) = r6
  r1 = r10
  r1 += -8
  r2 = 4
  r3 = r10
  r3 += -4
  r4 = 4
  r5 = r7
  call bpf_csum_diff
  r7 += r0
  r1 = 0
  r2 = 0
  r3 = r10
  r3 += -48
  r4 = 40
  r5 = r7
  call bpf_csum_diff
  r7 ^= r0
  r6 += 1
  if r6 < 16 goto loop
  r0 = r7
  r0 &= 3
  exit
"""),
    BenchProgram("helpers", "16 x (ktime_get_ns, get_prandom_u32, get_smp_processor_id)", """
  r6 = 0
  r7 = 0
loop:
  call bpf_ktime_get_ns
  r7 += r0
  call bpf_get_prandom_u32
  r7 ^= r0
  call bpf_get_smp_processor_id
  r7 += r0
  r6 += 1
  if r6 < 16 goto loop
  r0 = 2
  exit
"""),
)


# --- pybpf side -------------------------------------------------------------------------------
def jit_engine(prog, *, cpu: int = 0, opt_level: int | None = None,
               checked: bool = False) -> tuple[JitProgram, maps_ir.ProgramHooks]:  # fmt: skip
    """A JitProgram for a loaded runtime Program, with the native hot path.

    Every map of the program that offers ``jit_shape()`` is reached natively;
    ktime, prandom and the CPU read native words.  ``checked`` False trusts
    the program (direct memory access, map hooks without pointer checks): the
    benchmark's programs are verified by the kernel in the same run.
    """
    kernel = prog.kernel
    hooks = maps_ir.ProgramHooks(prog.maps, boot_ns=kernel.boot,
                                 seed=kernel.random.getrandbits(64), trusted=not checked,
                                 insn_count=len(prog.xlated), opt_level=opt_level)  # fmt: skip
    hooks.cpu.value = cpu
    engine = JitProgram(prog.xlated, helpers=prog.engine.helpers, resolve_imm64=prog._resolve,
                        tail_call=prog._tail_call, memory=kernel.space.memory, checked=checked,
                        native_calls=hooks.native_calls, prelude=hooks.prelude,
                        opt_level=hooks.opt_level)  # fmt: skip
    return engine, hooks


def native_repeat(engine: JitProgram, env, args, hot, n: int) -> tuple[int, int]:
    """Run ``engine`` ``n`` times natively on the same context; (u32 r0, ns per run).

    The engine's :meth:`~pybpf.jit.engine.JitProgram.activation` fills and
    registers one run context; :class:`~pybpf.jit.maps_ir.RepeatDriver`
    calls the entry on it in a native loop.  A callout error stops the loop
    and is raised; a tail call is not followed (the runtime's test run
    follows them only in its Python loop).
    """
    with engine.activation(args, env=env, hot=hot) as act:
        result = maps_ir.RepeatDriver.shared().run(engine.entry_address, act.address, n)
        if result.status == Status.ABORT:
            act.check()
        r0 = act.words[Slot.R0]
    return r0 & 0xFFFFFFFF, result.duration_ns // max(result.calls, 1)


class PybpfSide:
    """One benchmark program loaded into a pybpf kernel with the JIT."""

    def __init__(self, bench: BenchProgram, opt_level: int | None = None, *,
                 verify: bool = True) -> None:  # fmt: skip
        # pybpf's verifier checks each program as the kernel side's verifier does
        # (``verify=False`` only for programs no verifier would take, as tests use)
        self.kernel = Kernel(ncpus=1, seed=1, verify=verify)
        self.maps = {}
        for m in bench.maps:
            self.maps[m.name] = self.kernel.map_create(
                MapAttr(m.map_type, m.key_size, m.value_size, m.max_entries, name=m.name))
        refs = {name: m.id for name, m in self.maps.items()}
        insns = bench.assemble(refs)
        self.prog = self.kernel.prog_load(insns, XDP, name=bench.name.replace("-", "_")[:15],
                                          maps={m.id: m for m in self.maps.values()})  # fmt: skip
        self.engine, self.words = jit_engine(self.prog, opt_level=opt_level)

    def run(self, repeat: int) -> tuple[int, int]:
        """(retval, ns per run) of ``repeat`` native runs on a fresh copy of the packet."""
        memory = self.kernel.space.memory
        xdp = XdpBuff(headroom=XDP_PACKET_HEADROOM, linear=PACKET)
        md = XdpMd(xdp)
        env = ExecEnv(memory=memory, kernel=self.kernel, program=self.prog, ctx=xdp, cpu=0)
        memory.add(md)
        xdp.attach(memory, None)
        try:
            return native_repeat(self.engine, env, [md.base], xdp.region, repeat)
        finally:
            xdp.detach()
            memory.remove(md)

    def close(self) -> None:
        self.engine.close()


# --- kernel side ------------------------------------------------------------------------------
class KernelSide:
    """The same program in the running kernel (its JIT, BPF_PROG_TEST_RUN)."""

    def __init__(self, bench: BenchProgram) -> None:
        from pybpf.kernel import linux

        self.maps = {m.name: linux.map_create(m.map_type, m.key_size, m.value_size,
                                              m.max_entries, name=m.name)
                     for m in bench.maps}  # fmt: skip
        insns = bench.assemble({name: m.fd for name, m in self.maps.items()})
        self.prog = linux.prog_load(insns, XDP, log_level=0, name=bench.name.replace("-", "_"))

    def run(self, repeat: int) -> tuple[int, int]:
        result = self.prog.test_run(PACKET, repeat=repeat)
        return result.retval, result.duration_ns

    def close(self) -> None:
        self.prog.close()
        for m in self.maps.values():
            m.close()


# --- the report -------------------------------------------------------------------------------
@dataclass
class Row:
    """One program's figures (ns per run, medians) and whether the results agreed."""

    name: str
    pybpf_ns: float
    kernel_ns: float | None
    agree: bool | None

    @property
    def ratio(self) -> float | None:
        if self.kernel_ns is None:
            return None
        return self.pybpf_ns / max(self.kernel_ns, 1)


def measure(bench: BenchProgram, repeat: int, rounds: int, with_kernel: bool,
            opt_level: int | None = None) -> Row:  # fmt: skip
    """Median ns/run of ``rounds`` rounds on each side, rounds interleaved."""
    ours = PybpfSide(bench, opt_level)
    theirs = KernelSide(bench) if with_kernel else None
    try:
        mine, kern, rets = [], [], set()
        for _ in range(rounds):
            ret, ns = ours.run(repeat)
            mine.append(ns)
            if theirs is not None:
                kret, kns = theirs.run(repeat)
                kern.append(kns)
                rets.add((ret, kret))
        agree = all(a == b for a, b in rets) if theirs is not None else None
        return Row(bench.name, statistics.median(mine),
                   statistics.median(kern) if kern else None, agree)  # fmt: skip
    finally:
        ours.close()
        if theirs is not None:
            theirs.close()


def geomean(values: list[float]) -> float:
    """The geometric mean of positive ``values``."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def report(rows: list[Row], reason: str | None, out: Callable[[str], object] = print) -> None:
    """Print the table and the geometric mean of the ratios."""
    out(f"{'program':<12} {'pybpf ns/run':>13} {'kernel ns/run':>14} {'ratio':>8}  same r0")
    for row in rows:
        kernel = f"{row.kernel_ns:14.1f}" if row.kernel_ns is not None else f"{'-':>14}"
        ratio = f"{row.ratio:8.2f}" if row.ratio is not None else f"{'-':>8}"
        same = {None: "-", True: "yes", False: "NO"}[row.agree]
        out(f"{row.name:<12} {row.pybpf_ns:13.1f} {kernel} {ratio}  {same}")
    ratios = [r.ratio for r in rows if r.ratio is not None]
    if ratios:
        out(f"geometric mean of pybpf/kernel: {geomean(ratios):.2f} (target <= 1.0)")
    else:
        out(f"kernel column skipped: {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.jit_bench",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--repeat", type=int, default=10000, help="runs per round (default 10000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians (default 5)")
    parser.add_argument("--only", action="append", help="run only this program (repeatable)")
    parser.add_argument("--opt-level", type=int, choices=range(4), default=None,
                        help="LLVM level for pybpf (default: the JIT's, 2 for programs of "
                             f"at most {AUTO_O2_LIMIT} instructions)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rounds < 1:
        parser.error("--repeat and --rounds must be positive")
    from pybpf.kernel import linux

    reason = linux.available()
    benches = [b for b in PROGRAMS if not args.only or b.name in args.only]
    if not benches:
        parser.error(f"no program named {args.only}; have {[b.name for b in PROGRAMS]}")
    rows = [measure(b, args.repeat, args.rounds, reason is None, args.opt_level) for b in benches]
    level = "the JIT's default" if args.opt_level is None else args.opt_level
    print(f"repeat {args.repeat}, median of {args.rounds} rounds, pybpf at LLVM level {level}")
    report(rows, reason)
    return 0 if all(r.agree is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
