"""Named bit-fields of the eBPF opcode byte (RFC 9669 section 3, linux/bpf.h).

The opcode byte is read one of two ways, by its 3-bit class::

      7   6   5   4   3   2   1   0
    +---------------+---+-----------+
    |      op       | s |   class   |     ALU, ALU64, JMP, JMP32
    +-----------+---+---+-----------+
    |   mode    |  size |   class   |     LD, LDX, ST, STX
    +-----------+-------+-----------+

``s`` is the source bit: 0 = K (use ``imm``), 1 = X (use ``src_reg``).  For
ALU's END operation the same bit chooses the byte order (TO_LE / TO_BE).

All values are the kernel's (include/uapi/linux/bpf.h, bpf_common.h); names
follow them without the ``BPF_`` prefix.
"""

from __future__ import annotations

from enum import IntEnum


class Class(IntEnum):
    """The instruction class: the low 3 bits of the opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Source(IntEnum):
    """Bit 3 of arithmetic and jump opcodes."""

    K = 0x00
    X = 0x08


class Alu(IntEnum):
    """The high 4 bits of ALU / ALU64 opcodes."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class Jmp(IntEnum):
    """The high 4 bits of JMP / JMP32 opcodes."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0  # Linux extension: may_goto


class Size(IntEnum):
    """Bits 3-4 of load/store opcodes."""

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18


SIZE_BYTES: dict[Size, int] = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}
SIZE_NAME: dict[Size, str] = {Size.B: "u8", Size.H: "u16", Size.W: "u32", Size.DW: "u64"}


class Mode(IntEnum):
    """Bits 5-7 of load/store opcodes."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class AtomicOp(IntEnum):
    """``imm`` of BPF_STX | BPF_ATOMIC instructions."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH = 0x01
    XCHG = 0xE0 | 0x01
    CMPXCHG = 0xF0 | 0x01
    LOAD_ACQ = 0x100
    STORE_REL = 0x110


class Pseudo(IntEnum):
    """``src_reg`` of BPF_LD | BPF_IMM | BPF_DW (ld_imm64)."""

    IMM64 = 0
    MAP_FD = 1
    MAP_VALUE = 2
    BTF_ID = 3
    FUNC = 4
    MAP_IDX = 5
    MAP_IDX_VALUE = 6


class CallKind(IntEnum):
    """``src_reg`` of BPF_JMP | BPF_CALL."""

    HELPER = 0
    LOCAL = 1  # BPF_PSEUDO_CALL: bpf-to-bpf, imm is the pc-relative target
    KFUNC = 2  # BPF_PSEUDO_KFUNC_CALL: imm is a BTF id, off a module index


CLASS_MASK = 0x07
SOURCE_MASK = 0x08
OP_MASK = 0xF0
SIZE_MASK = 0x18
MODE_MASK = 0xE0

MAX_REG = 10  # r10 is the read-only frame pointer
STACK_SIZE = 512  # bytes per frame
MAX_CALL_FRAMES = 8
MAX_TAIL_CALLS = 33  # MAX_TAIL_CALL_CNT
MAX_LOOPS = 1 << 23  # BPF_MAX_LOOPS: may_goto and bpf_loop budget
