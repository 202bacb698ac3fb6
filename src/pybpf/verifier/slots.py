"""Programs as the kernel's verifier sees them: 8-byte slots.

An ld_imm64 is one :class:`~pybpf.isa.Instruction` but two slots, and the
kernel's structural checks and rewrites walk slots (a pc is a slot index),
so :mod:`.cfg` and :mod:`.xlate` work on :class:`Slot` lists and share the
few opcode facts they need here.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence
from typing import NamedTuple

from pybpf.errors import VerifierError
from pybpf.isa import Instruction, decode
from pybpf.isa.opcodes import CLASS_MASK, OP_MASK, Class, Jmp

LDDW = 0x18
CALL = int(Class.JMP | Jmp.CALL)
EXIT = int(Class.JMP | Jmp.EXIT)
JA = int(Class.JMP | Jmp.JA)
GOTOL = int(Class.JMP32 | Jmp.JA)
MAY_GOTO = int(Class.JMP | Jmp.JCOND)
EXIT_OP, CALL_OP, JA_OP = int(Jmp.EXIT), int(Jmp.CALL), int(Jmp.JA)
PSEUDO_CALL, PSEUDO_KFUNC, PSEUDO_FUNC = 1, 2, 4


class Slot(NamedTuple):
    """One 8-byte slot as the kernel's ``struct bpf_insn`` sees it."""

    code: int
    dst_reg: int
    src_reg: int
    off: int
    imm: int


WIRE = struct.Struct("<BBhi")


def to_slots(insns: Sequence[Instruction] | bytes | bytearray) -> list[Slot]:
    """The slots of a program: an ld_imm64 gives two (the second one's ``imm`` is imm2).

    Bytes are cut into slots without pairing or validating anything, so a
    malformed ld_imm64 pair reaches the checks the kernel makes on it.
    """
    if isinstance(insns, bytes | bytearray):
        data = bytes(insns)
        if len(data) % 8:
            raise VerifierError(f"{len(data)} bytes is not a whole number of instructions",
                                errno=errno.EINVAL)  # fmt: skip
        return [Slot(c, r & 0xF, r >> 4, o, i) for c, r, o, i in WIRE.iter_unpack(data)]
    slots = []
    for insn in insns:
        slots.append(Slot(insn.code, insn.dst_reg, insn.src_reg, insn.off, insn.imm))
        if insn.code == LDDW:
            slots.append(Slot(0, 0, 0, 0, insn.imm2))
    return slots


SlotLike = Slot | Instruction  # both have code, dst_reg, src_reg, off and imm


def slot_view(insns: Sequence[Instruction] | bytes | bytearray) -> list[SlotLike]:
    """:func:`to_slots` for reading only: an Instruction stands for its own first slot."""
    if isinstance(insns, bytes | bytearray):
        return list(to_slots(insns))
    view: list[SlotLike] = []
    for insn in insns:
        view.append(insn)
        if insn.code == LDDW:
            view.append(Slot(0, 0, 0, 0, insn.imm2))
    return view


JMP_CLASSES = frozenset({int(Class.JMP), int(Class.JMP32)})  # plain ints: a hot path


def is_jmp(code: int) -> bool:
    """A JMP or JMP32 class opcode."""
    return code & CLASS_MASK in JMP_CLASSES


def is_pseudo_func(s: SlotLike) -> bool:
    """An ld_imm64 of a subprogram's address (BPF_PSEUDO_FUNC)."""
    return s.code == LDDW and s.src_reg == PSEUDO_FUNC


def is_pseudo_call(s: SlotLike) -> bool:
    """A bpf-to-bpf call (BPF_PSEUDO_CALL)."""
    return s.code == CALL and s.src_reg == PSEUDO_CALL


def jump_target(pc: int, s: SlotLike) -> int:
    """Where the jump at ``pc`` goes (gotol keeps its offset in imm)."""
    return pc + 1 + (s.imm if s.code == GOTOL else s.off)


def is_cond_jump(code: int) -> bool:
    """``insn_is_cond_jump``: a two-way jump (may_goto and JMP32 jumps included)."""
    op = code & OP_MASK
    if code & CLASS_MASK == Class.JMP32:
        return op != Jmp.JA
    if code & CLASS_MASK != Class.JMP:
        return False
    return op not in (Jmp.JA, Jmp.EXIT, Jmp.CALL)


def branch_field(s: Slot) -> str | None:
    """The field holding a pc-relative target that bpf_adj_branches adjusts, if any."""
    if is_pseudo_func(s) or is_pseudo_call(s):
        return "imm"
    if not is_jmp(s.code) or s.code & OP_MASK in (EXIT_OP, CALL_OP):
        return None
    return "imm" if s.code == GOTOL else "off"


def to_instructions(slots: Sequence[Slot]) -> tuple[Instruction, ...]:
    """Slots back to instructions (ld_imm64 pairs must be whole)."""
    data = b"".join(WIRE.pack(s.code, s.dst_reg | s.src_reg << 4, s.off, s.imm) for s in slots)
    return tuple(decode(data, validate=False))
