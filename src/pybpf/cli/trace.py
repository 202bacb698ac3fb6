"""Execution traces for people: each executed instruction and the registers it changed.

    pybpf run prog.s --trace
       0: r2 = 15                           r2 = 0xf
       1: r2 += r1                          r2 = 0x7f3a1c0010ef
       2: exit

A :class:`RegisterTrace` is the interpreter's ``tracer``: it is called with
the registers *before* each instruction, so an instruction's effect is known
when the next one starts (or when the run ends: :meth:`RegisterTrace.finish`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from pybpf.asm import llvm
from pybpf.isa import Instruction, slot_offsets


class RegisterTrace:
    """Writes one line per executed instruction to ``out``."""

    def __init__(self, insns: Sequence[Instruction], out: TextIO, limit: int = 100_000) -> None:
        self.text = {
            pc: llvm.format_insn(i) for pc, i in zip(slot_offsets(insns), insns, strict=True)
        }
        self.out = out
        self.limit = limit
        self.lines = 0
        self._pending: tuple[int, tuple[int, ...]] | None = None

    def __call__(self, pc: int, regs: tuple[int, ...]) -> None:
        if self._pending is not None:
            self._line(*self._pending, regs)
        self._pending = (pc, regs)

    def finish(self, r0: int) -> None:
        """Write the last instruction (the final exit), whose effect is the result."""
        if self._pending is not None:
            pc, before = self._pending
            self._line(pc, before, (r0, *before[1:]))
            self._pending = None

    def _line(self, pc: int, before: tuple[int, ...], after: tuple[int, ...]) -> None:
        self.lines += 1
        if self.lines > self.limit:
            if self.lines == self.limit + 1:
                self.out.write(f"... (trace stops after {self.limit} instructions)\n")
            return
        pairs = enumerate(zip(before, after, strict=True))
        changed = "  ".join(f"r{i} = {a:#x}" for i, (b, a) in pairs if a != b)
        self.out.write(f"{pc:4d}: {self.text.get(pc, '?'):<34}{changed}".rstrip() + "\n")
