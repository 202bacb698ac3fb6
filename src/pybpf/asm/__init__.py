"""Assembly text in three dialects, all driven by the opcode table.

* ``llvm``: the llvm-objdump / kernel C-like syntax (``r2 = 15``, ``call 6``)
* ``ubpf``: the bpf_conformance / uBPF syntax (``mov %r2, 15``)
* ``xlated``: bpftool's ``prog dump xlated`` listing (``   5: (b7) r2 = 15``)

plus the ``objdump`` listing (``llvm-objdump -d`` lines with raw bytes),
which is output only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from types import ModuleType

from pybpf.asm import llvm, ubpf, xlated
from pybpf.isa import Instruction

DIALECTS: dict[str, ModuleType] = {"llvm": llvm, "ubpf": ubpf, "xlated": xlated}

LISTINGS: dict[str, Callable[[Sequence[Instruction]], str]] = {
    "llvm": llvm.disassemble,
    "ubpf": ubpf.disassemble,
    "xlated": xlated.disassemble,
    "objdump": llvm.objdump_listing,
}


def detect(text: str) -> str:
    """Guess the dialect of assembly ``text``: xlated, ubpf or llvm."""
    if re.search(r"^\s*\d+:\s*\([0-9a-f]{2}\)", text, re.M):
        return "xlated"
    if "%r" in text or re.search(r"^\s*(mov|lddw|ldx\w*|st[bhwdx]\w*|j[a-z]+)\s", text, re.M):
        return "ubpf"
    return "llvm"


def assemble(text: str, dialect: str | None = None) -> list[Instruction]:
    """Assemble ``text`` in ``dialect`` (detected when None)."""
    return DIALECTS[dialect or detect(text)].assemble(text)


def disassemble(insns: Sequence[Instruction], listing: str = "llvm") -> str:
    """Text of ``insns`` in one of :data:`LISTINGS`."""
    return LISTINGS[listing](insns)


__all__ = ["DIALECTS", "LISTINGS", "assemble", "detect", "disassemble"]
