"""Translate eBPF instructions into LLVM IR text (a pure step).

:func:`translate` returns the text of one LLVM module holding one function,
``i64 @bpf_entry(ptr %ctx)``; :mod:`pybpf.jit.native` compiles it and
:mod:`pybpf.jit.engine` runs it.  Nothing here touches native state.

**Structure.**  The program is cut into the interpreter's basic blocks (same
leaders as :mod:`pybpf.vm.compiler`), one LLVM block each.  Registers r0..r10
are allocas (mem2reg makes them SSA values).  bpf-to-bpf calls keep an
explicit frame stack (return pc, r6..r9, r10; at most 8 frames of 512 bytes
on the engine's stack) inside the one function, exactly as the interpreter
does, so a callee may share blocks with its caller and ``callx`` may reach any
subprogram; ``exit`` from a callee returns through a ``switch`` over the
return sites.  The entry block dispatches on the start pc (0 for a run, a
function entry for ``invoke``: call and ld_imm64 BPF_PSEUDO_FUNC targets;
``callx`` reaches the same set).

**Semantics** are the interpreter's: 32-bit operations zero-extend; shifts
are masked to the width; unsigned division by zero gives 0 and modulo by zero
keeps the dividend; signed division wraps INT_MIN / -1 and the modulo is 0;
every guard is a ``select`` on a safe divisor, so the IR has no undefined
behaviour (no ``nsw``/``nuw``, no oversized shift, no trapping division).
Atomics are ``atomicrmw``/``cmpxchg`` (sequentially consistent), fetch forms
and cmpxchg write the zero-extended old value.  may_goto counts down from
``MAX_LOOPS`` per entry.

**The run context** ``%ctx`` is an array of 64-bit words (indices in
:class:`~pybpf.jit.abi.Slot`): inputs r1..r5, r10, the start pc, the whole stack's top, the
hot region, the trampoline's address and the instruction budget; outputs r0
and the executed count; the abort flag and an auxiliary word.  The function
returns a :class:`Status`.  No address is compiled in except the resolved
ld_imm64 constants, so the code does not depend on where the stack lives.

**Callouts.**  Whatever must reach Python calls one trampoline,
``i64 tramp(ptr ctx, i64 id, i64 a1..a5)``, with ``id = kind << 56 | pc << 32
| value`` (:class:`Callout`, :func:`callout_id`).  After every callout the
code reads ``Slot.ABORT``; when set (a helper raised, a memory access
faulted) it returns :attr:`Status.ABORT` at once and the runner re-raises the
recorded exception.  Before a helper callout the current r10 is stored in
``Slot.R10`` so a helper that calls back into the program (bpf_loop) finds
the caller's frame.

**Memory.**  A load or store goes directly to host memory when it falls in
the current frame or above it in the stack (``slo <= a`` and ``a + n <=
stack top``) or in the run's hot region (``Slot.HOT_BASE``/``HOT_SIZE``;
stores need ``HOT_WSIZE``, 0 when read-only); every other access is a
:attr:`Callout.LOAD`/``STORE``/``ATOMIC`` that the runner performs through
:class:`~pybpf.vm.memory.Memory` (so faults, read-only regions and context
conversion behave as in the interpreter).  In checked mode (the default)
the code never dereferences an address outside those two windows.  When no
instruction writes r10, an access at a constant offset in [-512, 0) from r10
is known to be in the current frame and is emitted without a check.  With
``options.direct`` (verified programs only) an access outside the windows
goes straight to memory unless it falls in ``Slot.CUSTOM_BASE/SIZE`` (the
context, converted in Python).  In both modes a plain load (``ldx``, not
sign-extending or acquiring) that falls in the context window first reads
the flag byte of the context's converted image (``Slot.CTX_IMAGE``, layout
:func:`~pybpf.jit.abi.ctx_image_layout`): when the image answers that
offset and width the load is the image's 64-bit word, natively (the
kernel's convert_ctx_access, done by the runtime ahead of the run); every
other context access, and every store, is a callout.  With ``options.count`` each block adds its
length to a counter and stops at ``Slot.BUDGET`` (BudgetExceeded, as the
interpreter's budget).

The context layout, statuses and callout kinds are :mod:`pybpf.jit.abi`'s
(re-exported here).

**Native calls (hook).**  ``options.native_calls`` maps a helper id to a
function ``hook(site: CallSite) -> str | None``.  It may return IR
instructions that compute the helper's result into ``site.result`` (an i64)
from ``site.args`` (the SSA names of r1..r5) and ``site.ctx``; temporaries
must come from ``site.fresh()``; labels it creates must come from
``site.fresh()`` too and it must end in the block it can fall out of.
Returning None keeps the trampoline call.  A ``callx`` whose register holds
a hooked id runs the same hook (a ``switch`` on the id before the callout).
``options.prelude`` is module-level IR (declarations, globals) the hooks
need.  Set ``site.may_abort`` when the emitted code may set the abort flag
(through a callout of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pybpf.errors import IsaError, UnresolvedLoadError
from pybpf.isa import (
    MAX_CALL_FRAMES,
    MAX_LOOPS,
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
from pybpf.jit.abi import (  # noqa: F401 - re-exported: the contract the IR is written to
    ENTRY,
    IMAGE_WIDTHS,
    SLOTS,
    Callout,
    Fault,
    Slot,
    Status,
    callout_id,
    split_callout,
)
from pybpf.vm.compiler import FUNC_TOKEN

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
@dataclass
class CallSite:
    """A helper call a native hook may implement (see the module docstring)."""

    helper_id: int
    pc: int
    args: tuple[str, ...]
    ctx: str
    result: str
    fresh: Callable[[], str]
    may_abort: bool = False


NativeCall = Callable[[CallSite], "str | None"]


@dataclass(frozen=True)
class IrOptions:
    """Translation options.

    ``resolve_imm64(insn, pc) -> int`` resolves pseudo ld_imm64 (map
    references) to constants; ``count`` makes the code count executed
    instructions per block and stop at ``Slot.BUDGET`` (as the interpreter
    does); ``direct`` (for verified programs only) sends an access outside the
    stack and hot windows straight to host memory unless it falls in the
    ``Slot.CUSTOM_BASE`` window (the context, whose fields are converted in
    Python); ``native_calls`` / ``prelude`` are the hook described above.
    """

    resolve_imm64: Callable[[Instruction, int], int] | None = None
    count: bool = True
    direct: bool = False
    native_calls: Mapping[int, NativeCall] = field(default_factory=dict)
    prelude: str = ""


@dataclass(frozen=True)
class Translation:
    """The IR module and what the runner needs to know about it."""

    text: str
    leaders: frozenset[int]  # block starts
    entries: frozenset[int]  # function entries: pc 0, call and callback targets (invoke, callx)
    helper_ids: frozenset[int]
    kfunc_ids: frozenset[int]
    imm64: dict[int, int]


_ALU = {Alu.ADD: "add", Alu.SUB: "sub", Alu.MUL: "mul", Alu.OR: "or", Alu.AND: "and",
        Alu.XOR: "xor"}  # fmt: skip
_SHIFT = {Alu.LSH: "shl", Alu.RSH: "lshr", Alu.ARSH: "ashr"}
_CMP = {
    Jmp.JEQ: "eq", Jmp.JNE: "ne", Jmp.JGT: "ugt", Jmp.JGE: "uge", Jmp.JLT: "ult",
    Jmp.JLE: "ule", Jmp.JSGT: "sgt", Jmp.JSGE: "sge", Jmp.JSLT: "slt", Jmp.JSLE: "sle",
}  # fmt: skip
_RMW = {AtomicOp.ADD: "add", AtomicOp.OR: "or", AtomicOp.AND: "and", AtomicOp.XOR: "xor"}
_TERMINATORS = frozenset({Kind.JA, Kind.JCOND, Kind.JUMP, Kind.CALL_LOCAL, Kind.CALLX, Kind.EXIT,
                          Kind.CALL, Kind.KFUNC, Kind.LD_ABS, Kind.LD_IND})  # fmt: skip
#: what a bpf-to-bpf call saves: the return pc, the callee-saved registers and the
#: caller's may_goto count (each function counts its own, from MAX_LOOPS at entry)
_FRAME_FIELDS = ("ret", "r6", "r7", "r8", "r9", "r10", "loops")


def _frame_var(name: str) -> str:
    return name if name == "loops" else name[1:]
_DECLARE = "\n".join(f"declare i{b} @llvm.bswap.i{b}(i{b})" for b in (16, 32, 64))


def _signed(value: int, bits: int = 64) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _writes_r10(insn: Instruction, spec: OpSpec) -> bool:
    if spec.kind in (Kind.ALU, Kind.NEG, Kind.MOVSX, Kind.END, Kind.LDDW, Kind.LDX, Kind.LDXSX,
                     Kind.LOAD_ACQ):  # fmt: skip
        return insn.dst_reg == 10
    if spec.kind is Kind.ATOMIC:
        return insn.src_reg == 10 and bool(spec.op & AtomicOp.FETCH) and spec.op != AtomicOp.CMPXCHG
    return False


def leaders(insns: Sequence[Instruction], specs: Sequence[OpSpec]) -> list[int]:
    """Block starts: pc 0, jump and call targets, and what follows a terminator."""
    pcs = slot_offsets(insns)
    end = pcs[-1] + insns[-1].slots
    lead = {0}
    for insn, spec, pc in zip(insns, specs, pcs, strict=True):
        target = jump_target(spec, insn, pc)
        if target is not None:
            lead.add(target)
        if spec.kind in _TERMINATORS:
            lead.add(pc + insn.slots)
    return sorted(p for p in lead if p < end)


class _Translator:
    def __init__(self, insns: Sequence[Instruction], options: IrOptions) -> None:
        if not insns:
            raise IsaError("empty program")
        self.insns = tuple(insns)
        self.specs = check_jumps(self.insns)
        self.pcs = slot_offsets(self.insns)
        self.end = self.pcs[-1] + self.insns[-1].slots
        self.options = options
        self.lines: list[str] = []
        self.n = 0
        self.helper_ids: set[int] = set()
        self.kfunc_ids: set[int] = set()
        self.imm64: dict[int, int] = {}
        self.return_sites: set[int] = set()
        self.leaders = leaders(self.insns, self.specs)
        self.entries = sorted({0} | {
            pc + 1 + insn.imm
            for insn, spec, pc in zip(self.insns, self.specs, self.pcs, strict=True)
            if spec.kind is Kind.CALL_LOCAL
            or (spec.kind is Kind.LDDW and insn.src_reg == Pseudo.FUNC)
        })  # fmt: skip
        self.known: dict[int | str, str] = {}  # register -> its value in the current block
        self.fixed_r10 = not any(_writes_r10(i, sp) for i, sp in zip(self.insns, self.specs,
                                                                      strict=True))

    # --- text --------------------------------------------------------------
    def fresh(self) -> str:
        self.n += 1
        return f"%t{self.n}"

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def emit(self, text: str) -> None:
        self.lines.append("  " + text)

    def block(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.known.clear()

    def op(self, text: str) -> str:
        name = self.fresh()
        self.emit(f"{name} = {text}")
        return name

    def get(self, reg: int | str) -> str:
        """The register's value: within one LLVM block, the last one stored or loaded."""
        value = self.known.get(reg)
        if value is None:
            value = self.known[reg] = self.op(f"load i64, ptr %r{reg}")
        return value

    def put(self, reg: int | str, value: str) -> None:
        self.emit(f"store i64 {value}, ptr %r{reg}")
        self.known[reg] = value

    def slot(self, index: Slot) -> str:
        return self.op(f"getelementptr i64, ptr %ctx, i64 {int(index)}")

    def read_slot(self, index: Slot) -> str:
        return self.op(f"load i64, ptr {self.slot(index)}")

    def write_slot(self, index: Slot, value: str) -> None:
        self.emit(f"store i64 {value}, ptr {self.slot(index)}")

    # --- callouts ------------------------------------------------------------
    def callout(self, kind: Callout, pc: int, value: int = 0, args: Sequence[str] = ()) -> str:
        """Call the trampoline; on abort, leave the function; returns the i64 result."""
        full = list(args) + ["0"] * (5 - len(args))
        ident = _signed(callout_id(kind, pc, value))
        result = self.op(f"call i64 %tramp(ptr %ctx, i64 {ident}, "
                         + ", ".join(f"i64 {a}" for a in full) + ")")  # fmt: skip
        self.check_abort()
        return result

    def check_abort(self) -> None:
        flag = self.read_slot(Slot.ABORT)
        bad = self.op(f"icmp ne i64 {flag}, 0")
        cont = self.label()
        self.emit(f"br i1 {bad}, label %abort, label %{cont}")
        self.block(cont)

    def fail(self, fault: Fault, pc: int) -> None:
        self.callout(Callout.RAISE, pc, fault)
        self.emit("br label %abort")

    # --- the function ------------------------------------------------------
    def translate(self) -> Translation:
        bodies = self.cut()
        self.prologue()
        for start, body in bodies:
            self.block(f"b{start}")
            self.body(start, body)
        self.block(f"b{self.end}")
        self.fail(Fault.FELL_OFF, self.end)
        self.epilogue()
        head = [f"; eBPF program, {len(self.insns)} instructions",
                f"define i64 @{ENTRY}(ptr %ctx) {{"]  # fmt: skip
        text = "\n".join([_DECLARE, self.options.prelude, *head, *self.lines, "}", ""])
        return Translation(text, frozenset(self.leaders), frozenset(self.entries),
                           frozenset(self.helper_ids),
                           frozenset(self.kfunc_ids), dict(self.imm64))  # fmt: skip

    def cut(self) -> list[tuple[int, list[int]]]:
        index = {pc: i for i, pc in enumerate(self.pcs)}
        out = []
        for b, start in enumerate(self.leaders):
            stop = self.leaders[b + 1] if b + 1 < len(self.leaders) else self.end
            last = index[stop] if stop in index else len(self.insns)
            out.append((start, list(range(index[start], last))))
        return out

    def prologue(self) -> None:
        self.block("entry")
        for r in (*range(11), "slo", "n", "loops", "depth"):
            self.emit(f"%r{r} = alloca i64")
        for name in _FRAME_FIELDS:
            self.emit(f"%f_{name} = alloca [{MAX_CALL_FRAMES} x i64]")
        for r in (0, 6, 7, 8, 9):
            self.put(r, "0")
        for r in range(1, 6):
            self.put(r, self.read_slot(Slot.R1 + r - 1))
        r10 = self.read_slot(Slot.R10)
        self.put(10, r10)
        self.put("slo", self.op(f"sub i64 {r10}, {STACK_SIZE}"))
        self.put("n", "0")
        self.put("loops", str(MAX_LOOPS))
        self.put("depth", "0")
        for name, index in (("stop", Slot.STACK_TOP), ("hb", Slot.HOT_BASE),
                            ("hs", Slot.HOT_SIZE), ("hws", Slot.HOT_WSIZE),
                            ("budget", Slot.BUDGET), ("cb", Slot.CUSTOM_BASE),
                            ("cs", Slot.CUSTOM_SIZE)):  # fmt: skip
            self.emit(f"%{name} = load i64, ptr {self.slot(index)}")
        self.emit(f"%ci = load i64, ptr {self.slot(Slot.CTX_IMAGE)}")
        self.emit("%cion = icmp ne i64 %ci, 0")
        self.emit(f"%cflags = add i64 %ci, {self.op(f'mul i64 %cs, {8 * len(IMAGE_WIDTHS)}')}")
        for k in range(len(IMAGE_WIDTHS)):
            self.emit(f"%cimg{k} = add i64 %ci, {self.op(f'mul i64 %cs, {8 * k}')}")
        tramp = self.read_slot(Slot.TRAMPOLINE)
        self.emit(f"%tramp = inttoptr i64 {tramp} to ptr")
        start = self.read_slot(Slot.START)
        if self.entries == [0]:  # nothing to call back into: every run starts at pc 0
            self.emit("br label %b0")
        else:
            cases = " ".join(f"i64 {pc}, label %b{pc}" for pc in self.entries)
            self.emit(f"switch i64 {start}, label %badstart [ {cases} ]")
        self.block("badstart")
        self.fail(Fault.BAD_CALL_TARGET, 0)

    def epilogue(self) -> None:
        for name, status in (("done", Status.EXIT), ("tail", Status.TAIL_CALL),
                             ("abort", Status.ABORT)):  # fmt: skip
            self.block(name)
            self.write_slot(Slot.R0, self.get(0))
            self.write_slot(Slot.EXECUTED, self.get("n"))
            self.emit(f"ret i64 {int(status)}")
        self.block("ret")
        depth = self.get("depth")
        self.emit(f"%retd = sub i64 {depth}, 1")
        self.put("depth", "%retd")
        for name in _FRAME_FIELDS:
            ptr = self.op(f"getelementptr [{MAX_CALL_FRAMES} x i64], ptr %f_{name}, i64 0, "
                          f"i64 %retd")  # fmt: skip
            value = self.op(f"load i64, ptr {ptr}")
            if name == "ret":
                ret = value
            else:
                self.put(_frame_var(name), value)
        self.put("slo", self.op(f"sub i64 {self.get(10)}, {STACK_SIZE}"))
        cases = " ".join(f"i64 {pc}, label %b{pc}" for pc in sorted(self.return_sites))
        self.emit(f"switch i64 {ret}, label %badstart [ {cases} ]")

    # --- blocks --------------------------------------------------------------
    def body(self, start: int, body: list[int]) -> None:
        if self.options.count:
            n = self.op(f"add i64 {self.get('n')}, {len(body)}")
            self.put("n", n)
            over = self.op(f"icmp ugt i64 {n}, %budget")
            ok, bad = self.label(), self.label()
            self.emit(f"br i1 {over}, label %{bad}, label %{ok}")
            self.block(bad)
            self.fail(Fault.BUDGET, start)
            self.block(ok)
        for i in body[:-1]:
            self.straight(self.insns[i], self.specs[i], self.pcs[i])
        last = body[-1]
        insn, spec, pc = self.insns[last], self.specs[last], self.pcs[last]
        self.terminator(insn, spec, pc, pc + insn.slots)

    def terminator(self, insn: Instruction, spec: OpSpec, pc: int, nxt: int) -> None:
        kind = spec.kind
        if kind is Kind.JA:
            self.emit(f"br label %b{jump_target(spec, insn, pc)}")
        elif kind is Kind.JUMP:
            cond = self.condition(insn, spec)
            self.emit(f"br i1 {cond}, label %b{jump_target(spec, insn, pc)}, label %b{nxt}")
        elif kind is Kind.JCOND:
            loops = self.get("loops")
            left = self.op(f"icmp ne i64 {loops}, 0")
            self.put("loops", self.op(f"select i1 {left}, i64 {self.op(f'sub i64 {loops}, 1')}, "
                                      f"i64 0"))  # fmt: skip
            self.emit(f"br i1 {left}, label %b{nxt}, label %b{jump_target(spec, insn, pc)}")
        elif kind is Kind.EXIT:
            top = self.op(f"icmp eq i64 {self.get('depth')}, 0")
            self.emit(f"br i1 {top}, label %done, label %ret")
        elif kind is Kind.CALL_LOCAL:
            self.local_call(pc, nxt)
            self.emit(f"br label %b{jump_target(spec, insn, pc)}")
        elif kind is Kind.CALLX:
            self.callx(insn, pc, nxt)
        elif kind is Kind.CALL and insn.imm == 12:
            self.tail_call(pc, nxt)
        elif kind in (Kind.CALL, Kind.KFUNC):
            self.helper(insn, kind, pc)
            self.emit(f"br label %b{nxt}")
        elif kind in (Kind.LD_ABS, Kind.LD_IND):
            self.ld_abs(insn, spec, pc)
            self.emit(f"br label %b{nxt}")
        else:
            self.straight(insn, spec, pc)
            self.emit(f"br label %b{nxt}")

    def local_call(self, pc: int, nxt: int) -> None:
        depth = self.get("depth")
        deep = self.op(f"icmp uge i64 {depth}, {MAX_CALL_FRAMES - 1}")
        # a callback (invoke) starts below its caller's frame with a fresh count, and a
        # program may have moved r10: no call may take a frame under the stack (the
        # interpreter's rule, checked whether or not r10 is ever written)
        floor = self.op(f"sub i64 %stop, {STACK_SIZE * MAX_CALL_FRAMES - 2 * STACK_SIZE}")
        under = self.op(f"icmp ult i64 {self.get(10)}, {floor}")
        deep = self.op(f"or i1 {deep}, {under}")
        ok, bad = self.label(), self.label()
        self.emit(f"br i1 {deep}, label %{bad}, label %{ok}")
        self.block(bad)
        self.fail(Fault.CALL_DEPTH, pc)
        self.block(ok)
        self.return_sites.add(nxt)
        for name in _FRAME_FIELDS:
            ptr = self.op(f"getelementptr [{MAX_CALL_FRAMES} x i64], ptr %f_{name}, i64 0, "
                          f"i64 {depth}")  # fmt: skip
            self.emit(f"store i64 {nxt if name == 'ret' else self.get(_frame_var(name))}, "
                      f"ptr {ptr}")  # fmt: skip
        self.put("depth", self.op(f"add i64 {depth}, 1"))
        self.put("loops", str(MAX_LOOPS))
        r10 = self.op(f"sub i64 {self.get(10)}, {STACK_SIZE}")
        self.put(10, r10)
        self.put("slo", self.op(f"sub i64 {r10}, {STACK_SIZE}"))

    def callx(self, insn: Instruction, pc: int, nxt: int) -> None:
        t = self.get(insn.dst_reg)
        high = self.op(f"and i64 {t}, {_signed(~M32 & M64)}")
        local = self.op(f"icmp eq i64 {high}, {_signed(FUNC_TOKEN)}")
        to_local, to_helper = self.label(), self.label()
        self.emit(f"br i1 {local}, label %{to_local}, label %{to_helper}")
        self.block(to_local)
        self.local_call(pc, nxt)
        target = self.op(f"and i64 {t}, {M32}")
        bad = self.label()
        cases = " ".join(f"i64 {p}, label %b{p}" for p in self.entries)
        self.emit(f"switch i64 {target}, label %{bad} [ {cases} ]")
        self.block(bad)
        self.fail(Fault.BAD_CALL_TARGET, pc)
        self.block(to_helper)
        # callx of a helper with a native hook runs the hook, as ``call`` of it does
        hooked = {helper_id: self.label() for helper_id in sorted(self.options.native_calls)}
        if hooked:
            slow = self.label()
            cases = " ".join(f"i64 {i}, label %{label}" for i, label in hooked.items())
            self.emit(f"switch i64 {t}, label %{slow} [ {cases} ]")
            for helper_id, label in hooked.items():
                self.block(label)
                done = self.native_call(helper_id, pc)
                self.emit(f"br label %{f'b{nxt}' if done else slow}")  # a hook may decline
            self.block(slow)
        self.write_slot(Slot.AUX, t)
        self.write_slot(Slot.R10, self.get(10))
        args = [self.get(r) for r in range(1, 6)]
        self.put(0, self.callout(Callout.HELPER_X, pc, 0, args))
        self.emit(f"br label %b{nxt}")

    def tail_call(self, pc: int, nxt: int) -> None:
        args = [self.get(r) for r in range(1, 4)]
        found = self.op(f"icmp ne i64 {self.callout(Callout.TAIL_CALL, pc, 0, args)}, 0")
        go, nested = self.label(), self.label()
        self.emit(f"br i1 {found}, label %{go}, label %b{nxt}")
        self.block(go)
        sub = self.op(f"icmp ne i64 {self.get('depth')}, 0")
        self.emit(f"br i1 {sub}, label %{nested}, label %tail")
        self.block(nested)
        self.fail(Fault.TAIL_IN_SUBPROG, pc)

    def helper(self, insn: Instruction, kind: Kind, pc: int) -> None:
        args = [self.get(r) for r in range(1, 6)]
        if kind is Kind.KFUNC:
            self.kfunc_ids.add(insn.imm)
            self.write_slot(Slot.R10, self.get(10))
            self.put(0, self.callout(Callout.KFUNC, pc, insn.imm, args))
            return
        if self.native_call(insn.imm, pc):
            return
        self.helper_ids.add(insn.imm)
        self.write_slot(Slot.R10, self.get(10))
        self.put(0, self.callout(Callout.HELPER, pc, insn.imm, args))

    def native_call(self, helper_id: int, pc: int) -> bool:
        """Emit helper ``helper_id``'s native hook into r0; False when it has none (or declines)."""
        hook = self.options.native_calls.get(helper_id)
        if hook is None:
            return False
        args = [self.get(r) for r in range(1, 6)]
        site = CallSite(helper_id, pc, tuple(args), "%ctx", self.fresh(), self.fresh)
        text = hook(site)
        if text is None:
            return False
        self.lines.extend(text.strip("\n").splitlines())
        self.known.clear()  # the hook may have opened blocks of its own
        if site.may_abort:
            self.check_abort()
        self.put(0, site.result)
        return True

    def ld_abs(self, insn: Instruction, spec: OpSpec, pc: int) -> None:
        offset = str(insn.imm)
        if spec.kind is Kind.LD_IND:
            offset = self.op(f"add i64 {self.get(insn.src_reg)}, {insn.imm}")
        value = self.callout(Callout.LD_ABS, pc, 0, [offset, str(spec.width)])
        oob = self.op(f"icmp ne i64 {self.read_slot(Slot.AUX)}, 0")
        out, ok = self.label(), self.label()
        self.emit(f"br i1 {oob}, label %{out}, label %{ok}")
        self.block(out)
        self.put(0, "0")
        self.emit("br label %done")
        self.block(ok)
        self.put(0, value)

    # --- straight-line instructions ------------------------------------------
    def straight(self, insn: Instruction, spec: OpSpec, pc: int) -> None:
        kind = spec.kind
        if kind is Kind.ALU:
            self.alu(insn, spec)
        elif kind is Kind.NEG:
            self.unary(insn.dst_reg, spec.width, lambda v, t: f"sub {t} 0, {v}")
        elif kind is Kind.MOVSX:
            t = "i64" if spec.width == 64 else "i32"
            narrow = self.op(f"trunc i64 {self.get(insn.src_reg)} to i{spec.op}")
            self.put(insn.dst_reg, self.widen(self.op(f"sext i{spec.op} {narrow} to {t}"),
                                              spec.width))  # fmt: skip
        elif kind is Kind.END:
            self.end_(insn, spec)
        elif kind is Kind.LDDW:
            self.put(insn.dst_reg, str(_signed(self.lddw(insn, pc))))
        elif kind in (Kind.LDX, Kind.LDXSX, Kind.LOAD_ACQ):
            self.load(insn, spec, pc)
        elif kind in (Kind.ST, Kind.STX, Kind.STORE_REL):
            self.store(insn, spec, pc)
        elif kind is Kind.ATOMIC:
            self.atomic(insn, spec, pc)
        else:  # pragma: no cover - the table has no other straight-line kind
            raise AssertionError(spec.name)

    def widen(self, value: str, width: int) -> str:
        return value if width == 64 else self.op(f"zext i32 {value} to i64")

    def operand(self, reg: int, width: int) -> str:
        value = self.get(reg)
        return value if width == 64 else self.op(f"trunc i64 {value} to i32")

    def unary(self, reg: int, width: int, fn: Callable[[str, str], str]) -> None:
        t = f"i{width}"
        self.put(reg, self.widen(self.op(fn(self.operand(reg, width), t)), width))

    def alu(self, insn: Instruction, spec: OpSpec) -> None:
        op, w = spec.op, spec.width
        t = f"i{w}"
        if insn.source:
            src = self.operand(insn.src_reg, w)
            const = None
        else:
            const = _signed(insn.imm, w)
            src = str(const)
        if op == Alu.MOV:
            if insn.source:
                self.put(insn.dst_reg, self.widen(src, w))
            else:
                self.put(insn.dst_reg, str(insn.imm & M32 if w == 32 else insn.imm))
            return
        dst = self.operand(insn.dst_reg, w)
        if op in _ALU:
            out = self.op(f"{_ALU[op]} {t} {dst}, {src}")
        elif op in _SHIFT:
            amount = str(insn.imm & (w - 1)) if const is not None else self.op(
                f"and {t} {src}, {w - 1}")
            out = self.op(f"{_SHIFT[op]} {t} {dst}, {amount}")
        elif spec.signed:
            out = self.signed_divmod(op, t, w, dst, src)
        else:
            out = self.divmod(op, t, dst, src, const)
        self.put(insn.dst_reg, self.widen(out, w))

    def divmod(self, op: int, t: str, dst: str, src: str, const: int | None) -> str:
        name = "udiv" if op == Alu.DIV else "urem"
        if const is not None:
            if const == 0:
                return "0" if op == Alu.DIV else dst
            return self.op(f"{name} {t} {dst}, {src}")
        zero = self.op(f"icmp eq {t} {src}, 0")
        safe = self.op(f"select i1 {zero}, {t} 1, {t} {src}")
        q = self.op(f"{name} {t} {dst}, {safe}")
        return self.op(f"select i1 {zero}, {t} {'0' if op == Alu.DIV else dst}, {t} {q}")

    def signed_divmod(self, op: int, t: str, w: int, dst: str, src: str) -> str:
        zero = self.op(f"icmp eq {t} {src}, 0")
        minus1 = self.op(f"icmp eq {t} {src}, -1")
        odd = self.op(f"or i1 {zero}, {minus1}")
        safe = self.op(f"select i1 {odd}, {t} 1, {t} {src}")
        if op == Alu.DIV:  # x / 0 = 0; x / -1 = -x (INT_MIN wraps to itself)
            q = self.op(f"sdiv {t} {dst}, {safe}")
            neg = self.op(f"sub {t} 0, {dst}")
            q = self.op(f"select i1 {minus1}, {t} {neg}, {t} {q}")
            return self.op(f"select i1 {zero}, {t} 0, {t} {q}")
        r = self.op(f"srem {t} {dst}, {safe}")  # x % 0 = x; x % -1 = 0
        r = self.op(f"select i1 {minus1}, {t} 0, {t} {r}")
        return self.op(f"select i1 {zero}, {t} {dst}, {t} {r}")

    def end_(self, insn: Instruction, spec: OpSpec) -> None:
        bits = spec.width
        value = self.get(insn.dst_reg)
        if spec.op == 0 and bits == 64:
            return
        narrow = value if bits == 64 else self.op(f"trunc i64 {value} to i{bits}")
        if spec.op != 0:
            narrow = self.op(f"call i{bits} @llvm.bswap.i{bits}(i{bits} {narrow})")
        self.put(insn.dst_reg, narrow if bits == 64 else self.op(f"zext i{bits} {narrow} to i64"))

    def condition(self, insn: Instruction, spec: OpSpec) -> str:
        w = spec.width
        t = f"i{w}"
        left = self.operand(insn.dst_reg, w)
        right = self.operand(insn.src_reg, w) if insn.source else str(_signed(insn.imm, w))
        if spec.op == Jmp.JSET:
            both = self.op(f"and {t} {left}, {right}")
            return self.op(f"icmp ne {t} {both}, 0")
        return self.op(f"icmp {_CMP[spec.op]} {t} {left}, {right}")

    def lddw(self, insn: Instruction, pc: int) -> int:
        if insn.src_reg == Pseudo.IMM64:
            return insn.imm64
        if insn.src_reg == Pseudo.FUNC:
            return FUNC_TOKEN | (pc + 1 + insn.imm)
        if self.options.resolve_imm64 is None:
            raise UnresolvedLoadError(
                f"ld_imm64 with pseudo source {Pseudo(insn.src_reg).name} needs a loader", pc=pc
            )
        value = self.options.resolve_imm64(insn, pc) & M64
        self.imm64[pc] = value
        return value

    # --- memory --------------------------------------------------------------
    def address(self, reg: int, off: int) -> str:
        base = self.get(reg)
        return base if off == 0 else self.op(f"add i64 {base}, {off}")

    def in_frame(self, reg: int, off: int, size: int) -> bool:
        """True when ``reg + off`` is inside the current frame whatever the run does.

        When no instruction writes r10 it always holds the current frame's
        top (calls and returns restore it), so r10-relative accesses with a
        constant offset in [-512, 0) need no run-time check.
        """
        return self.fixed_r10 and reg == 10 and off >= -STACK_SIZE and off + size <= 0

    def guard(self, address: str, size: int, write: bool,
              image: bool = False) -> tuple[str, str, tuple[str, str] | None]:  # fmt: skip
        """Branch on the fast windows; returns the (fast, slow, hit) labels, none opened.

        With ``image`` (plain loads only) an address in the context window
        whose flag bit in the converted image is set branches to ``hit``,
        returned as (label, offset in the context), where the load reads the
        image's word instead of calling out; ``hit`` is None otherwise.
        """
        slo = self.get("slo")
        d = self.op(f"sub i64 {address}, {slo}")
        lim = self.op(f"sub i64 {self.op(f'sub i64 %stop, {size}')}, {slo}")
        in_stack = self.op(f"icmp ule i64 {d}, {lim}")
        fast, hot, slow = self.label(), self.label(), self.label()
        self.emit(f"br i1 {in_stack}, label %{fast}, label %{hot}")
        self.block(hot)
        size_name = "%hws" if write else "%hs"
        dh = self.op(f"sub i64 {address}, %hb")
        inside = self.op(f"icmp ult i64 {dh}, {size_name}")
        last = self.op(f"add i64 {dh}, {size}")
        fits = self.op(f"icmp ule i64 {last}, {size_name}")
        ok = self.op(f"and i1 {inside}, {fits}")
        if not self.options.direct and not image:
            self.emit(f"br i1 {ok}, label %{fast}, label %{slow}")
            return fast, slow, None
        custom = self.label()
        self.emit(f"br i1 {ok}, label %{fast}, label %{custom}")
        self.block(custom)
        dc = self.op(f"sub i64 {address}, %cb")
        in_custom = self.op(f"icmp ult i64 {dc}, %cs")
        outside = fast if self.options.direct else slow
        if not image:
            self.emit(f"br i1 {in_custom}, label %{slow}, label %{outside}")
            return fast, slow, None
        imaged, flagged, hit = self.label(), self.label(), self.label()
        self.emit(f"br i1 {in_custom}, label %{imaged}, label %{outside}")
        self.block(imaged)
        self.emit(f"br i1 %cion, label %{flagged}, label %{slow}")
        self.block(flagged)
        flag_ptr = self.op(f"inttoptr i64 {self.op(f'add i64 %cflags, {dc}')} to ptr")
        flag = self.op(f"load i8, ptr {flag_ptr}, align 1")
        bit = self.op(f"and i8 {flag}, {1 << IMAGE_WIDTHS.index(size)}")
        answered = self.op(f"icmp ne i8 {bit}, 0")
        self.emit(f"br i1 {answered}, label %{hit}, label %{slow}")
        return fast, slow, (hit, dc)

    def load(self, insn: Instruction, spec: OpSpec, pc: int) -> None:
        n, dst = spec.width, insn.dst_reg
        t = f"i{8 * n}"
        address = self.address(insn.src_reg, insn.off)
        extend = "sext" if spec.kind is Kind.LDXSX else "zext"
        static = self.in_frame(insn.src_reg, insn.off, n)
        hit = None
        if not static:
            fast, slow, hit = self.guard(address, n, False, image=spec.kind is Kind.LDX)
            join = self.label()
            self.block(fast)
        ptr = self.op(f"inttoptr i64 {address} to ptr")
        value = self.op(f"load {t}, ptr {ptr}, align 1")
        self.put(dst, value if n == 8 else self.op(f"{extend} {t} {value} to i64"))
        if static:
            return
        self.emit(f"br label %{join}")
        if hit is not None:  # the context's converted image answers the load
            label, dc = hit
            self.block(label)
            word = self.op(f"add i64 %cimg{IMAGE_WIDTHS.index(n)}, {self.op(f'shl i64 {dc}, 3')}")
            word_ptr = self.op(f"inttoptr i64 {word} to ptr")
            self.put(dst, self.op(f"load i64, ptr {word_ptr}, align 8"))
            self.emit(f"br label %{join}")
        self.block(slow)
        value = self.callout(Callout.LOAD, pc, 0, [address, str(n)])
        if n < 8 and extend == "sext":  # as the interpreter: a converted context field may
            sign = 1 << (8 * n - 1)  # be wider than the load (a pointer): no truncation
            value = self.op(f"sub i64 {self.op(f'xor i64 {value}, {sign}')}, {sign}")
        self.put(dst, value)
        self.emit(f"br label %{join}")
        self.block(join)

    def store(self, insn: Instruction, spec: OpSpec, pc: int) -> None:
        n = spec.width
        t = f"i{8 * n}"
        if spec.kind is Kind.ST:
            wide = str(_signed(insn.imm & ((1 << (8 * n)) - 1)))
        else:
            wide = self.get(insn.src_reg)
        address = self.address(insn.dst_reg, insn.off)
        static = self.in_frame(insn.dst_reg, insn.off, n)
        if not static:
            fast, slow, _ = self.guard(address, n, True)
            join = self.label()
            self.block(fast)
        ptr = self.op(f"inttoptr i64 {address} to ptr")
        value = wide if n == 8 else self.op(f"trunc i64 {wide} to {t}")
        self.emit(f"store {t} {value}, ptr {ptr}, align 1")
        if static:
            return
        self.emit(f"br label %{join}")
        self.block(slow)
        self.callout(Callout.STORE, pc, 0, [address, str(n), wide])
        self.emit(f"br label %{join}")
        self.block(join)

    def atomic(self, insn: Instruction, spec: OpSpec, pc: int) -> None:
        n, op = spec.width, spec.op
        t = f"i{8 * n}"
        address = self.address(insn.dst_reg, insn.off)
        src = self.get(insn.src_reg)
        cmpxchg = op == AtomicOp.CMPXCHG
        r0 = self.get(0) if cmpxchg else "0"
        out = 0 if cmpxchg else insn.src_reg if op & AtomicOp.FETCH else None
        static = self.in_frame(insn.dst_reg, insn.off, n)
        if not static:
            fast, slow, _ = self.guard(address, n, True)
            join = self.label()
            self.block(fast)
        ptr = self.op(f"inttoptr i64 {address} to ptr")
        value = src if n == 8 else self.op(f"trunc i64 {src} to {t}")
        if cmpxchg:
            expected = r0 if n == 8 else self.op(f"trunc i64 {r0} to {t}")
            pair = self.op(f"cmpxchg ptr {ptr}, {t} {expected}, {t} {value} seq_cst seq_cst, "
                           f"align {n}")  # fmt: skip
            old = self.op(f"extractvalue {{ {t}, i1 }} {pair}, 0")
        else:
            name = "xchg" if op == AtomicOp.XCHG else _RMW[AtomicOp(op & ~AtomicOp.FETCH)]
            old = self.op(f"atomicrmw {name} ptr {ptr}, {t} {value} seq_cst, align {n}")
        if out is not None:
            self.put(out, old if n == 8 else self.op(f"zext {t} {old} to i64"))
        if static:
            return
        self.emit(f"br label %{join}")
        self.block(slow)
        old = self.callout(Callout.ATOMIC, pc, 0, [address, str(n), str(op), src, r0])
        if out is not None:
            self.put(out, old)
        self.emit(f"br label %{join}")
        self.block(join)


def translate(insns: Sequence[Instruction], *, options: IrOptions | None = None) -> Translation:
    """The LLVM module for ``insns`` (validated and jump-checked first).

    Raises what :func:`~pybpf.isa.check_jumps` raises for invalid code and
    :class:`~pybpf.errors.UnresolvedLoadError` for a pseudo ld_imm64 without a
    resolver.
    """
    return _Translator(insns, options or IrOptions()).translate()
