"""``pybpf hello``: the seed's hello program, from bytes to three runs.

hello.bpf.c (seeds 002 and 004) increments a global ``counter`` and prints
``Hello World %d`` with bpf_printk.  Compiled, its xdp section holds the 12
slots below; the two ld_imm64 refer to the ``.bss`` and ``.rodata`` global
data through relocations.  This command shows what the seeds show of it —
the llvm-objdump listing, the load (relocation to map values), the tag, the
xlated listing — then runs it three times in the interpreter with a
``.bss`` and a ``.rodata`` region and a bpf_trace_printk that writes the
kernel's trace-pipe line.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace

from pybpf.asm import llvm, xlated
from pybpf.isa import LDDW, Instruction, Pseudo, decode
from pybpf.isa.helper_ids import helper_id
from pybpf.runtime.tag import prog_tag
from pybpf.vm import HelperTable, Interpreter, Region

HELLO_XDP = bytes.fromhex(
    "18060000000000000000000000000000"  # r6 = 0 ll        (.bss, relocated)
    "6163000000000000"  # r3 = *(u32 *)(r6 + 0)
    "18010000000000000000000000000000"  # r1 = 0 ll        (.rodata, relocated)
    "b70200000f000000"  # r2 = 15
    "8500000006000000"  # call 6           (bpf_trace_printk)
    "6161000000000000"  # r1 = *(u32 *)(r6 + 0)
    "0701000001000000"  # r1 += 1
    "6316000000000000"  # *(u32 *)(r6 + 0) = r1
    "b700000002000000"  # r0 = 2           (XDP_PASS)
    "9500000000000000"  # exit
)
BSS_ID, RODATA_ID = 20, 21  # the map ids of the seed's session
_START = time.monotonic()


def relocate(insns: list[Instruction]) -> list[Instruction]:
    """What the loader does: the first ld_imm64 becomes &.bss[0], the second &.rodata[0]."""
    maps = iter((BSS_ID, RODATA_ID))
    return [
        replace(i, src_reg=Pseudo.MAP_VALUE, imm=next(maps), imm2=0) if i.code == LDDW else i
        for i in insns
    ]


def trace_printk_line(message: str) -> str:
    """A line as /sys/kernel/tracing/trace_pipe shows it."""
    stamp = time.monotonic() - _START
    return f"{'pybpf':>16}-{os.getpid():<7} [000] d..21 {stamp:12.6f}: bpf_trace_printk: {message}"


def _printf(fmt: str, args: list[int]) -> str:
    values = iter(args)

    def one(m: re.Match[str]) -> str:
        spec = m.group(0)
        if spec == "%%":
            return "%"
        value = next(values, 0)
        conv, long = spec[-1], "ll" in spec or "l" in spec
        bits = 64 if long else 32
        value &= (1 << bits) - 1
        if conv in "di":
            value -= (1 << bits) if value >> (bits - 1) else 0
            return str(value)
        return {"u": str(value), "x": f"{value:x}", "X": f"{value:X}"}.get(conv, spec)

    return re.sub(r"%%|%l{0,2}[diuxX]", one, fmt)


def main() -> int:
    """Print the walkthrough; exit status 0."""
    insns = decode(HELLO_XDP)
    print(
        "$ llvm-objdump -d hello.bpf.o\n\nDisassembly of section xdp:\n\n0000000000000000 <hello>:"
    )
    print(llvm.objdump_listing(insns), end="")

    loaded = relocate(insns)
    print(
        f"\nloaded: xdp  name hello  tag {prog_tag(loaded)}  gpl"
        f"  (sha256 tag as on 6.18: {prog_tag(loaded, 'sha256')})"
    )
    print(f"        xlated {len(HELLO_XDP)}B  map_ids {BSS_ID},{RODATA_ID}\n")
    print("$ bpftool prog dump xlated name hello")
    print(xlated.disassemble(loaded), end="")

    bss = Region("hello.bss", bytearray(4))
    rodata = Region("hello.rodata", bytearray(b"Hello World %d\0"), writable=False)
    regions = {BSS_ID: bss, RODATA_ID: rodata}
    trace: list[str] = []

    def trace_printk(env, fmt, size, a1, a2, a3):
        text = env.memory.read(fmt, size).split(b"\0")[0].decode("utf-8", "replace")
        trace.append(trace_printk_line(_printf(text, [a1, a2, a3])))
        return len(trace[-1])

    helpers = HelperTable()
    helpers.register(helper_id("trace_printk"), "bpf_trace_printk", trace_printk)
    vm = Interpreter(
        loaded, helpers=helpers, resolve_imm64=lambda insn, pc: regions[insn.imm].base + insn.imm2
    )
    for region in regions.values():
        vm.memory.add(region)
    print("\n$ bpftool prog run name hello data_in packet repeat 1   (three times)")
    for _ in range(3):
        result = vm.run(memory=bytes(64))
        print(f"Return value: {result.r0}, executed {result.executed} instructions")
    print("\n$ cat /sys/kernel/tracing/trace_pipe")
    print("\n".join(trace))
    counter = int.from_bytes(bss.buf, "little")
    dump = json.dumps([{"value": {".bss": [{"counter": counter}]}}])
    print(f"\n$ bpftool map dump name hello.bss\n{dump}")
    return 0
