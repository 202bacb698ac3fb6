"""Translate an eBPF program into the source of one Python function.

This is the interpreter's engine: instead of dispatching every instruction,
the program is cut into basic blocks, each block becomes straight-line Python
over local variables ``r0``..``r10``, and a binary tree of ``pc``
comparisons dispatches between blocks.  A block that jumps back to itself
becomes an inner ``while`` loop.  The step is pure: :func:`compile_program`
returns source text (testable, printable with ``pybpf disasm --python``);
:mod:`pybpf.vm.interpreter` executes it.

Semantics follow RFC 9669 and the Linux kernel (kernel/bpf/core.c):
registers are unsigned 64-bit; 32-bit operations zero-extend; division by
zero gives 0 and modulo by zero leaves the dividend (its low 32 bits for
32-bit operations); shift amounts are masked to the operand width; signed
division truncates toward zero and INT_MIN / -1 wraps.

Memory accesses (loads, stores, atomics) have two inline fast paths: the
current stack frame, and the run's "hot" region (the input memory or packet:
``HB``..``HE<n>`` for loads, ``WB``..``WE<n>`` for stores and atomics when it
is writable, set by the interpreter for each run); everything else goes
through the checked ``LD``/``ST``/``ATOMIC``.  The stack
window is ``slo <= a <= stack top - n`` where ``slo`` is the current frame's
bottom; it covers the current frame and its callers' (which a callee may reach
through a pointer), and ``slo`` never lies under the stack's base: every
entry starts inside the stack and a call that would open a frame under it
raises :class:`~pybpf.errors.CallDepthError`, whatever the program did to
r10.  So the fast path indexes the stack buffer only at offsets in
``[0, size - n]``; a frame below the current one, or any byte outside the
stack, is reached only through ``LD``/``ST``/``ATOMIC`` (which fault).

The generated function is ``entry(r1, r2, r3, r4, r5, r10, pc=0)`` (``pc``
lets a helper call back into a subprogram: bpf_loop, for_each_map_elem) and returns
``(r0, executed, tail)`` where ``tail`` is None or the (program, r1) a tail
call continues with.  The names it uses (``M64``, ``LD``, ``H6``...) come
from the namespace :func:`namespace_names` lists, which the interpreter
fills.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybpf.errors import IsaError, UnresolvedLoadError
from pybpf.isa import (
    MAX_CALL_FRAMES,
    STACK_SIZE,
    Alu,
    AtomicOp,
    Instruction,
    Jmp,
    Kind,
    OpSpec,
    Pseudo,
    check_jumps,
    jump_target,
    slot_offsets,
)

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
S64 = 1 << 63
S32 = 1 << 31

_ALU_OPS = {Alu.ADD: "+", Alu.SUB: "-", Alu.MUL: "*", Alu.OR: "|", Alu.AND: "&", Alu.XOR: "^"}
_ATOMIC_OPS = {AtomicOp.ADD: "+", AtomicOp.OR: "|", AtomicOp.AND: "&", AtomicOp.XOR: "^"}
_CMP = {
    Jmp.JEQ: "==", Jmp.JNE: "!=", Jmp.JGT: ">", Jmp.JGE: ">=", Jmp.JLT: "<", Jmp.JLE: "<=",
    Jmp.JSGT: ">", Jmp.JSGE: ">=", Jmp.JSLT: "<", Jmp.JSLE: "<=",
}  # fmt: skip
_SIGNED_JMP = {Jmp.JSGT, Jmp.JSGE, Jmp.JSLT, Jmp.JSLE}
_PACK = {1: "B", 2: "H", 4: "I", 8: "Q"}

FUNC_TOKEN = 0xB9F0_0000_0000_0000  # value of an ld_imm64 BPF_PSEUDO_FUNC: token | pc


@dataclass(frozen=True)
class Layout:
    """Where the stack lives: frame k's r10 is ``top - k * STACK_SIZE``."""

    stack_base: int
    stack_top: int


@dataclass(frozen=True)
class Compiled:
    """The generated source and what it needs from its namespace."""

    source: str
    helper_ids: frozenset[int]
    kfunc_ids: frozenset[int]
    imm64: dict[int, int]  # pc -> resolved constant of pseudo ld_imm64
    leaders: frozenset[int]  # block starts: the pcs execution may enter at


class _Gen:
    def __init__(self, insns: Sequence[Instruction], specs: list[OpSpec], layout: Layout,
                 resolve_imm64, budget: int, trace: bool = False) -> None:  # fmt: skip
        self.trace = trace
        self.insns = insns
        self.specs = specs
        self.pcs = slot_offsets(insns)
        self.layout = layout
        self.resolve_imm64 = resolve_imm64
        self.budget = budget
        self.lines: list[str] = []
        self.helper_ids: set[int] = set()
        self.kfunc_ids: set[int] = set()
        self.imm64: dict[int, int] = {}
        self.end = self.pcs[-1] + insns[-1].slots

    # --- block structure -----------------------------------------------
    def leaders(self) -> list[int]:
        lead = {0}
        for insn, spec, pc in zip(self.insns, self.specs, self.pcs, strict=True):
            nxt = pc + insn.slots
            target = jump_target(spec, insn, pc)
            if target is not None:
                lead.add(target)
            if spec.kind in (
                Kind.JA,
                Kind.JCOND,
                Kind.JUMP,
                Kind.CALL_LOCAL,
                Kind.CALLX,
                Kind.EXIT,
                Kind.CALL,
                Kind.KFUNC,
                Kind.LD_ABS,
                Kind.LD_IND,
            ):
                lead.add(nxt)
        lead.discard(self.end)
        return sorted(p for p in lead if p < self.end)

    # --- emission -------------------------------------------------------
    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def generate(self) -> str:
        index = {pc: i for i, pc in enumerate(self.pcs)}
        leaders = self.leaders()
        self.leader_set = frozenset(leaders)
        blocks: list[tuple[int, list[int]]] = []
        for b, start in enumerate(leaders):
            stop = leaders[b + 1] if b + 1 < len(leaders) else self.end
            blocks.append((start, [index[p] for p in self.pcs if start <= p < stop]))
        self.emit(0, "def entry(r1, r2, r3, r4, r5, r10, pc=0):")
        self.emit(1, "r0 = r6 = r7 = r8 = r9 = 0")
        self.emit(1, f"slo = r10 - {STACK_SIZE}")
        self.emit(1, "frames = []")
        self.emit(1, "n = 0")
        self.emit(1, "loops = MAX_LOOPS")
        self.emit(1, "while True:")
        self.tree(blocks + [(self.end, [])], 2)
        return "\n".join(self.lines) + "\n"

    def tree(self, blocks: list[tuple[int, list[int]]], depth: int) -> None:
        if len(blocks) == 1:
            start, body = blocks[0]
            if not body:
                self.emit(depth, f"raise VmError('fell off the end of the program', pc={start})")
            else:
                self.block(start, body, depth)
            return
        mid = len(blocks) // 2
        self.emit(depth, f"if pc < {blocks[mid][0]}:")
        self.tree(blocks[:mid], depth + 1)
        self.emit(depth, "else:")
        self.tree(blocks[mid:], depth + 1)

    def block(self, start: int, body: list[int], depth: int) -> None:
        last = body[-1]
        insn, spec, pc = self.insns[last], self.specs[last], self.pcs[last]
        self_loop = spec.kind is Kind.JUMP and jump_target(spec, insn, pc) == start
        if self_loop:
            self.emit(depth, "while True:")
            depth += 1
        self.emit(depth, f"n += {len(body)}")
        self.emit(depth, f"if n > {self.budget}: raise BudgetExceeded({self.budget}, pc={start})")
        for i in body[:-1]:
            self.traced(self.pcs[i], depth)
            self.straight(self.insns[i], self.specs[i], self.pcs[i], depth)
        self.traced(pc, depth)
        nxt = pc + insn.slots
        if self_loop:
            self.emit(depth, f"if not ({self.condition(insn, spec)}): break")
            self.emit(depth - 1, f"pc = {nxt}")
            self.emit(depth - 1, "continue")
            return
        self.terminator(insn, spec, pc, nxt, depth)

    def traced(self, pc: int, depth: int) -> None:
        """In trace mode, report the registers before the instruction at ``pc`` runs."""
        if self.trace:
            self.emit(depth, f"TRACE({pc}, (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10))")

    def terminator(self, insn: Instruction, spec: OpSpec, pc: int, nxt: int, depth: int) -> None:
        kind, e = spec.kind, self.emit
        if kind is Kind.JA:
            e(depth, f"pc = {jump_target(spec, insn, pc)}")
        elif kind is Kind.JUMP:
            e(
                depth,
                f"pc = {jump_target(spec, insn, pc)} if {self.condition(insn, spec)} else {nxt}",
            )
        elif kind is Kind.JCOND:
            e(depth, "if loops:")
            e(depth + 1, "loops -= 1")
            e(depth + 1, f"pc = {nxt}")
            e(depth, "else:")
            e(depth + 1, f"pc = {jump_target(spec, insn, pc)}")
        elif kind is Kind.EXIT:
            e(depth, "if not frames:")
            e(depth + 1, "return r0, n, None")
            e(depth, "pc, r6, r7, r8, r9, r10, loops = frames.pop()")
            e(depth, f"slo = r10 - {STACK_SIZE}")
        elif kind is Kind.CALL_LOCAL:
            self.local_call(str(jump_target(spec, insn, pc)), pc, nxt, depth)
        elif kind is Kind.CALLX:
            e(depth, f"t = r{insn.dst_reg}")
            e(depth, f"if t & {~0xFFFFFFFF & M64:#x} == FUNC_TOKEN:")
            self.local_call(f"t & {0xFFFFFFFF:#x}", pc, nxt, depth + 1)
            e(depth, "else:")
            # XF caches what HX found: a callx in a loop costs a dict lookup, not a search
            self.helper_call(pc, "(XF.get(t) or HX(t))", "t", depth + 1)
            e(depth + 1, f"pc = {nxt}")
        elif kind in (Kind.CALL, Kind.KFUNC):
            if kind is Kind.CALL and insn.imm == 12:
                e(depth, f"t = TAIL(r1, r2, r3, {pc})")
                e(depth, "if t is not None:")
                e(depth + 1, "if frames:")
                e(
                    depth + 2,
                    f"raise TailCallError('tail call from a bpf-to-bpf subprogram', pc={pc})",
                )
                e(depth + 1, "return r0, n, t")
            elif kind is Kind.CALL:
                self.helper_ids.add(insn.imm)
                self.helper_call(
                    pc, f"H{insn.imm}" if insn.imm >= 0 else f"HN{-insn.imm}", str(insn.imm), depth
                )
            else:
                self.kfunc_ids.add(insn.imm)
                self.helper_call(pc, f"K{insn.imm & M32}", str(insn.imm), depth)
            e(depth, f"pc = {nxt}")
        elif kind in (Kind.LD_ABS, Kind.LD_IND):
            off = str(insn.imm) if kind is Kind.LD_ABS else f"{insn.imm} + r{insn.src_reg}"
            e(depth, f"t = LDABS({pc}, {off}, {spec.width})")
            e(depth, "if t is None:")
            e(depth + 1, "return 0, n, None")  # kernel: out-of-bounds legacy load ends the program
            e(depth, "r0 = t")
            e(depth, f"pc = {nxt}")
        else:
            self.straight(insn, spec, pc, depth)
            e(depth, f"pc = {nxt}")
        e(depth, "continue")

    def local_call(self, target: str, pc: int, nxt: int, depth: int) -> None:
        """A bpf-to-bpf call: push the caller's state, open a frame below its own.

        ``frames`` counts the calls of this entry only; a callback (``invoke``)
        enters already below its caller, so the call is also refused when the
        new frame would not lie wholly inside the stack (``r10 - 1024 < base``).
        Both are the kernel's single limit of MAX_CALL_FRAMES, which counts a
        callback's frame too, and the check keeps ``slo >= stack base``.
        """
        e = self.emit
        floor = self.layout.stack_base + 2 * STACK_SIZE
        e(depth, f"if len(frames) >= {MAX_CALL_FRAMES - 1} or r10 < {floor:#x}:")
        e(
            depth + 1,
            f"raise CallDepthError('call depth exceeds {MAX_CALL_FRAMES} frames', pc={pc})",
        )
        e(depth, f"frames.append(({nxt}, r6, r7, r8, r9, r10, loops))")
        e(depth, "loops = MAX_LOOPS")  # each function counts its own may_goto iterations
        e(depth, f"r10 -= {STACK_SIZE}")
        e(depth, f"slo = r10 - {STACK_SIZE}")
        e(depth, f"pc = {target}")

    def helper_call(self, pc: int, fn: str, what: str, depth: int) -> None:
        e = self.emit
        e(depth, "FRAME[0] = r10")  # a helper that calls back into the program needs the frame
        e(depth, "try:")
        e(depth + 1, f"r0 = {fn}(ENV, r1, r2, r3, r4, r5) & M64")
        e(depth, "except PybpfError as err:")
        e(depth + 1, f"raise at_pc(err, {pc})")
        e(depth, "except Exception as err:")
        e(depth + 1, f"raise HelperError(f'helper {{{what}}} failed: {{err!r}}', pc={pc}) from err")

    # --- straight-line instructions ------------------------------------
    def straight(self, insn: Instruction, spec: OpSpec, pc: int, depth: int) -> None:
        for line in self.code(insn, spec, pc):
            self.emit(depth, line)

    def code(self, insn: Instruction, spec: OpSpec, pc: int) -> list[str]:
        kind, d, s = spec.kind, f"r{insn.dst_reg}", f"r{insn.src_reg}"
        if kind is Kind.ALU:
            return [self.alu(insn, spec, d, s)]
        if kind is Kind.NEG:
            return [f"{d} = -{d} & {'M64' if spec.width == 64 else 'M32'}"]
        if kind is Kind.MOVSX:
            bits = spec.op
            mask, sign = (1 << bits) - 1, 1 << (bits - 1)
            out = "M64" if spec.width == 64 else "M32"
            return [f"{d} = ((({s} & {mask:#x}) ^ {sign:#x}) - {sign:#x}) & {out}"]
        if kind is Kind.END:
            if spec.op == 0:  # to little endian: a truncation on a little-endian machine
                return [f"{d} &= {(1 << spec.width) - 1:#x}"] if spec.width < 64 else []
            return [f"{d} = BSWAP{spec.width}({d})"]
        if kind is Kind.LDDW:
            return [f"{d} = {self.lddw(insn, pc):#x}"]
        if kind in (Kind.LDX, Kind.LDXSX, Kind.LOAD_ACQ):
            return self.load(insn, spec, pc)
        if kind in (Kind.ST, Kind.STX, Kind.STORE_REL):
            return self.store(insn, spec, pc)
        if kind is Kind.ATOMIC:
            return self.atomic(insn, spec, pc)
        raise AssertionError(f"{spec.name} is not straight-line")  # pragma: no cover

    def alu(self, insn: Instruction, spec: OpSpec, d: str, s: str) -> str:
        op, w64 = spec.op, spec.width == 64
        mask = "M64" if w64 else "M32"
        bits = 64 if w64 else 32
        if insn.source:
            src = s if w64 else f"({s} & M32)"
        else:
            src = f"{insn.imm & (M64 if w64 else M32):#x}"
        if op in _ALU_OPS:
            needs_mask = op in (Alu.ADD, Alu.SUB, Alu.MUL) or not w64
            expr = f"{d} {_ALU_OPS[op]} {src}"
            return f"{d} = ({expr}) & {mask}" if needs_mask else f"{d} = {expr}"
        if op == Alu.MOV:
            return f"{d} = {src}"
        sh = f"({s} & {bits - 1})" if insn.source else str(insn.imm & (bits - 1))
        dv = d if w64 else f"({d} & M32)"
        if op == Alu.LSH:
            return f"{d} = ({d} << {sh}) & {mask}"
        if op == Alu.RSH:
            return f"{d} = {dv} >> {sh}"
        if op == Alu.ARSH:
            sign = "S64" if w64 else "S32"
            return f"{d} = ((({dv} ^ {sign}) - {sign}) >> {sh}) & {mask}"
        if op in (Alu.DIV, Alu.MOD):
            if spec.signed:
                fn = ("SDIV" if op == Alu.DIV else "SMOD") + str(bits)
                return f"{d} = {fn}({d}, {src})"
            if not insn.source:
                c = int(src, 16)
                if c == 0:
                    return f"{d} = 0" if op == Alu.DIV else f"{d} = {dv}"
                return f"{d} = {dv} {'//' if op == Alu.DIV else '%'} {src}"
            if op == Alu.DIV:
                return f"{d} = {dv} // {src} if {src} else 0"
            return f"{d} = {dv} % {src} if {src} else {dv}"
        raise AssertionError(f"ALU op {op:#x}")  # pragma: no cover

    def condition(self, insn: Instruction, spec: OpSpec) -> str:
        op, w64 = spec.op, spec.width == 64
        left = f"r{insn.dst_reg}" if w64 else f"(r{insn.dst_reg} & M32)"
        if insn.source:
            right = f"r{insn.src_reg}" if w64 else f"(r{insn.src_reg} & M32)"
        else:
            right = f"{insn.imm & (M64 if w64 else M32):#x}"
        if op == Jmp.JSET:
            return f"{left} & {right}"
        if op in _SIGNED_JMP:
            sign = "S64" if w64 else "S32"
            if insn.source:
                right = f"({right} ^ {sign})"
            else:
                right = f"{int(right, 16) ^ (S64 if w64 else S32):#x}"
            left = f"({left} ^ {sign})"
        return f"{left} {_CMP[op]} {right}"

    def address(self, reg: int, off: int) -> str:
        if off == 0:
            return f"r{reg}"
        return f"(r{reg} + {off}) & M64" if off > 0 else f"(r{reg} - {-off}) & M64"

    def load(self, insn: Instruction, spec: OpSpec, pc: int) -> list[str]:
        n, d = spec.width, f"r{insn.dst_reg}"
        top = self.layout.stack_top - n
        out = [
            f"a = {self.address(insn.src_reg, insn.off)}",
            f"if slo <= a <= {top}: {d} = U{n}(STK, a - {self.layout.stack_base})[0]",
            f"elif HB <= a <= HE{n}: {d} = U{n}(HV, a - HB)[0]",
            f"else: {d} = LD({pc}, a, {n})",
        ]
        if spec.kind is Kind.LDXSX:
            sign = 1 << (8 * n - 1)
            out.append(f"{d} = (({d} ^ {sign:#x}) - {sign:#x}) & M64")
        return out

    def store(self, insn: Instruction, spec: OpSpec, pc: int) -> list[str]:
        n = spec.width
        top = self.layout.stack_top - n
        if spec.kind is Kind.ST:
            value = f"{insn.imm & ((1 << (8 * n)) - 1):#x}"
        else:
            value = f"r{insn.src_reg}" if n == 8 else f"r{insn.src_reg} & {(1 << (8 * n)) - 1:#x}"
        return [
            f"a = {self.address(insn.dst_reg, insn.off)}",
            f"if slo <= a <= {top}: P{n}(STK, a - {self.layout.stack_base}, {value})",
            f"elif WB <= a <= WE{n}: P{n}(HV, a - WB, {value})",
            f"else: ST({pc}, a, {n}, {value})",
        ]

    def atomic(self, insn: Instruction, spec: OpSpec, pc: int) -> list[str]:
        """A read-modify-write: inline in the stack and writable hot windows, else ATOMIC.

        The windows are the stores' (so faults and read-only regions stay with
        ``ATOMIC``, i.e. :meth:`~pybpf.vm.memory.Memory.atomic`, whose
        semantics the inline forms repeat).  Inline is several times faster
        than the call, which matters for how long a budget lasts.
        """
        n, op, s = spec.width, spec.op, f"r{insn.src_reg}"
        mask = f"{(1 << (8 * n)) - 1:#x}"
        if op == AtomicOp.CMPXCHG:  # stores the old value back when it differs from r0
            new, old_to, r0 = f"{s} if t == r0 & {mask} else t", "r0", "r0"
        else:
            new = s if op == AtomicOp.XCHG else f"t {_ATOMIC_OPS[op & ~AtomicOp.FETCH]} {s}"
            old_to, r0 = (s if op & AtomicOp.FETCH else None), "0"
        top, base = self.layout.stack_top - n, self.layout.stack_base
        out = [
            f"a = {self.address(insn.dst_reg, insn.off)}",
            f"if slo <= a <= {top}: o = a - {base}; t = U{n}(STK, o)[0]; "
            f"P{n}(STK, o, ({new}) & {mask})",
            f"elif WB <= a <= WE{n}: o = a - WB; t = U{n}(HV, o)[0]; P{n}(HV, o, ({new}) & {mask})",
            f"else: t = ATOMIC({pc}, a, {n}, {op}, {s}, {r0}, slo)",
        ]
        return out + ([f"{old_to} = t"] if old_to else [])

    def lddw(self, insn: Instruction, pc: int) -> int:
        if insn.src_reg == Pseudo.IMM64:
            return insn.imm64
        if insn.src_reg == Pseudo.FUNC:
            return FUNC_TOKEN | (pc + 1 + insn.imm)  # the callback's pc, checked by check_jumps
        value = self.resolve_imm64(insn, pc) & M64
        self.imm64[pc] = value
        return value


def compile_program(
    insns: Sequence[Instruction],
    layout: Layout,
    *,
    resolve_imm64=None,
    budget: int = 1 << 62,
    trace: bool = False,
) -> Compiled:
    """Generate the Python source of ``insns`` (validated, jumps checked).

    ``resolve_imm64(insn, pc) -> int`` turns pseudo ld_imm64 (map fd, map
    value, BTF id, map index) into addresses; without it such a load raises
    :class:`~pybpf.errors.UnresolvedLoadError`.  ``budget`` bounds the number
    of executed instructions.  ``trace`` makes the code call ``TRACE(pc, regs)``
    before every instruction (a debugging mode: several times slower).
    """
    if not insns:
        raise IsaError("empty program")
    specs = check_jumps(insns)

    def unresolved(insn: Instruction, pc: int) -> int:
        raise UnresolvedLoadError(
            f"ld_imm64 with pseudo source {Pseudo(insn.src_reg).name} needs a loader", pc=pc
        )

    gen = _Gen(insns, specs, layout, resolve_imm64 or unresolved, budget, trace)
    source = gen.generate()
    return Compiled(source, frozenset(gen.helper_ids), frozenset(gen.kfunc_ids), gen.imm64,
                    gen.leader_set)


def namespace_names() -> tuple[str, ...]:
    """Names the generated code expects besides H<id>/HN<id>/K<id> helpers."""
    return ("M64", "M32", "S64", "S32", "MAX_LOOPS", "FUNC_TOKEN", "STK", "U1", "U2", "U4",
            "HB", "HV", "HE1", "HE2", "HE4", "HE8", "WB", "WE1", "WE2", "WE4", "WE8",
            "U8", "P1", "P2", "P4", "P8", "LD", "ST", "ATOMIC", "LDABS", "TAIL", "HX", "XF", "ENV",
            "FRAME", "TRACE", "SDIV64", "SDIV32", "SMOD64", "SMOD32",
            "BSWAP16", "BSWAP32", "BSWAP64",
            "VmError", "BudgetExceeded", "CallDepthError", "HelperError", "TailCallError",
            "PybpfError", "at_pc")  # fmt: skip


def signed_division(bits: int) -> tuple[Callable[[int, int], int], Callable[[int, int], int]]:
    """(sdiv, smod) for ``bits``-bit operands: ``SDIV<bits>``/``SMOD<bits>`` in generated code.

    Division truncates toward zero and wraps INT_MIN / -1; modulo takes the
    dividend's sign; by zero, division gives 0 and modulo leaves the dividend
    (RFC 9669 4.1).  One closure per width: these run once per executed
    instruction, and a loop of them is the interpreter's slowest arithmetic.
    """
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)

    def div(a: int, b: int) -> int:
        a, b = ((a & mask) ^ sign) - sign, ((b & mask) ^ sign) - sign
        if not b:
            return 0
        q = a // b  # floors; C truncates toward zero, one more when inexact and negative
        if q < 0 and q * b != a:
            q += 1
        return q & mask

    def mod(a: int, b: int) -> int:
        sa, b = ((a & mask) ^ sign) - sign, ((b & mask) ^ sign) - sign
        if not b:
            return a & mask
        r = sa % b  # takes the divisor's sign; C's takes the dividend's
        if r and (r < 0) != (sa < 0):
            r -= b
        return r & mask

    return div, mod
