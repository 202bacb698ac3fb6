"""``pybpf hello``: the seed's hello program, from bytes to three runs.

hello.bpf.c (seeds 002 and 004) increments a global ``counter`` and prints
``Hello World %d`` with bpf_printk.  Compiled, its xdp section holds the 12
slots below; the two ld_imm64 refer to the ``.bss`` and ``.rodata`` global
data through relocations.  This command does what the seeds do with it, on
pybpf's simulated kernel: it shows the llvm-objdump listing, creates the
``hello.bss`` and ``hello.rodata`` maps as libbpf would (``.rodata`` frozen),
loads the program as XDP (relocating the two loads to map values), lists it
and its xlated image as bpftool would, test-runs it three times and prints
the trace pipe and the ``.bss`` map.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from pybpf.asm import llvm, xlated
from pybpf.isa import LDDW, Instruction, Pseudo, decode
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType
from pybpf.runtime.progtypes import ProgType
from pybpf.runtime.testrun import test_run

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
BSS_FD, RODATA_FD = 3, 4  # the fds a loader would hold


def relocate(insns: list[Instruction]) -> list[Instruction]:
    """What libbpf does: the first ld_imm64 becomes &.bss[0], the second &.rodata[0]."""
    fds = iter((BSS_FD, RODATA_FD))
    return [
        replace(i, src_reg=Pseudo.MAP_VALUE, imm=next(fds), imm2=0) if i.code == LDDW else i
        for i in insns
    ]


def load(kernel: Kernel, insns: list[Instruction] | None = None):
    """Create hello's global-data maps and load the program; returns (prog, bss, rodata).

    ``insns`` defaults to the compiled bytes, relocated; map references in
    them use fd 3 for .bss and fd 4 for .rodata.
    """
    bss = kernel.map_create(MapAttr(MapType.ARRAY, 4, 4, 1, MapFlag.MMAPABLE, "hello.bss"))
    ro_flags = MapFlag.MMAPABLE | MapFlag.RDONLY_PROG
    rodata = kernel.map_create(MapAttr(MapType.ARRAY, 4, 15, 1, ro_flags, "hello.rodata"))
    rodata.update(bytes(4), b"Hello World %d\0")
    rodata.freeze()
    insns = relocate(decode(HELLO_XDP)) if insns is None else insns
    fds = {BSS_FD: bss, RODATA_FD: rodata}
    prog = kernel.prog_load(insns, ProgType.XDP, name="hello", license="Dual BSD/GPL", maps=fds)
    return prog, bss, rodata


def main() -> int:
    """Print the walkthrough; exit status 0."""
    print(
        "$ llvm-objdump -d hello.bpf.o\n\nDisassembly of section xdp:\n\n0000000000000000 <hello>:"
    )
    print(llvm.objdump_listing(decode(HELLO_XDP)), end="")

    kernel = Kernel()
    prog, bss, rodata = load(kernel)
    loaded = datetime.fromtimestamp(prog.loaded_at).astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    print("\n$ pybpf prog list")
    print(f"{prog.id}: xdp  name {prog.name}  tag {prog.tag}  gpl")
    print(f"\tloaded_at {loaded}  uid {prog.uid}")
    print(f"\txlated {prog.bytes_xlated}B  not jited  map_ids {','.join(map(str, prog.map_ids))}")
    print(f"\t(tag as Linux 6.18 computes it, with SHA-256: {prog.tag_with('sha256')})")
    print("\n$ pybpf map list")
    for m in (bss, rodata):
        frozen = "  frozen" if m.frozen else ""
        print(f"{m.id}: array  name {m.name}  flags {m.map_flags:#x}")
        print(f"\tkey {m.key_size}B  value {m.value_size}B  max_entries {m.max_entries}{frozen}")
    print("\n$ pybpf prog dump xlated name hello")
    print(xlated.disassemble(prog.xlated), end="")

    print("\n$ pybpf prog run name hello data_in packet   (three times)")
    for _ in range(3):
        result = test_run(prog, data_in=bytes(64))
        print(f"Return value: {result.retval}, duration (average): {result.duration_ns}ns")
    print("\n$ cat /sys/kernel/tracing/trace_pipe")
    print("\n".join(kernel.trace.read()))
    counter = int.from_bytes(bss.lookup(bytes(4)), "little")
    print("\n$ pybpf map dump name hello.bss")
    print(json.dumps([{"value": {".bss": [{"counter": counter}]}}], indent=4))
    return 0
