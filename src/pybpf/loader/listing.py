"""Source annotations for listings, from a program's BTF (what bpftool and llvm-objdump show).

``bpftool prog dump xlated`` prints the function's signature above its first
instruction (``int hello(struct xdp_md * ctx):``) and each line-info record's
source line, left-trimmed, above the instruction it starts at
(``; bpf_printk("Hello World %d", counter);``); ``llvm-objdump -S`` prints
the source lines as they are in the file (``;     counter++;``).  These
functions build those lines as ``{pc: [lines]}`` for the dialects' listing
functions (:func:`pybpf.asm.xlated.disassemble`,
:func:`pybpf.asm.llvm.objdump_listing`).
"""

from __future__ import annotations

from pybpf.loader.spec import ObjectSpec, ProgramSpec


def xlated_notes(spec: ObjectSpec, prog: ProgramSpec) -> dict[int, list[str]]:
    """bpftool's annotations: function signatures and trimmed source lines."""
    notes: dict[int, list[str]] = {}
    if spec.btf is not None:
        for pc, type_id in prog.func_info:
            notes.setdefault(pc, []).append(spec.btf.type_only(type_id) + ":")
    for info in prog.line_info:
        notes.setdefault(info.insn_index, []).append(f"; {info.src}")
    return notes


def objdump_notes(prog: ProgramSpec) -> dict[int, list[str]]:
    """llvm-objdump -S's annotations: source lines as written, once each."""
    notes: dict[int, list[str]] = {}
    for info in prog.line_info:
        notes.setdefault(info.insn_index, []).append(f"; {info.line_text}")
    return notes
