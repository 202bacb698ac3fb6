"""The Instruction type: one logical eBPF instruction, as struct bpf_insn names it.

An instruction is 8 bytes on the wire, except ``lddw`` (BPF_LD | BPF_IMM |
BPF_DW), which takes two 8-byte slots; its second slot's ``imm`` is kept here
as ``imm2`` so one Instruction is one logical instruction.  ``off`` and
``imm`` are signed, as in the kernel (``__s16``, ``__s32``); ``imm2`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.errors import EncodeError
from pybpf.isa.opcodes import CLASS_MASK, MODE_MASK, OP_MASK, SIZE_MASK, SOURCE_MASK, Class

LDDW = 0x18  # BPF_LD | BPF_IMM | BPF_DW


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise EncodeError(f"{name} {value!r} does not fit [{lo}, {hi}]")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One eBPF instruction (``struct bpf_insn``; lddw carries its second imm).

    Construction checks that every field fits its wire width and raises
    :class:`~pybpf.errors.EncodeError` otherwise; whether the combination is a
    valid instruction is :func:`pybpf.isa.table.lookup`'s question.
    """

    code: int
    dst_reg: int = 0
    src_reg: int = 0
    off: int = 0
    imm: int = 0
    imm2: int = 0

    def __post_init__(self) -> None:
        _check("code", self.code, 0, 0xFF)
        _check("dst_reg", self.dst_reg, 0, 0xF)
        _check("src_reg", self.src_reg, 0, 0xF)
        _check("off", self.off, -0x8000, 0x7FFF)
        _check("imm", self.imm, -0x80000000, 0x7FFFFFFF)
        _check("imm2", self.imm2, -0x80000000, 0x7FFFFFFF)
        if self.imm2 and self.code != LDDW:
            raise EncodeError("imm2 is only used by lddw")

    # --- fields read through the class ----------------------------------
    @property
    def cls(self) -> Class:
        """The instruction class (low 3 bits of ``code``)."""
        return Class(self.code & CLASS_MASK)

    @property
    def op(self) -> int:
        """ALU/JMP operation bits (``code & 0xf0``); meaningless for loads/stores."""
        return self.code & OP_MASK

    @property
    def source(self) -> int:
        """ALU/JMP source bit (``code & 0x08``): 0 = K (imm), 8 = X (src_reg)."""
        return self.code & SOURCE_MASK

    @property
    def mode(self) -> int:
        """Load/store mode bits (``code & 0xe0``)."""
        return self.code & MODE_MASK

    @property
    def size(self) -> int:
        """Load/store size bits (``code & 0x18``)."""
        return self.code & SIZE_MASK

    @property
    def slots(self) -> int:
        """Number of 8-byte slots on the wire: 2 for lddw, else 1."""
        return 2 if self.code == LDDW else 1

    @property
    def imm64(self) -> int:
        """lddw's 64-bit constant, unsigned (``imm`` low half, ``imm2`` high half)."""
        return (self.imm & 0xFFFFFFFF) | ((self.imm2 & 0xFFFFFFFF) << 32)

    @classmethod
    def lddw(cls, dst_reg: int, value: int, src_reg: int = 0) -> Instruction:
        """Build an lddw loading the 64-bit ``value`` (signed or unsigned)."""
        value &= (1 << 64) - 1
        lo, hi = value & 0xFFFFFFFF, value >> 32
        return cls(LDDW, dst_reg, src_reg, 0, _s32(lo), _s32(hi))


def _s32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value
