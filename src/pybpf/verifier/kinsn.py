"""The kernel's instruction macros (include/linux/filter.h) for the shown image's rewrites.

``BPF_LDX_MEM``, ``BPF_ALU64_IMM``, ``BPF_JMP_IMM``... as small builders, the opcode
pieces they combine, and the patch type the rewrites return: replacement
instructions, each with the kernel function a call reaches or the :class:`Target`
of a branch that leaves the patch.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.isa import Instruction

XDP, CGROUP_SOCK, SK_SKB, SK_MSG = 6, 9, 14, 16
AX = 11  # BPF_REG_AX, the kernel's scratch register
# opcode pieces (include/uapi/linux/bpf.h)
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
MEM, MEMSX, ABS, IND = 0x60, 0x80, 0x20, 0x40
SIZE = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}  # BPF_B, BPF_H, BPF_W, BPF_DW
BYTES = {v: k for k, v in SIZE.items()}
ADD, SUB, MUL, DIV, AND, LSH, RSH, NEG, MOD, XOR, MOV = (
    0x00, 0x10, 0x20, 0x30, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0)  # fmt: skip
JA, JEQ, JGT, JGE, JSET, JNE, JSGE, JLE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x70, 0xB0
PSEUDO_CALL = 1
K, X = 0x00, 0x08
CALL, EXIT = 0x85, 0x95


# --- instruction builders (the kernel's BPF_* macros) ------------------------------------
def ldx(size: int, dst: int, src: int, off: int) -> Instruction:
    return Instruction(LDX | MEM | SIZE[size], dst, src, off)


def alu64_imm(op: int, dst: int, imm: int) -> Instruction:
    return Instruction(ALU64 | op | K, dst, 0, 0, imm)


def alu32_imm(op: int, dst: int, imm: int) -> Instruction:
    return Instruction(ALU | op | K, dst, 0, 0, imm)


def alu64_reg(op: int, dst: int, src: int) -> Instruction:
    return Instruction(ALU64 | op | X, dst, src)


def jmp_imm(op: int, dst: int, imm: int, off: int, cls: int = JMP) -> Instruction:
    return Instruction(cls | op | K, dst, 0, off, imm)


def ja(off: int) -> Instruction:
    return Instruction(JMP | JA, 0, 0, off)


def call(imm: int = 0) -> Instruction:
    return Instruction(CALL, 0, 0, 0, imm)


# A patch: the replacement instructions, each with the kernel function a call reaches.
# An instruction may instead carry a ``Target``: a branch aimed at a pc of the kept image.
Patch = list[tuple[Instruction, "str | Target | None"]]


@dataclass(frozen=True)
class Target:
    """The pc of the kept image a branch of a patch goes to (moved with the image)."""

    pc: int



def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


