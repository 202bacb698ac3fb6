"""The one codec between bytes and instructions.

Wire format (RFC 9669 section 3, little-endian as on every host pybpf runs)::

    byte 0      1                2..3        4..7
       +------+--------+--------+-----------+-----------------+
       | code | src:4  | dst:4  | off (s16) |    imm (s32)    |
       +------+--------+--------+-----------+-----------------+

``dst_reg`` is the low nibble of byte 1, ``src_reg`` the high nibble.  lddw
occupies two slots; the second has ``code``, registers and ``off`` zero and
carries the high 32 bits of the constant in its ``imm``.

Program counters ("pc") count 8-byte slots, as the kernel's do, so a jump's
target and an error's position mean the same thing everywhere.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from pybpf.errors import (
    JumpRangeError,
    ReservedFieldError,
    TruncatedError,
)
from pybpf.isa.instruction import LDDW, Instruction
from pybpf.isa.table import Kind, OpSpec, lookup

_SLOT = struct.Struct("<BBhi")
SLOT_SIZE = 8


def decode(data: bytes | bytearray | memoryview, *, validate: bool = True) -> list[Instruction]:
    """Decode eBPF bytecode into instructions.

    With ``validate`` (the default) every instruction is checked against the
    opcode table (:func:`pybpf.isa.table.lookup`); without it only the
    framing is checked, so a disassembler can show what it cannot run.
    Raises :class:`TruncatedError` when the length is not a whole number of
    slots or an lddw lacks its second half, :class:`ReservedFieldError` when
    an lddw's second slot has non-zero fields.
    """
    data = bytes(data)
    if len(data) % SLOT_SIZE:
        raise TruncatedError(
            f"{len(data)} bytes is not a whole number of 8-byte instructions",
            pc=len(data) // SLOT_SIZE,
        )
    out: list[Instruction] = []
    nslots = len(data) // SLOT_SIZE
    pc = 0
    while pc < nslots:
        code, regs, off, imm = _SLOT.unpack_from(data, pc * SLOT_SIZE)
        imm2 = 0
        if code == LDDW:
            if pc + 1 >= nslots:
                raise TruncatedError("lddw without its second half", pc=pc)
            code2, regs2, off2, imm2 = _SLOT.unpack_from(data, (pc + 1) * SLOT_SIZE)
            for name, value in (("code", code2), ("dst_reg/src_reg", regs2), ("off", off2)):
                if value:
                    raise ReservedFieldError(
                        f"lddw second half: reserved field {name} must be 0, is {value}",
                        pc=pc + 1,
                        field=name.split("/")[0],
                    )
        insn = Instruction(code, regs & 0xF, regs >> 4, off, imm, imm2)
        if validate:
            lookup(insn, pc)
        out.append(insn)
        pc += insn.slots
    return out


def encode(insns: Iterable[Instruction]) -> bytes:
    """Encode instructions to bytecode (lddw as two slots)."""
    parts: list[bytes] = []
    for insn in insns:
        parts.append(_SLOT.pack(insn.code, insn.dst_reg | insn.src_reg << 4, insn.off, insn.imm))
        if insn.code == LDDW:
            parts.append(_SLOT.pack(0, 0, 0, insn.imm2))
    return b"".join(parts)


def slot_offsets(insns: Sequence[Instruction]) -> list[int]:
    """The pc (slot index) of each instruction."""
    pcs, pc = [], 0
    for insn in insns:
        pcs.append(pc)
        pc += insn.slots
    return pcs


def jump_target(spec: OpSpec, insn: Instruction, pc: int) -> int | None:
    """The pc a jump or local call at ``pc`` may go to, or None for others."""
    if (spec.kind is Kind.JA and spec.width == 32) or spec.kind is Kind.CALL_LOCAL:
        return pc + 1 + insn.imm
    if spec.kind in (Kind.JA, Kind.JCOND, Kind.JUMP):
        return pc + 1 + insn.off
    if spec.kind is Kind.LDDW and insn.src_reg == 4:  # BPF_PSEUDO_FUNC: a callback's address
        return pc + 1 + insn.imm
    return None


def check_jumps(insns: Sequence[Instruction]) -> list[OpSpec]:
    """Validate every instruction and every pc-relative target; return the specs.

    Raises :class:`JumpRangeError` for a target outside the program or in the
    middle of an lddw, plus whatever :func:`lookup` raises.
    """
    pcs = slot_offsets(insns)
    starts = set(pcs)
    end = pcs[-1] + insns[-1].slots if insns else 0
    specs = []
    for insn, pc in zip(insns, pcs, strict=True):
        spec = lookup(insn, pc)
        target = jump_target(spec, insn, pc)
        if target is not None:
            if not 0 <= target < end:
                raise JumpRangeError(f"{spec.name} target {target} is outside [0, {end})", pc=pc)
            if target not in starts:
                raise JumpRangeError(f"{spec.name} target {target} is inside an lddw", pc=pc)
        specs.append(spec)
    return specs
