"""The kernel's reading of one instruction's encoding, apart from any register state.

Linux 6.18 refuses malformed instructions in two places.  Before it walks
anything, ``resolve_pseudo_ldimm64`` refuses unknown opcode bytes, LDX
modes other than MEM/MEMSX, an LDX with an ``imm`` and broken ld_imm64
pairs (:mod:`.cfg` does that).  Every other field is checked by
``do_check`` when the walk reaches the instruction, by the function that
handles its class: ``check_alu_op`` ("BPF_ALU uses reserved fields",
"BPF_MOV ...", "BPF_NEG ...", "BPF_END ..."), the STX/ST/CALL/JA/EXIT
branches of ``do_check_insn``, ``check_atomic``, ``check_cond_jmp_op``,
``check_ld_imm`` and ``check_ld_abs``; each refuses with EINVAL.  Register
numbers are ``check_reg_arg``'s: a register above r10 is "R%d is invalid"
(EINVAL) where the instruction reads or writes it, and writing r10 is
"frame pointer is read only" (EACCES); the checker does those, in the
kernel's order among the state checks.  A malformed instruction on a path
the walk never takes is never refused, as in the kernel.

:func:`decode` gives what an instruction is to the checker: the opcode
table's :class:`~pybpf.isa.OpSpec` it behaves as, and the kernel's refusal
of its encoding, if any.  Most refusals come before the instruction touches
a register; two come after the kernel's first check (``late``): a
conditional jump reads its destination register first, and LD_ABS/LD_IND
first check that the program type may use them.

pybpf's opcode table is stricter than the kernel in a few places (an
``exit`` with an ``off`` loads), so :func:`spec_of` names an instruction
by its opcode byte and discriminating field alone, and :func:`decode`
applies the kernel's rules, not the table's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pybpf.isa import SPECS, Instruction, OpSpec
from pybpf.isa.opcodes import (
    CLASS_MASK,
    MODE_MASK,
    OP_MASK,
    SIZE_MASK,
    SOURCE_MASK,
    Alu,
    AtomicOp,
    Class,
    Jmp,
    Mode,
    Size,
)

ADDR_SPACE_CAST = 1  # BPF_ADDR_SPACE_CAST: off of an ALU64 mov between address spaces
_RMW = frozenset(
    {AtomicOp.ADD, AtomicOp.AND, AtomicOp.OR, AtomicOp.XOR, AtomicOp.XCHG, AtomicOp.CMPXCHG}
    | {op | AtomicOp.FETCH for op in (AtomicOp.ADD, AtomicOp.AND, AtomicOp.OR, AtomicOp.XOR)}
)
_MAX_REG = 10


@dataclass(frozen=True, slots=True)
class Decoded:
    """An instruction as the checker runs it.

    ``spec`` is the table's instruction it behaves as (None when the kernel
    refuses it before any register is looked at); ``fault`` the kernel's
    refusal of its encoding (always EINVAL), raised when the walk reaches
    it, after the kernel's first check when ``late``.
    """

    spec: OpSpec | None
    fault: str | None = None
    late: bool = False


def _index() -> tuple[dict[int, OpSpec], dict[tuple[int, int], OpSpec], dict[int, str]]:
    plain: dict[int, OpSpec] = {}
    by_disc: dict[tuple[int, int], OpSpec] = {}
    disc_field: dict[int, str] = {}
    for spec in SPECS:
        if spec.disc is None:
            plain[spec.code] = spec
        else:
            field, value = spec.disc
            disc_field[spec.code] = field
            by_disc[(spec.code, value)] = spec
    return plain, by_disc, disc_field


_PLAIN, _BY_DISC, _DISC_FIELD = _index()


def spec_of(insn: Instruction) -> OpSpec | None:
    """The table's instruction named by the opcode byte (and the field that
    discriminates it: ``off``, ``imm`` or ``src_reg``); other fields unchecked."""
    spec = _PLAIN.get(insn.code)
    if spec is not None:
        return spec
    field = _DISC_FIELD.get(insn.code)
    if field is None:
        return None
    return _BY_DISC.get((insn.code, getattr(insn, field)))


def valid_reg(regno: int) -> bool:
    """``check_reg_arg``'s range: r0 to r10."""
    return 0 <= regno <= _MAX_REG


@functools.lru_cache(maxsize=4096)
def decode(insn: Instruction) -> Decoded:
    """The kernel's verdict on ``insn``'s encoding and the spec it runs as."""
    cls = insn.code & CLASS_MASK
    if cls in (Class.ALU, Class.ALU64):
        return _alu(insn, cls)
    if cls in (Class.JMP, Class.JMP32):
        return _jmp(insn, cls)
    if cls == Class.LDX:
        mode = insn.code & MODE_MASK
        if mode not in (Mode.MEM, Mode.MEMSX) or insn.imm:
            return _fault("BPF_LDX uses reserved fields")
        return _known(insn)
    if cls == Class.STX:
        return _stx(insn)
    if cls == Class.ST:
        if insn.code & MODE_MASK != Mode.MEM or insn.src_reg:
            return _fault("BPF_ST uses reserved fields")
        return _known(insn)
    return _ld(insn)


def _fault(message: str, spec: OpSpec | None = None, *, late: bool = False) -> Decoded:
    return Decoded(spec, message, late)


def _known(insn: Instruction) -> Decoded:
    spec = spec_of(insn)
    if spec is None:  # resolve_pseudo_ldimm64 refuses it before the walk
        return _fault(f"unknown opcode {insn.code:02x}")
    return Decoded(spec)


def _alu(insn: Instruction, cls: int) -> Decoded:
    """check_alu_op's checks of the encoding, in its order."""
    op = insn.code & OP_MASK
    x = bool(insn.code & SOURCE_MASK)
    if op == Alu.NEG:
        if x or insn.src_reg or insn.off or insn.imm:
            return _fault("BPF_NEG uses reserved fields")
    elif op == Alu.END:
        if (insn.src_reg or insn.off or insn.imm not in (16, 32, 64)
                or (cls == Class.ALU64 and x)):  # fmt: skip
            return _fault("BPF_END uses reserved fields")
    elif op == Alu.MOV:
        if not x:
            if insn.src_reg or insn.off:
                return _fault("BPF_MOV uses reserved fields")
        elif cls == Class.ALU:
            if insn.off not in (0, 8, 16) or insn.imm:
                return _fault("BPF_MOV uses reserved fields")
        elif insn.off == ADDR_SPACE_CAST:
            if insn.imm not in (1, 1 << 16):
                return _fault("addr_space_cast insn can only convert between address space 1 "
                              "and 0")  # fmt: skip
            # pybpf has no arena maps, so no program has one
            return _fault("addr_space_cast insn can only be used in a program that has an "
                          "associated arena")  # fmt: skip
        elif insn.off not in (0, 8, 16, 32) or insn.imm:
            return _fault("BPF_MOV uses reserved fields")
    elif op > Alu.END:
        return _fault(f"invalid BPF_ALU opcode {op:x}")
    else:
        signed_ok = op in (Alu.DIV, Alu.MOD)
        if (insn.imm if x else insn.src_reg) or insn.off not in (0, 1) or (
                insn.off == 1 and not signed_ok):  # fmt: skip
            return _fault("BPF_ALU uses reserved fields")
    return _known(insn)


def _stx(insn: Instruction) -> Decoded:
    mode = insn.code & MODE_MASK
    if mode == Mode.ATOMIC:  # check_atomic: the operation in imm, then the size
        imm = insn.imm
        if imm in _RMW:
            if insn.code & SIZE_MASK not in (Size.W, Size.DW):
                return _fault("invalid atomic operand size")
        elif imm not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL):
            return _fault(f"BPF_ATOMIC uses invalid atomic opcode {imm & 0xFFFFFFFF:02x}")
        return _known(insn)
    if mode != Mode.MEM or insn.imm:
        return _fault("BPF_STX uses reserved fields")
    return _known(insn)


def _jmp(insn: Instruction, cls: int) -> Decoded:
    """do_check_insn's checks of calls, gotos and exits; check_cond_jmp_op's of the rest."""
    op = insn.code & OP_MASK
    x = bool(insn.code & SOURCE_MASK)
    if op == Jmp.CALL:
        if (x or (insn.src_reg != 2 and insn.off) or insn.src_reg not in (0, 1, 2)
                or insn.dst_reg or cls == Class.JMP32):  # fmt: skip
            return _fault("BPF_CALL uses reserved fields")
        return _known(insn)
    if op == Jmp.JA:
        if (x or insn.src_reg or insn.dst_reg
                or (insn.imm if cls == Class.JMP else insn.off)):  # fmt: skip
            return _fault("BPF_JA uses reserved fields")
        return _known(insn)
    if op == Jmp.EXIT:
        if x or insn.imm or insn.src_reg or insn.dst_reg or cls == Class.JMP32:
            return _fault("BPF_EXIT uses reserved fields")
        return _known(insn)
    if op > Jmp.JCOND:
        return _fault(f"invalid BPF_JMP/JMP32 opcode {op:x}")
    if op == Jmp.JCOND:
        if cls != Class.JMP or x or insn.src_reg or insn.dst_reg or insn.imm:
            return _fault(f"invalid may_goto imm {insn.imm}")
        return _known(insn)
    known = _known(insn)
    if (insn.imm if x else insn.src_reg) and known.fault is None:
        # refused after the destination register is read
        return _fault("BPF_JMP/JMP32 uses reserved fields", known.spec, late=True)
    return known


def _ld(insn: Instruction) -> Decoded:
    mode = insn.code & MODE_MASK
    if mode == Mode.IMM:  # check_ld_imm (the pair and src_reg were checked before the walk)
        if insn.code & SIZE_MASK != Size.DW:
            return _fault("invalid BPF_LD_IMM insn")
        if insn.off:
            return _fault("BPF_LD_IMM64 uses reserved fields")
        return _known(insn)
    if mode in (Mode.ABS, Mode.IND):
        known = _known(insn)
        if known.fault is None and (insn.dst_reg or insn.off or (
                mode == Mode.ABS and insn.src_reg)):  # fmt: skip
            # refused after the program type is found to allow them
            return _fault("BPF_LD_[ABS|IND] uses reserved fields", known.spec, late=True)
        return known
    return _fault("invalid BPF_LD mode")


__all__ = ["ADDR_SPACE_CAST", "Decoded", "decode", "spec_of", "valid_reg"]
