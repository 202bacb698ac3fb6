"""The verifier's log in the kernel's format (``kernel/bpf/log.c``, ``disasm.c``).

:func:`insn_text` is ``print_bpf_insn``: ``(b7) r0 = 0``,
``(61) r2 = *(u32 *)(r1 +0)``, ``(15) if r0 == 0x0 goto pc+1``,
``(85) call bpf_map_lookup_elem#1``.  :class:`Log` collects lines at a level:
1 keeps only the path that failed (the kernel rewinds the log when a branch
finishes without error), 2 keeps every path plus a state line at each path
start.  An instruction line is followed, on the same line, by the registers
it touched, aligned as ``vlog_alignment`` aligns them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

from pybpf.isa import AtomicOp, Instruction, Kind, try_lookup
from pybpf.isa.helper_ids import helper_name
from pybpf.isa.opcodes import Alu, Jmp
from pybpf.verifier.report import source_text

_ALU = {
    Alu.ADD: "+=", Alu.SUB: "-=", Alu.MUL: "*=", Alu.DIV: "/=", Alu.OR: "|=", Alu.AND: "&=",
    Alu.LSH: "<<=", Alu.RSH: ">>=", Alu.MOD: "%=", Alu.XOR: "^=", Alu.MOV: "=",
    Alu.ARSH: "s>>=",
}  # fmt: skip
_JMP = {
    Jmp.JEQ: "==", Jmp.JGT: ">", Jmp.JGE: ">=", Jmp.JSET: "&", Jmp.JNE: "!=", Jmp.JSGT: "s>",
    Jmp.JSGE: "s>=", Jmp.JLT: "<", Jmp.JLE: "<=", Jmp.JSLT: "s<", Jmp.JSLE: "s<=",
}  # fmt: skip
_SIZE = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
_ATOMIC = {AtomicOp.ADD: ("add", "+="), AtomicOp.OR: ("or", "|="), AtomicOp.AND: ("and", "&="),
           AtomicOp.XOR: ("xor", "^=")}  # fmt: skip
_END = ("le", "be", "bswap")
LOG_ALIGNMENT, LOG_MIN_ALIGNMENT = 40, 8


def _r(n: int, w32: bool) -> str:
    return f"{'w' if w32 else 'r'}{n}"


def insn_text(insn: Instruction, kfunc_names: Mapping[int, str] | None = None) -> str:
    """``print_bpf_insn``'s text of one instruction, ``(%02x) `` prefix included.

    ``kfunc_names`` names the kfuncs by ``imm`` (the verifier's ``disasm_kfunc_name``);
    an unnamed one is ``kernel-function``.
    """
    spec = try_lookup(insn)
    if spec is None:
        return raw_insn_text(insn)
    k, d, s, off, imm = spec.kind, insn.dst_reg, insn.src_reg, insn.off, insn.imm
    w32 = spec.width == 32
    x = "src_reg" in spec.uses
    size = _SIZE.get(spec.width, "")
    if k is Kind.ALU:
        op = {Alu.DIV: "s/=", Alu.MOD: "s%="}[spec.op] if spec.signed else _ALU[spec.op]
        text = f"{_r(d, w32)} {op} {_r(s, w32) if x else imm}"
    elif k is Kind.NEG:
        text = f"{_r(d, w32)} = -{_r(d, w32)}"
    elif k is Kind.MOVSX:
        text = f"{_r(d, w32)} = (s{spec.op}){_r(s, w32)}"
    elif k is Kind.END:
        text = f"r{d} = {_END[spec.op]}{spec.width} r{d}"
    elif k is Kind.LDDW:
        text = f"r{d} = {_imm64(insn)}"
    elif k is Kind.LD_ABS:
        text = f"r0 = *({size} *)skb[{imm}]"
    elif k is Kind.LD_IND:
        text = f"r0 = *({size} *)skb[r{s} + {imm}]"
    elif k in (Kind.LDX, Kind.LDXSX):
        sz = "s" + size[1:] if spec.signed else size
        text = f"r{d} = *({sz} *)(r{s} {off:+d})"
    elif k is Kind.ST:
        text = f"*({size} *)(r{d} {off:+d}) = {imm}"
    elif k is Kind.STX:
        text = f"*({size} *)(r{d} {off:+d}) = r{s}"
    elif k is Kind.ATOMIC:
        text = _atomic(spec.op, size, spec.width, d, s, off)
    elif k is Kind.LOAD_ACQ:
        text = f"r{d} = load_acquire(({size} *)(r{s} {off:+d}))"
    elif k is Kind.STORE_REL:
        text = f"store_release(({size} *)(r{d} {off:+d}), r{s})"
    elif k is Kind.JA:
        text = f"gotol pc{imm:+d}" if w32 else f"goto pc{off:+d}"
    elif k is Kind.JCOND:
        text = f"may_goto pc{off:+d}"
    elif k is Kind.JUMP:
        rhs = _r(s, w32) if x else f"{imm & 0xFFFFFFFF:#x}"
        text = f"if {_r(d, w32)} {_JMP[spec.op]} {rhs} goto pc{off:+d}"
    elif k is Kind.CALL:
        name = helper_name(imm)
        text = f"call {'bpf_' + name if name else 'unknown'}#{imm}"
    elif k is Kind.CALL_LOCAL:
        text = f"call pc{imm:+d}"
    elif k is Kind.KFUNC:
        text = f"call {(kfunc_names or {}).get(imm, 'kernel-function')}#{imm}"
    elif k is Kind.EXIT:
        text = "exit"
    else:
        text = f"callx r{d}"
    return f"({insn.code:02x}) {text}"


_SIZE_OF = {0x00: "u32", 0x08: "u16", 0x10: "u8", 0x18: "u64"}  # BPF_SIZE bits
_ALU_BY_OP = {int(op): text for op, text in _ALU.items()} | {0xD0: "endian"}
_JMP_BY_OP = {int(op): text for op, text in _JMP.items()} | {0xE0: "(null)"}


def raw_insn_text(insn: Instruction) -> str:
    """``print_bpf_insn`` of an encoding the opcode table refuses (a reserved field
    set, a register above r10...): the kernel prints it by class from the fields it
    shows, ignoring the others, so the line of the refused instruction is its line."""
    code, d, s, off, imm = insn.code, insn.dst_reg, insn.src_reg, insn.off, insn.imm
    cls, op, x = code & 0x07, code & 0xF0, bool(code & 0x08)
    size = _SIZE_OF[code & 0x18]
    mode = code & 0xE0
    head = f"({code:02x}) "
    if cls in (0x04, 0x07):  # ALU, ALU64
        w = "w" if cls == 0x04 else "r"
        if op == Alu.END:
            if cls == 0x07:
                return head + f"r{d} = bswap{imm} r{d}"
            return head + f"r{d} = {'be' if x else 'le'}{imm} r{d}"
        if op == Alu.NEG:
            return head + f"{w}{d} = -{w}{d}"
        if cls == 0x07 and op == Alu.MOV and x and off == 1:  # BPF_ADDR_SPACE_CAST
            return head + f"r{d} = addr_space_cast(r{s}, {(imm & 0xFFFFFFFF) >> 16}, " \
                          f"{imm & 0xFFFF})"  # fmt: skip
        if cls == 0x07 and op == Alu.MOV and x and off == -1:  # BPF_ADDR_PERCPU
            return head + f"r{d} = &(void __percpu *)(r{s})"
        text = _ALU_BY_OP.get(op, "?")
        if op in (Alu.DIV, Alu.MOD) and off == 1:
            text = "s" + text
        if x:
            sx = f"(s{off})" if op == Alu.MOV and off in (8, 16, 32) else ""
            return head + f"{w}{d} {text} {sx}{w}{s}"
        return head + f"{w}{d} {text} {imm}"
    if cls == 0x01:  # LDX
        sz = "s" + size[1:] if mode == 0x80 else size
        return head + f"r{d} = *({sz} *)(r{s} {off:+d})"
    if cls == 0x03:  # STX
        if mode == 0xC0:  # BPF_ATOMIC: the operation in imm
            mem = f"({size} *)"
            if imm == AtomicOp.LOAD_ACQ:
                return head + f"r{d} = load_acquire({mem}(r{s} {off:+d}))"
            if imm == AtomicOp.STORE_REL:
                return head + f"store_release({mem}(r{d} {off:+d}), r{s})"
            if imm & ~AtomicOp.FETCH in _ATOMIC or imm in (AtomicOp.XCHG, AtomicOp.CMPXCHG):
                width = 8 if code & 0x18 == 0x18 else 4
                return head + _atomic(imm, size, width, d, s, off)
            return f"BUG_{code:02x}"  # the kernel prints no opcode prefix here
        return head + f"*({size} *)(r{d} {off:+d}) = r{s}"
    if cls == 0x02:  # ST
        return head + f"*({size} *)(r{d} {off:+d}) = {imm}"
    if cls == 0x00:  # LD
        if mode == 0x20:
            return head + f"r0 = *({size} *)skb[{imm}]"
        if mode == 0x40:
            return head + f"r0 = *({size} *)skb[r{s} + {imm}]"
        return head + f"r{d} = {_imm64(insn)}"
    w = "w" if cls == 0x06 else "r"  # JMP, JMP32
    if op == Jmp.CALL:
        if s == 1:
            return head + f"call pc{imm:+d}"
        name = helper_name(imm) if s == 0 else None
        if s == 2:
            return head + f"call kernel-function#{imm}"
        return head + f"call {'bpf_' + name if name else 'unknown'}#{imm}"
    if code == 0x05:
        return head + f"goto pc{off:+d}"
    if code == 0xE5 and s == 0:
        return head + f"may_goto pc{off:+d}"
    if code == 0x06:
        return head + f"gotol pc{imm:+d}"
    if code == 0x95:
        return head + "exit"
    text = _JMP_BY_OP.get(op, "(null)")
    if x:
        return head + f"if {w}{d} {text} {w}{s} goto pc{off:+d}"
    return head + f"if {w}{d} {text} {imm & 0xFFFFFFFF:#x} goto pc{off:+d}"


def _imm64(insn: Instruction) -> str:
    src, imm = insn.src_reg, insn.imm
    if src == 1:
        return f"map[id:{imm}]"
    if src == 2:
        return f"map[id:{imm}][0]+{insn.imm2}"
    if src == 4:
        return f"subprog[{imm:+d}]"
    return f"{insn.imm64:#x}"


def _atomic(op: int, size: str, width: int, d: int, s: int, off: int) -> str:
    mem = f"({size} *)(r{d} {off:+d})"
    bits = "64" if width == 8 else ""
    base = op & ~AtomicOp.FETCH
    if base in _ATOMIC and op not in (AtomicOp.XCHG, AtomicOp.CMPXCHG):
        name, sym = _ATOMIC[AtomicOp(base)]
        if op & AtomicOp.FETCH:
            return f"r{s} = atomic{bits}_fetch_{name}({mem}, r{s})"
        return f"lock *{mem} {sym} r{s}"
    if op == AtomicOp.CMPXCHG:
        return f"r0 = atomic{bits}_cmpxchg({mem}, r0, r{s})"
    return f"r{s} = atomic{bits}_xchg({mem}, r{s})"


def alignment(pos: int) -> int:
    """``vlog_alignment``: spaces before ``;`` after an insn line of ``pos`` chars."""
    target = max(pos + LOG_MIN_ALIGNMENT // 2, LOG_ALIGNMENT)
    return -(-target // LOG_MIN_ALIGNMENT) * LOG_MIN_ALIGNMENT - pos - 1


LOG_LEVEL1, LOG_LEVEL2, LOG_STATS = 1, 2, 4  # BPF_LOG_LEVEL1, BPF_LOG_LEVEL2, BPF_LOG_STATS


class Log:
    """The log being written at the kernel's log ``level`` bits (0: nothing is kept).

    ``level`` is what the walk prints: 0 (no instruction or state lines: the
    level asked has neither BPF_LOG_LEVEL1 nor BPF_LOG_LEVEL2), 1 or 2;
    ``stats`` is BPF_LOG_STATS (the verification time and stack depths);
    :meth:`always` keeps the lines the kernel prints at any nonzero level
    (refusals, the "processed" summary).  :meth:`mark` and :meth:`rewind`
    implement level 1's forgetting of finished paths; at level 2 :meth:`rewind`
    keeps everything.
    """

    def __init__(self, level: int, line_info: Mapping[int, Any] | None = None,
                 kfunc_names: Mapping[int, str] | None = None) -> None:  # fmt: skip
        self.level = 2 if level & LOG_LEVEL2 else level & LOG_LEVEL1
        self.stats = bool(level & LOG_STATS)
        self.on = bool(level)
        self.kfunc_names = kfunc_names  # the called kfuncs' names by imm, for call lines
        self.lines: list[str] = []
        # BTF line info: the kernel prints a record's source line above the first
        # instruction it covers, once until another record's line is printed
        self._linfo = sorted((line_info or {}).items())
        self._linfo_pcs = [pc for pc, _ in self._linfo]
        self._last_linfo: int | None = None

    def __bool__(self) -> bool:
        return self.level > 0

    def add(self, line: str) -> None:
        if self.level:
            self.lines.append(line)

    def always(self, line: str) -> None:
        """A line printed whatever the level bits, when there is a log at all."""
        if self.on:
            self.lines.append(line)

    def insn(self, pc: int, insn: Instruction, state_text: str = "") -> None:
        """``pc: (op) text`` plus ``; <regs>`` when the instruction touched printable state."""
        if not self.level:
            return
        self._source_line(pc)
        line = f"{pc}: {insn_text(insn, self.kfunc_names)}"
        if state_text:
            line += " " * alignment(len(line) + 1) + "; " + state_text
        self.lines.append(line)

    def _source_line(self, pc: int) -> None:
        at = bisect_right(self._linfo_pcs, pc) - 1
        if at < 0 or at == self._last_linfo:
            return
        self._last_linfo = at
        info = self._linfo[at][1]
        text = source_text(info).lstrip()
        file = str(getattr(info, "file", "")).rsplit("/", 1)[-1]
        self.lines.append(f"; {text} @ {file}:{getattr(info, 'line', 0)}")

    def mark(self) -> int:
        return len(self.lines)

    def rewind(self, pos: int) -> None:
        if self.level == 1:
            del self.lines[pos:]
            self._last_linfo = None

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)
