"""The opcode table: every valid eBPF instruction, declared once.

Each :class:`OpSpec` says what one instruction is: its opcode byte, the
discriminating value some instructions carry in another field (``off`` for
sdiv/smod/movsx, ``imm`` for byte swaps and atomics, ``src_reg`` for calls),
which fields it uses (all others are reserved and must be zero), its
semantics kind, operand widths and the CPU version (``-mcpu=v1..v4``) that
introduced it.  The assembler, the disassembler, the validator and the
interpreter all read this table; nothing else lists opcodes.

Sources: RFC 9669 (tables in sections 4 and 5), and for the Linux extensions
(may_goto, load-acquire / store-release, callx, kfunc calls) the kernel's
include/uapi/linux/bpf.h and kernel/bpf/verifier.c's check of reserved fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pybpf.errors import ReservedFieldError, UnknownOpcodeError
from pybpf.isa.instruction import Instruction
from pybpf.isa.opcodes import (
    MAX_REG,
    SIZE_BYTES,
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


class Kind(Enum):
    """What an instruction does, in the terms the engines switch on."""

    ALU = "alu"  # dst = dst OP (src | imm)
    NEG = "neg"
    MOVSX = "movsx"  # dst = (sN) src
    END = "end"  # byte swap / conversion
    LDDW = "lddw"
    LD_ABS = "ld_abs"
    LD_IND = "ld_ind"
    LDX = "ldx"
    LDXSX = "ldxsx"
    ST = "st"
    STX = "stx"
    ATOMIC = "atomic"
    LOAD_ACQ = "load_acq"
    STORE_REL = "store_rel"
    JA = "ja"  # off is the target (JMP) or imm is (JMP32: gotol)
    JCOND = "jcond"  # may_goto
    JUMP = "jump"  # conditional
    CALL = "call"  # helper by id
    CALL_LOCAL = "call_local"
    KFUNC = "kfunc"
    CALLX = "callx"
    EXIT = "exit"


FIELDS = ("dst_reg", "src_reg", "off", "imm")


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One instruction of the table.

    ``name`` is unique and follows the conformance suite's naming
    (``add_imm`` is 32-bit, ``add64_imm`` 64-bit).  ``uses`` lists the fields
    the instruction reads; ``disc`` = (field, value) when another field's value
    selects this instruction.  ``op`` is the Alu/Jmp/AtomicOp value,
    ``width`` the operand width in bits (32/64) or access size in bytes for
    memory instructions, ``signed`` marks sdiv/smod/movsx/ldxsx, and
    ``cpu`` the first CPU version that has it.
    """

    name: str
    code: int
    kind: Kind
    uses: frozenset[str]
    op: int = 0
    width: int = 64
    signed: bool = False
    disc: tuple[str, int] | None = None
    cpu: int = 1

    @property
    def jumps(self) -> bool:
        """True when the instruction may transfer control to a pc-relative target."""
        return self.kind in (Kind.JA, Kind.JCOND, Kind.JUMP, Kind.CALL_LOCAL)


_ALU_NAMES = {
    Alu.ADD: "add", Alu.SUB: "sub", Alu.MUL: "mul", Alu.DIV: "div", Alu.OR: "or",
    Alu.AND: "and", Alu.LSH: "lsh", Alu.RSH: "rsh", Alu.MOD: "mod", Alu.XOR: "xor",
    Alu.MOV: "mov", Alu.ARSH: "arsh",
}  # fmt: skip
_JMP_NAMES = {
    Jmp.JEQ: "jeq", Jmp.JGT: "jgt", Jmp.JGE: "jge", Jmp.JSET: "jset", Jmp.JNE: "jne",
    Jmp.JSGT: "jsgt", Jmp.JSGE: "jsge", Jmp.JLT: "jlt", Jmp.JLE: "jle", Jmp.JSLT: "jslt",
    Jmp.JSLE: "jsle",
}  # fmt: skip
_SIZE_SUFFIX = {Size.B: "b", Size.H: "h", Size.W: "w", Size.DW: "dw"}
ATOMIC_NAMES = {
    AtomicOp.ADD: "add", AtomicOp.OR: "or", AtomicOp.AND: "and", AtomicOp.XOR: "xor",
}  # fmt: skip

_D, _S, _O, _I = "dst_reg", "src_reg", "off", "imm"


def _build() -> list[OpSpec]:
    specs: list[OpSpec] = []
    add = specs.append
    for cls, width, sfx in ((Class.ALU, 32, ""), (Class.ALU64, 64, "64")):
        for op, base in _ALU_NAMES.items():
            for src, kind_sfx, field in ((Source.K, "imm", _I), (Source.X, "reg", _S)):
                code = cls | op | src
                uses = frozenset((_D, field))
                add(
                    OpSpec(
                        f"{base}{sfx}_{kind_sfx}",
                        code,
                        Kind.ALU,
                        uses,
                        op,
                        width,
                        disc=(_O, 0) if op in (Alu.DIV, Alu.MOD, Alu.MOV) else None,
                    )
                )
                if op in (Alu.DIV, Alu.MOD):
                    add(
                        OpSpec(
                            f"s{base}{sfx}_{kind_sfx}",
                            code,
                            Kind.ALU,
                            uses,
                            op,
                            width,
                            signed=True,
                            disc=(_O, 1),
                            cpu=4,
                        )
                    )
        for bits in (8, 16, 32) if width == 64 else (8, 16):
            add(
                OpSpec(
                    f"movsx{bits}{width}_reg",
                    cls | Alu.MOV | Source.X,
                    Kind.MOVSX,
                    frozenset((_D, _S)),
                    bits,
                    width,
                    signed=True,
                    disc=(_O, bits),
                    cpu=4,
                )
            )
        add(OpSpec(f"neg{sfx}", cls | Alu.NEG, Kind.NEG, frozenset((_D,)), Alu.NEG, width))
    # byte swaps: END's source bit picks le/be in class ALU; ALU64 END is bswap (v4)
    ends = (
        ("le", Class.ALU | Alu.END | Source.K, 1),
        ("be", Class.ALU | Alu.END | Source.X, 1),
        ("bswap", Class.ALU64 | Alu.END | Source.K, 4),
    )
    for op, (base, code, cpu) in enumerate(ends):
        for bits in (16, 32, 64):
            dst = frozenset((_D,))
            add(OpSpec(f"{base}{bits}", code, Kind.END, dst, op, bits, disc=(_I, bits), cpu=cpu))

    for cls, width, sfx in ((Class.JMP, 64, ""), (Class.JMP32, 32, "32")):
        cpu_cls = 1 if cls == Class.JMP else 3
        for op, base in _JMP_NAMES.items():
            cpu = max(cpu_cls, 2 if op in (Jmp.JLT, Jmp.JLE, Jmp.JSLT, Jmp.JSLE) else 1)
            add(
                OpSpec(
                    f"{base}{sfx}_imm",
                    cls | op | Source.K,
                    Kind.JUMP,
                    frozenset((_D, _I, _O)),
                    op,
                    width,
                    cpu=cpu,
                )
            )
            add(
                OpSpec(
                    f"{base}{sfx}_reg",
                    cls | op | Source.X,
                    Kind.JUMP,
                    frozenset((_D, _S, _O)),
                    op,
                    width,
                    cpu=cpu,
                )
            )
    add(OpSpec("ja", Class.JMP | Jmp.JA, Kind.JA, frozenset((_O,))))
    add(OpSpec("ja32", Class.JMP32 | Jmp.JA, Kind.JA, frozenset((_I,)), width=32, cpu=4))
    add(OpSpec("may_goto", Class.JMP | Jmp.JCOND, Kind.JCOND, frozenset((_O,)), cpu=4))
    call = Class.JMP | Jmp.CALL
    add(OpSpec("call", call, Kind.CALL, frozenset((_I,)), disc=(_S, CallKind.HELPER)))
    add(OpSpec("call_local", call, Kind.CALL_LOCAL, frozenset((_I,)), disc=(_S, CallKind.LOCAL)))
    add(OpSpec("call_kfunc", call, Kind.KFUNC, frozenset((_I, _O)), disc=(_S, CallKind.KFUNC)))
    add(OpSpec("callx", call | Source.X, Kind.CALLX, frozenset((_D,))))
    add(OpSpec("exit", Class.JMP | Jmp.EXIT, Kind.EXIT, frozenset()))

    add(OpSpec("lddw", Class.LD | Mode.IMM | Size.DW, Kind.LDDW, frozenset((_D, _S, _I))))
    for size in (Size.W, Size.H, Size.B):
        nbytes, s = SIZE_BYTES[size], _SIZE_SUFFIX[size]
        add(
            OpSpec(
                f"ldabs{s}", Class.LD | Mode.ABS | size, Kind.LD_ABS, frozenset((_I,)), width=nbytes
            )
        )
        add(
            OpSpec(
                f"ldind{s}",
                Class.LD | Mode.IND | size,
                Kind.LD_IND,
                frozenset((_S, _I)),
                width=nbytes,
            )
        )
        add(
            OpSpec(
                f"ldxs{s}",
                Class.LDX | Mode.MEMSX | size,
                Kind.LDXSX,
                frozenset((_D, _S, _O)),
                width=nbytes,
                signed=True,
                cpu=4,
            )
        )
    for size in (Size.W, Size.H, Size.B, Size.DW):
        nbytes, s = SIZE_BYTES[size], _SIZE_SUFFIX[size]
        add(
            OpSpec(
                f"ldx{s}",
                Class.LDX | Mode.MEM | size,
                Kind.LDX,
                frozenset((_D, _S, _O)),
                width=nbytes,
            )
        )
        add(
            OpSpec(
                f"st{s}", Class.ST | Mode.MEM | size, Kind.ST, frozenset((_D, _O, _I)), width=nbytes
            )
        )
        add(
            OpSpec(
                f"stx{s}",
                Class.STX | Mode.MEM | size,
                Kind.STX,
                frozenset((_D, _S, _O)),
                width=nbytes,
            )
        )
        code = Class.STX | Mode.ATOMIC | size
        mem = frozenset((_D, _S, _O))

        def atomic(name: str, kind: Kind, op: int, cpu: int) -> None:
            # every BPF_STX | BPF_ATOMIC form: the operation in imm selects it
            add(OpSpec(name, code, kind, mem, op, nbytes, disc=(_I, op), cpu=cpu))  # noqa: B023

        atomic(f"load_acq{s}", Kind.LOAD_ACQ, AtomicOp.LOAD_ACQ, 4)
        atomic(f"store_rel{s}", Kind.STORE_REL, AtomicOp.STORE_REL, 4)
        if size not in (Size.W, Size.DW):
            continue
        for aop, base in ATOMIC_NAMES.items():
            atomic(f"lock_{base}_{s}", Kind.ATOMIC, aop, 3)
            atomic(f"lock_fetch_{base}_{s}", Kind.ATOMIC, aop | AtomicOp.FETCH, 3)
        atomic(f"lock_xchg_{s}", Kind.ATOMIC, AtomicOp.XCHG, 3)
        atomic(f"lock_cmpxchg_{s}", Kind.ATOMIC, AtomicOp.CMPXCHG, 3)
    return specs


SPECS: tuple[OpSpec, ...] = tuple(_build())
BY_NAME: dict[str, OpSpec] = {s.name: s for s in SPECS}

# code -> spec, or code -> (discriminating field, {value: spec})
_PLAIN: dict[int, OpSpec] = {}
_BY_DISC: dict[int, tuple[str, dict[int, OpSpec]]] = {}
for _spec in SPECS:
    if _spec.disc is None:
        _PLAIN[_spec.code] = _spec
    else:
        _field, _value = _spec.disc
        _BY_DISC.setdefault(_spec.code, (_field, {}))[1][_value] = _spec
if len(BY_NAME) != len(SPECS) or set(_PLAIN) & set(_BY_DISC):  # pragma: no cover
    raise RuntimeError("opcode table has duplicates")


def lookup(insn: Instruction, pc: int | None = None) -> OpSpec:
    """The spec of ``insn``, after checking every field it does not use is zero.

    Raises :class:`UnknownOpcodeError` for an opcode byte no instruction has,
    and :class:`ReservedFieldError` (naming the field) for a discriminating
    value no instruction has, a non-zero reserved field, a register above
    r10 or an lddw pseudo source above 6.
    """
    spec = _PLAIN.get(insn.code)
    if spec is None:
        entry = _BY_DISC.get(insn.code)
        if entry is None:
            raise UnknownOpcodeError(f"unknown opcode {insn.code:#04x}", pc=pc, code=insn.code)
        field, choices = entry
        value = getattr(insn, field)
        spec = choices.get(value)
        if spec is None:
            allowed = ", ".join(f"{v} ({s.name})" for v, s in sorted(choices.items()))
            raise ReservedFieldError(
                f"opcode {insn.code:#04x}: {field} must be one of {allowed}; is {value}",
                pc=pc,
                field=field,
            )
    disc_field = spec.disc[0] if spec.disc else None
    for field in FIELDS:
        if field == disc_field:
            continue
        value = getattr(insn, field)
        if field not in spec.uses:
            if value:
                raise ReservedFieldError(
                    f"{spec.name}: reserved field {field} must be 0, is {value}",
                    pc=pc,
                    field=field,
                )
        elif field in (_D, _S) and value > MAX_REG:
            raise ReservedFieldError(
                f"{spec.name}: invalid register r{value} in {field}", pc=pc, field=field
            )
    if spec.kind is Kind.LDDW and insn.src_reg > max(Pseudo):
        raise ReservedFieldError(
            f"lddw: unknown pseudo source {insn.src_reg} in src_reg", pc=pc, field=_S
        )
    return spec


def try_lookup(insn: Instruction) -> OpSpec | None:
    """Like :func:`lookup` but answers ``None`` for an invalid instruction."""
    try:
        return lookup(insn)
    except (UnknownOpcodeError, ReservedFieldError):
        return None
