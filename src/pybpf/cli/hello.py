"""``pybpf hello [OBJ]``: the seeds' walkthrough on the hello program, on pybpf's kernel.

hello.bpf.c (seeds 002 and 004) increments a global ``counter`` and prints
``Hello World %d`` with bpf_printk.  pybpf ships it, compiled with
``clang -target bpf -g -O2``, as ``pybpf/examples/hello.bpf.o``.  This command
does with it what the seeds do with bpftool: it disassembles the object as
``llvm-objdump -S`` does, loads it like libbpf (maps ``hello.bss`` and
``hello.rodata``, the latter frozen), lists the program and its maps, dumps
the xlated image with its source lines, test-runs it three times and prints
the trace pipe and the maps.  ``OBJ`` loads another object the same way (its
first program is run).
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from pathlib import Path

from pybpf.asm import llvm
from pybpf.btf import format_value
from pybpf.cli.bpftool import jited
from pybpf.cli.bpftool import prog as progcmd
from pybpf.elf.reader import read_object
from pybpf.errors import ObjectError
from pybpf.isa import decode
from pybpf.loader import ObjectSpec, load_object
from pybpf.loader.listing import objdump_notes, xlated_notes
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.progtypes import PROG_TYPES

EXAMPLE = "hello.bpf.o"


JITED_HEAD = 16  # lines of the native listing the walkthrough shows


TAG_WHY = {
    "sha256": "as Linux 6.18 computes it",
    "sha1": "as kernels before 6.18 and the seed documents show it (--tag-algo sha1)",
}


def example_bytes(name: str = EXAMPLE) -> bytes:
    """The bytes of an object shipped in ``pybpf/examples``."""
    return resources.files("pybpf.examples").joinpath(name).read_bytes()


def main(path: str | None = None, *, tag_algorithm: str | None = None) -> int:
    """Print the walkthrough; exit status 0."""
    try:
        data = example_bytes() if path is None else Path(path).read_bytes()
    except OSError as err:
        raise ObjectError(f"cannot read {path}: {err.strerror}") from None
    spec = ObjectSpec.from_bytes(data, path or EXAMPLE)
    print(f"$ llvm-objdump -S {path or EXAMPLE}")
    elf = read_object(data, path or EXAMPLE)
    for prog in spec.programs:
        # the bytes as compiled (before relocation), as llvm-objdump shows them
        size = 8 * (prog.subprograms[0][1] if prog.subprograms else prog.slots)
        raw = elf.section(prog.section).data[prog.section_offset : prog.section_offset + size]
        print(f"\nDisassembly of section {prog.section}:\n\n"
              f"{prog.section_offset:016x} <{prog.name}>:")  # fmt: skip
        print(llvm.objdump_listing(decode(raw, validate=False), notes=objdump_notes(prog)), end="")

    # verifies every program, then JIT-compiles it (bpf_jit_enable=1)
    kernel = Kernel(tag_algorithm=tag_algorithm)
    coll = load_object(spec, kernel, log_level=2)
    print(f"\n$ pybpf -d prog load {path or EXAMPLE} /sys/fs/bpf/hello   (-d: the verifier's log)")
    for prog in coll.programs.values():
        print(f"libbpf: prog '{prog.name}': -- BEGIN PROG LOAD LOG --\n"
              f"{prog.verdict.log.rstrip()}\n-- END PROG LOAD LOG --")  # fmt: skip
    print("\n$ pybpf prog list")
    for prog in coll.programs.values():
        loaded = datetime.fromtimestamp(prog.loaded_at).astimezone()
        print(f"{prog.id}: {PROG_TYPES[prog.prog_type].name}  name {prog.name}  tag {prog.tag}"
              f"{'  gpl' if prog.gpl_compatible else ''}")  # fmt: skip
        print(f"\tloaded_at {loaded.strftime('%Y-%m-%dT%H:%M:%S%z')}  uid {prog.uid}")
        ids = ",".join(map(str, prog.map_ids))
        jit = f"jited {jited.bytes_jited(prog)}B" if prog.engine_name == "jit" else "not jited"
        print(f"\txlated {prog.bytes_xlated}B  {jit}  map_ids {ids}")
        other = "sha1" if kernel.tag_algorithm == "sha256" else "sha256"
        print(f"\t(tag: {kernel.tag_algorithm.upper()}, {TAG_WHY[kernel.tag_algorithm]}; "
              f"{other.upper()} gives {prog.tag_with(other)}, {TAG_WHY[other]})")
    print("\n$ pybpf map list")
    for m in coll.maps.values():
        print(f"{m.id}: {m.map_type.name.lower()}  name {m.name}  flags {m.map_flags:#x}")
        print(f"\tkey {m.key_size}B  value {m.value_size}B  max_entries {m.max_entries}"
              f"{'  frozen' if m.frozen else ''}")  # fmt: skip

    first = spec.programs[0]
    prog = coll.programs[first.name]
    print(f"\n$ pybpf prog dump xlated name {prog.name}")
    prog.notes = xlated_notes(spec, first)  # the source lines bpftool prints above the code
    print(progcmd.xlated_plain(prog), end="")
    if prog.engine_name == "jit":
        listing = jited.dump_plain(prog).splitlines()
        print(f"\n$ pybpf prog dump jited name {prog.name} | head -{JITED_HEAD}")
        print("\n".join(listing[:JITED_HEAD]))
        if len(listing) > JITED_HEAD:
            print(f"... ({len(listing) - JITED_HEAD} more lines of x86-64)")
    print(f"\n$ pybpf prog run name {prog.name} data_in packet   (three times)")
    for _ in range(3):
        result = coll.run(first.name, bytes(64))
        print(f"Return value: {result.retval}, duration (average): {result.duration_ns}ns")
    print("\n$ cat /sys/kernel/tracing/trace_pipe")
    print("\n".join(kernel.trace.read()))
    for m in coll.maps.values():
        print(f"\n$ pybpf map dump name {m.name}")
        print(json.dumps(_dump(spec, m), indent=4))
    coll.close()
    return 0


def _dump(spec: ObjectSpec, m) -> list:
    """A map's contents as bpftool's JSON with BTF: [{"value": ...}] for global data."""
    out = []
    for key, value in m.items():
        type_id = m.spec.btf_value_type_id if spec.btf is not None else 0
        if type_id:
            out.append({"value": format_value(spec.btf, type_id, value)})
        else:
            out.append({"key": key.hex(" "), "value": value.hex(" ")})
    return out
