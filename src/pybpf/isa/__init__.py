"""The eBPF instruction set: opcode fields, the Instruction type, the opcode
table and the wire codec.  This package depends on nothing but
:mod:`pybpf.errors`; every other layer reads the instruction set from here.
"""

from pybpf.isa.codec import check_jumps, decode, encode, jump_target, slot_offsets
from pybpf.isa.instruction import LDDW, Instruction
from pybpf.isa.opcodes import (
    MAX_CALL_FRAMES,
    MAX_LOOPS,
    MAX_REG,
    MAX_TAIL_CALLS,
    STACK_SIZE,
    Alu,
    AtomicOp,
    CallKind,
    Class,
    Jmp,
    Mode,
    Pseudo,
    Size,
    Source,
)
from pybpf.isa.table import BY_NAME, SPECS, Kind, OpSpec, lookup, try_lookup

__all__ = [
    "BY_NAME", "LDDW", "MAX_CALL_FRAMES", "MAX_LOOPS", "MAX_REG", "MAX_TAIL_CALLS", "SPECS",
    "STACK_SIZE", "Alu", "AtomicOp", "CallKind", "Class", "Instruction", "Jmp", "Kind", "Mode",
    "OpSpec", "Pseudo", "Size", "Source", "check_jumps", "decode", "encode", "jump_target",
    "lookup", "slot_offsets", "try_lookup",
]  # fmt: skip
