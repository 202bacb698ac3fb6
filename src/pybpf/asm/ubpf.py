"""Dialect (b): the bpf_conformance / uBPF assembly syntax.

    mov %r0, 1              add32 %r1, %r2          ldxw %r0, [%r1+4]
    stdw [%r10-8], 5        jne %r1, 3, label       lock fetch add [%r10-8], %r1
    lddw %r0, 0x1122334455667788                    call 5 / call local f / call %r2

Mnemonics come from the opcode table: 64-bit ALU and jump operations are
bare (``add``, also ``add64``), 32-bit ones end in ``32``; ``be16``/``le16``
/``bswap16`` (``swap16`` too) are byte swaps; ``movsx832`` sign-extends 8
bits into a 32-bit register; ``sdiv``/``smod`` set off=1.  ``exit`` is also
an implicit label naming the first exit, as in bpf_conformance.  Jump
targets are labels or signed offsets (``+3``).

Extensions beyond uBPF, for instructions it has no syntax for (documented so
they round-trip): ``call runtime N`` is a kfunc call (BTF id N, as
bpf_conformance names it), ``ja32 +N`` is gotol, ``may_goto +N``,
``ldabsw 12`` / ``ldindw %r1, 12`` the legacy packet loads,
``load_acqdw %r0, [%r1+0]`` / ``store_reldw [%r1+0], %r2`` the acquire /
release accesses, and ld_imm64 with a pseudo source is
``lddw %r1, map_fd(3)``, ``map_value(3, 8)``, ``btf_id(7)``,
``func(+4)`` / ``func(label)``, ``map_idx(0)``, ``map_idx_value(0, 8)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pybpf.asm.text import Line, Pending, build, imm32, imm64, lines, off16, resolve, split_operands
from pybpf.errors import AsmError
from pybpf.isa import SPECS, AtomicOp, Instruction, Kind, OpSpec, Pseudo, lookup
from pybpf.isa.table import ATOMIC_NAMES

_PSEUDO_NAMES = {
    Pseudo.MAP_FD: "map_fd", Pseudo.MAP_VALUE: "map_value", Pseudo.BTF_ID: "btf_id",
    Pseudo.FUNC: "func", Pseudo.MAP_IDX: "map_idx", Pseudo.MAP_IDX_VALUE: "map_idx_value",
}  # fmt: skip
_PSEUDO_BY_NAME = {v: k for k, v in _PSEUDO_NAMES.items()}
_SIZE_SFX = {1: "b", 2: "h", 4: "w", 8: "dw"}
_MEM = re.compile(r"\[\s*(%r\d+)\s*(?:([+-])\s*(\w+))?\s*\]$")
_LABEL = re.compile(r"[A-Za-z_.$][\w.$]*$")


def _mnemonic(spec: OpSpec) -> str:
    """The uBPF mnemonic of a spec (without operands)."""
    kind, name = spec.kind, spec.name
    if kind in (Kind.ALU, Kind.JUMP):
        base = name.rsplit("_", 1)[0]
        if kind is Kind.JUMP:
            return base
        return base.removesuffix("64") if spec.width == 64 else base + "32"
    if kind is Kind.NEG:
        return "neg" if spec.width == 64 else "neg32"
    if kind is Kind.MOVSX:
        return name.removesuffix("_reg")
    if kind is Kind.ATOMIC:
        return "lock"
    return name


_BY_MNEMONIC: dict[str, dict[str, OpSpec]] = {}
for _spec in SPECS:
    if _spec.kind in (Kind.CALL, Kind.CALL_LOCAL, Kind.KFUNC, Kind.CALLX, Kind.ATOMIC):
        continue
    _shape = "imm" if _spec.name.endswith("_imm") else "reg" if _spec.name.endswith("_reg") else ""
    _BY_MNEMONIC.setdefault(_mnemonic(_spec), {})[_shape] = _spec
for _m, _forms in list(_BY_MNEMONIC.items()):
    _any = next(iter(_forms.values()))
    if _any.kind in (Kind.ALU, Kind.NEG) and _any.width == 64:
        _BY_MNEMONIC[_m + "64"] = _forms  # bpf_conformance also accepts add64, neg64...
for _bits in (16, 32, 64):
    _BY_MNEMONIC[f"swap{_bits}"] = _BY_MNEMONIC[f"bswap{_bits}"]
_ATOMIC: dict[tuple[bool, str, int], OpSpec] = {}
for _spec in SPECS:
    if _spec.kind is Kind.ATOMIC:
        _fetch = bool(_spec.op & AtomicOp.FETCH) and _spec.op not in (
            AtomicOp.XCHG,
            AtomicOp.CMPXCHG,
        )
        _base = {AtomicOp.XCHG: "xchg", AtomicOp.CMPXCHG: "cmpxchg"}.get(
            _spec.op, ATOMIC_NAMES.get(_spec.op & ~AtomicOp.FETCH, "")
        )
        _ATOMIC[(_fetch, _base, _spec.width)] = _spec


# --- formatting -------------------------------------------------------------


def _imm(value: int) -> str:
    return str(value) if -0x10000 < value < 0x10000 else f"{value & 0xFFFFFFFF:#x}"


def _rel(value: int) -> str:
    return f"{value:+d}"


def _mem(reg: int, off: int) -> str:
    return f"[%r{reg}{off:+d}]"


def format_insn(insn: Instruction) -> str:
    """The uBPF text of one instruction (raises IsaError if it is invalid)."""
    spec = lookup(insn)
    kind, m = spec.kind, _mnemonic(spec)
    d, s = f"%r{insn.dst_reg}", f"%r{insn.src_reg}"
    if kind is Kind.ALU:
        return f"{m} {d}, {s if insn.source else _imm(insn.imm)}"
    if kind in (Kind.NEG, Kind.END):
        return f"{m} {d}"
    if kind is Kind.MOVSX:
        return f"{m} {d}, {s}"
    if kind is Kind.JUMP:
        return f"{m} {d}, {s if insn.source else _imm(insn.imm)}, {_rel(insn.off)}"
    if kind is Kind.JA:
        return f"{m} {_rel(insn.imm if spec.width == 32 else insn.off)}"
    if kind is Kind.JCOND:
        return f"{m} {_rel(insn.off)}"
    if kind is Kind.EXIT:
        return "exit"
    if kind is Kind.CALL:
        return f"call {insn.imm}"
    if kind is Kind.CALL_LOCAL:
        return f"call local {_rel(insn.imm)}"
    if kind is Kind.KFUNC:
        return f"call runtime {insn.imm}" + (f", {insn.off}" if insn.off else "")
    if kind is Kind.CALLX:
        return f"call {d}"
    if kind is Kind.LDDW:
        return f"lddw {d}, {_lddw_operand(insn)}"
    if kind is Kind.LD_ABS:
        return f"{m} {_imm(insn.imm)}"
    if kind is Kind.LD_IND:
        return f"{m} {s}, {_imm(insn.imm)}"
    if kind in (Kind.LDX, Kind.LDXSX, Kind.LOAD_ACQ):
        return f"{m} {d}, {_mem(insn.src_reg, insn.off)}"
    if kind is Kind.ST:
        return f"{m} {_mem(insn.dst_reg, insn.off)}, {_imm(insn.imm)}"
    if kind in (Kind.STX, Kind.STORE_REL):
        return f"{m} {_mem(insn.dst_reg, insn.off)}, {s}"
    # atomics
    fetch, base, _ = next(k for k, v in _ATOMIC.items() if v is spec)
    width = "32" if spec.width == 4 else ""
    return f"lock {'fetch ' if fetch else ''}{base}{width} {_mem(insn.dst_reg, insn.off)}, {s}"


def _lddw_operand(insn: Instruction) -> str:
    if insn.src_reg == Pseudo.IMM64:
        value = insn.imm64
        return str(value) if value < 0x10000 else f"{value:#x}"
    name = _PSEUDO_NAMES[Pseudo(insn.src_reg)]
    if insn.src_reg == Pseudo.FUNC:
        return f"{name}({_rel(insn.imm)})"
    if insn.src_reg in (Pseudo.MAP_VALUE, Pseudo.MAP_IDX_VALUE) or insn.imm2:
        return f"{name}({insn.imm}, {insn.imm2})"
    return f"{name}({insn.imm})"


def disassemble(insns: Sequence[Instruction]) -> str:
    """uBPF text of a program, one instruction per line."""
    return "".join(format_insn(insn) + "\n" for insn in insns)


# --- parsing ----------------------------------------------------------------


def _reg(token: str, line: Line) -> int:
    m = re.fullmatch(r"%r(\d+)", token.strip())
    if not m or int(m.group(1)) > 10:
        raise line.error(f"invalid register {token.strip()!r}", token.strip() or None)
    return int(m.group(1))


def _memop(token: str, line: Line) -> tuple[int, int]:
    m = _MEM.match(token.strip())
    if not m:
        raise line.error(f"expected a memory operand like [%r1+8], got {token!r}", token or None)
    reg = _reg(m.group(1), line)
    off = 0 if m.group(2) is None else off16(m.group(2) + m.group(3), line)
    return reg, off


def _target(token: str, line: Line) -> tuple[int, str | None]:
    """(offset, None) for +N/-N, (0, label) for a label."""
    token = token.strip()
    if token[:1] in "+-":
        return off16(token, line), None
    if _LABEL.match(token):
        return 0, token
    raise line.error(f"invalid jump target {token!r}", token or None)


def _target32(token: str, line: Line) -> tuple[int, str | None]:
    token = token.strip()
    if token[:1] in "+-":
        return imm32(token, line), None
    return _target(token, line)


def _count(line: Line, ops: list[str], n: int, what: str) -> None:
    if len(ops) != n or any(not o for o in ops):
        raise line.error(f"{what} takes {n} operand{'s' if n != 1 else ''}, got {len(ops)}")


def _parse_line(line: Line) -> Pending:
    mnemonic, _, rest = line.text.partition(" ")
    mnemonic = mnemonic.lower()
    ops = split_operands(rest)
    if mnemonic == "lock":
        return _parse_lock(line, rest)
    if mnemonic == "call":
        return _parse_call(line, rest)
    if mnemonic == "lddw":
        _count(line, ops, 2, "lddw")
        return _parse_lddw(line, _reg(ops[0], line), ops[1])
    forms = _BY_MNEMONIC.get(mnemonic)
    if forms is None:
        raise line.error(f"unknown mnemonic {mnemonic!r}", mnemonic)
    any_spec = next(iter(forms.values()))
    kind = any_spec.kind
    if kind in (Kind.ALU, Kind.JUMP):
        n = 2 if kind is Kind.ALU else 3
        _count(line, ops, n, mnemonic)
        dst = _reg(ops[0], line)
        if ops[1].startswith("%"):
            spec, src, imm = forms["reg"], _reg(ops[1], line), 0
        else:
            spec, src, imm = forms["imm"], 0, imm32(ops[1], line)
        if kind is Kind.JUMP:
            off, label = _target(ops[2], line)
        else:  # sdiv/smod carry off=1, div/mod/mov off=0
            off, label = (spec.disc[1] if spec.disc else 0), None
        return Pending(build(line, spec.code, dst, src, off, imm), line, label)
    spec = any_spec
    if kind in (Kind.NEG, Kind.END):
        _count(line, ops, 1, mnemonic)
        imm = spec.disc[1] if spec.disc else 0
        return Pending(build(line, spec.code, _reg(ops[0], line), imm=imm), line)
    if kind is Kind.MOVSX:
        _count(line, ops, 2, mnemonic)
        return Pending(build(line, spec.code, _reg(ops[0], line), _reg(ops[1], line),
                             spec.disc[1]), line)  # fmt: skip
    if kind in (Kind.JA, Kind.JCOND):
        _count(line, ops, 1, mnemonic)
        if spec.width == 32 and kind is Kind.JA:
            imm, label = _target32(ops[0], line)
            return Pending(build(line, spec.code, imm=imm), line, label)
        off, label = _target(ops[0], line)
        return Pending(build(line, spec.code, off=off), line, label)
    if kind is Kind.EXIT:
        _count(line, ops, 0, "exit")
        return Pending(build(line, spec.code), line)
    if kind is Kind.LD_ABS:
        _count(line, ops, 1, mnemonic)
        return Pending(build(line, spec.code, imm=imm32(ops[0], line)), line)
    if kind is Kind.LD_IND:
        _count(line, ops, 2, mnemonic)
        return Pending(build(line, spec.code, src=_reg(ops[0], line), imm=imm32(ops[1], line)),
                       line)  # fmt: skip
    _count(line, ops, 2, mnemonic)
    if kind in (Kind.LDX, Kind.LDXSX, Kind.LOAD_ACQ):
        src, off = _memop(ops[1], line)
        imm = spec.disc[1] if spec.disc else 0
        return Pending(build(line, spec.code, _reg(ops[0], line), src, off, imm), line)
    dst, off = _memop(ops[0], line)
    if kind is Kind.ST:
        return Pending(build(line, spec.code, dst, 0, off, imm32(ops[1], line)), line)
    imm = spec.disc[1] if spec.disc else 0
    return Pending(build(line, spec.code, dst, _reg(ops[1], line), off, imm), line)


def _parse_lock(line: Line, rest: str) -> Pending:
    words = rest.split(None, 2)
    fetch = bool(words) and words[0].lower() == "fetch"
    if fetch:
        words = words[1:]
    if len(words) < 2:
        raise line.error("Invalid number of operands for lock")
    op = words[0].lower()
    ops = split_operands(" ".join(words[1:]))
    base, width = (op[:-2], 4) if op.endswith("32") else (op.removesuffix("64"), 8)
    spec = _ATOMIC.get((fetch, base, width))
    if spec is None:
        raise line.error(f"unknown atomic operation {'fetch ' if fetch else ''}{op!r}", op)
    _count(line, ops, 2, "lock")
    dst, off = _memop(ops[0], line)
    return Pending(build(line, spec.code, dst, _reg(ops[1], line), off, spec.op), line)


def _parse_call(line: Line, rest: str) -> Pending:
    words = rest.split(None, 1)
    if not words:
        raise line.error("call takes a helper id, a register, 'local TARGET' or 'runtime ID'")
    call = next(s for s in SPECS if s.kind is Kind.CALL)
    if words[0] == "local":
        if len(words) != 2:
            raise line.error("call local takes a target")
        imm, label = _target32(words[1], line)
        spec = next(s for s in SPECS if s.kind is Kind.CALL_LOCAL)
        return Pending(build(line, spec.code, src=spec.disc[1], imm=imm), line, label)
    if words[0] == "runtime":
        ops = split_operands(words[1] if len(words) > 1 else "")
        if len(ops) not in (1, 2):
            raise line.error("call runtime takes a BTF id and an optional module offset")
        spec = next(s for s in SPECS if s.kind is Kind.KFUNC)
        off = off16(ops[1], line) if len(ops) == 2 else 0
        return Pending(build(line, spec.code, src=spec.disc[1], off=off, imm=imm32(ops[0], line)),
                       line)  # fmt: skip
    if len(words) != 1:
        raise line.error("call takes one operand", words[1])
    if words[0].startswith("%"):
        spec = next(s for s in SPECS if s.kind is Kind.CALLX)
        return Pending(build(line, spec.code, dst=_reg(words[0], line)), line)
    return Pending(build(line, call.code, imm=imm32(words[0], line)), line)


def _parse_lddw(line: Line, dst: int, operand: str) -> Pending:
    m = re.fullmatch(r"(\w+)\((.*)\)", operand.strip())
    code = next(s for s in SPECS if s.kind is Kind.LDDW).code
    if not m:
        return Pending(Instruction.lddw(dst, imm64(operand, line)), line)
    src = _PSEUDO_BY_NAME.get(m.group(1))
    if src is None:
        raise line.error(f"unknown ld_imm64 pseudo source {m.group(1)!r}", m.group(1))
    args = split_operands(m.group(2))
    if src == Pseudo.FUNC:
        _count(line, args, 1, "func()")
        imm, label = _target32(args[0], line)
        return Pending(build(line, code, dst, src, 0, imm), line, label)
    if len(args) not in (1, 2) or not all(args):
        raise line.error(f"{m.group(1)}() takes 1 or 2 numbers")
    imm2 = imm32(args[1], line) if len(args) == 2 else 0
    return Pending(build(line, code, dst, src, 0, imm32(args[0], line), imm2), line)


def assemble(text: str) -> list[Instruction]:
    """Assemble uBPF text; raises :class:`AsmError` with line and column."""
    pending: list[Pending] = []
    labels: dict[str, int] = {}
    first_exit = None
    pc = 0
    for line in lines(text, "#"):
        body = line.text
        while True:
            m = re.match(r"([A-Za-z_.$][\w.$]*)\s*:\s*", body)
            if not m:
                break
            name = m.group(1)
            if name in labels:
                raise line.error(f"duplicate label {name!r}", name)
            labels[name] = pc
            body = body[m.end() :]
        if not body:
            continue
        item = _parse_line(Line(line.number, body, line.raw))
        if first_exit is None and lookup(item.insn).kind is Kind.EXIT:
            first_exit = pc
        pending.append(item)
        pc += item.insn.slots
    if first_exit is not None:
        labels.setdefault("exit", first_exit)  # bpf_conformance's implicit label
    return resolve(pending, labels)


__all__ = ["AsmError", "assemble", "disassemble", "format_insn"]
