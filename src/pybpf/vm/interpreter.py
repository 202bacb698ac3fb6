"""The reference interpreter: runs eBPF programs exactly as RFC 9669 and Linux do.

Usage::

    vm = Interpreter(insns, helpers=conformance_helpers())
    result = vm.run(memory=b"\\x01\\x02")   # r1 = address of the memory, r2 = its length
    result.r0, result.executed

The program is checked (opcode table, jump targets) and translated once by
:mod:`pybpf.vm.compiler`; each run gets fresh arguments but reuses the
program's stack (8 frames of 512 bytes, real host memory).  Every load and
store goes through the stack fast path or :class:`~pybpf.vm.memory.Memory`,
so nothing outside the run's regions is touched.  Errors raised are all
:class:`~pybpf.errors.VmError` subclasses naming the pc.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybpf.errors import (
    BudgetExceeded,
    CallDepthError,
    HelperError,
    MemoryFault,
    PybpfError,
    TailCallError,
    UnknownHelperError,
    VmError,
)
from pybpf.isa import MAX_CALL_FRAMES, MAX_LOOPS, MAX_TAIL_CALLS, STACK_SIZE, Instruction
from pybpf.vm import compiler, ldabs
from pybpf.vm.budget import DEFAULT_BUDGET, check_budget
from pybpf.vm.compiler import FUNC_TOKEN, M32, M64, S32, S64, Layout, compile_program
from pybpf.vm.helpers import HelperTable
from pybpf.vm.memory import Memory, Region

_SDIV64, _SMOD64 = compiler.signed_division(64)
_SDIV32, _SMOD32 = compiler.signed_division(32)
_BSWAP = {16: struct.Struct(">H"), 32: struct.Struct(">I"), 64: struct.Struct(">Q")}
_LE = {16: struct.Struct("<H"), 32: struct.Struct("<I"), 64: struct.Struct("<Q")}


def _bswap(bits: int) -> Callable[[int], int]:
    le, be = _LE[bits], _BSWAP[bits]
    mask = (1 << bits) - 1
    return lambda v: be.unpack(le.pack(v & mask))[0]


def _at_pc(err: PybpfError, pc: int) -> PybpfError:
    if isinstance(err, VmError) and err.pc is None:
        err.pc = pc
        err.args = (f"pc {pc}: {err.args[0]}",) + err.args[1:]
    return err


@dataclass(frozen=True)
class RunResult:
    """What a run returns: r0 (64-bit) and the number of instructions executed."""

    r0: int
    executed: int


class Env:
    """The running program's view for helpers: its memory and packet."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.packet: Region | None = None


class Interpreter:
    """One loaded program, ready to run any number of times.

    ``helpers`` resolves ``call N``; ``resolve_imm64`` turns pseudo
    ld_imm64 (map fd/value, BTF id, map index) into addresses;
    ``tail_call(env, ctx, map, index)`` returns the Interpreter to continue in
    or None when the kernel would fall through; ``budget`` bounds the
    instructions a run executes (default
    :data:`~pybpf.vm.budget.DEFAULT_BUDGET`, sized for unverified programs):
    going over it raises :class:`~pybpf.errors.BudgetExceeded` naming the pc.
    Each program of a tail-call chain counts from zero and the chain stops at
    a tail call once the total is over the budget; a callback
    (:meth:`invoke`) counts on its own.  ``tracer(pc, regs)``, when given, is
    called before every instruction with r0..r10 (a slower, debugging build
    of the program).  A budget outside 1..2**63-1 raises PybpfError.
    """

    def __init__(
        self,
        insns: Sequence[Instruction],
        *,
        helpers: HelperTable | None = None,
        resolve_imm64=None,
        tail_call=None,
        budget: int = DEFAULT_BUDGET,
        memory: Memory | None = None,
        tracer: Callable[[int, tuple[int, ...]], None] | None = None,
    ) -> None:
        self.insns = tuple(insns)
        self.helpers = helpers or HelperTable()
        self.memory = memory or Memory()
        self.env = Env(self.memory)
        self.tail_call = tail_call
        self.budget = check_budget(budget)
        self.stack = Region("stack", bytearray(STACK_SIZE * MAX_CALL_FRAMES))
        self.memory.add(self.stack)
        self.layout = Layout(self.stack.base, self.stack.end)
        self.compiled = compile_program(
            self.insns, self.layout, resolve_imm64=resolve_imm64, budget=budget,
            trace=tracer is not None,
        )  # fmt: skip
        self.tracer = tracer
        self._callbacks = 0  # invoke calls under way (callbacks running)
        self._ns = self._namespace()
        self._set_hot(None)
        code = compile(self.compiled.source, "<ebpf program>", "exec")
        exec(code, self._ns)  # noqa: S102 - source generated from validated instructions
        self._entry = self._ns["entry"]

    @property
    def source(self) -> str:
        """The generated Python source (for debugging and tests)."""
        return self.compiled.source

    # --- namespace --------------------------------------------------------
    def _namespace(self) -> dict[str, object]:
        memory, stack, base, top = self.memory, self.stack, self.stack.base, self.stack.end
        ns: dict[str, object] = {
            "M64": M64, "M32": M32, "S64": S64, "S32": S32, "MAX_LOOPS": MAX_LOOPS,
            "FUNC_TOKEN": FUNC_TOKEN, "STK": stack.buf, "ENV": self.env, "FRAME": [top],
            "TRACE": self.tracer,
            "SDIV64": _SDIV64, "SMOD64": _SMOD64, "SDIV32": _SDIV32, "SMOD32": _SMOD32,
            "BSWAP16": _bswap(16), "BSWAP32": _bswap(32), "BSWAP64": _bswap(64),
            "VmError": VmError, "BudgetExceeded": BudgetExceeded,
            "CallDepthError": CallDepthError, "HelperError": HelperError,
            "TailCallError": TailCallError, "PybpfError": PybpfError, "at_pc": _at_pc,
        }  # fmt: skip
        for n, ch in ((1, "B"), (2, "H"), (4, "I"), (8, "Q")):
            st = struct.Struct("<" + ch)
            ns[f"U{n}"], ns[f"P{n}"] = st.unpack_from, st.pack_into

        def below_frame(pc: int, address: int, size: int, write: bool) -> MemoryFault:
            return MemoryFault(pc=pc, address=address, size=size, write=write, region="stack",
                               reason="outside the current frame of")  # fmt: skip

        def load(pc: int, address: int, size: int) -> int:
            if base <= address < top or base < address + size <= top:
                raise below_frame(pc, address, size, False)
            return memory.load(pc, address, size)

        def store(pc: int, address: int, size: int, value: int) -> None:
            if base <= address < top or base < address + size <= top:
                raise below_frame(pc, address, size, True)
            memory.store(pc, address, size, value)

        def atomic(pc: int, address: int, size: int, op: int, value: int, r0: int, slo: int) -> int:
            if (base <= address < top or base < address + size <= top) and not (
                slo <= address and address + size <= top
            ):
                raise below_frame(pc, address, size, True)
            return memory.atomic(pc, address, size, op, value, r0)

        def ld_abs(pc: int, offset: int, size: int) -> int | None:
            env = ns["ENV"]
            if env.packet is None:
                raise VmError("legacy packet load (LD_ABS/LD_IND) without a packet", pc=pc)
            return ldabs.load(env.packet, offset, size, getattr(env, "packet_headers", None))

        helpers = self.helpers

        found: dict[int, object] = {}  # XF: callx's helpers by id, once looked up

        def dispatch(helper_id: int):
            helper = helpers.get(helper_id)
            if helper is None:
                raise UnknownHelperError(f"unknown helper {helper_id}")
            found[helper_id] = helper.fn
            return helper.fn

        def tail(r1: int, r2: int, r3: int, pc: int):
            if self.tail_call is None:
                raise UnknownHelperError("bpf_tail_call (12) needs a tail-call resolver", pc=pc)
            target = self.tail_call(ns["ENV"], r1, r2, r3 & M32)
            return None if target is None else (target, r1)

        ns.update(LD=load, ST=store, ATOMIC=atomic, LDABS=ld_abs, TAIL=tail,
                  HX=lambda helper_id: dispatch(helper_id & M64), XF=found)  # fmt: skip
        for helper_id in self.compiled.helper_ids:
            helper = helpers.get(helper_id)
            name = f"H{helper_id}" if helper_id >= 0 else f"HN{-helper_id}"
            ns[name] = helper.fn if helper else _missing(helper_id)
        for btf_id in self.compiled.kfunc_ids:
            kfunc = helpers.kfuncs.get(btf_id)
            ns[f"K{btf_id & M32}"] = kfunc.fn if kfunc else _missing(btf_id, "kfunc")
        return ns

    def _set_hot(self, region: Region | None) -> None:
        """Point the generated code's inline fast path at ``region`` (None: no region)."""
        ns = self._ns
        base, end = (region.base, region.end) if region else (1, 0)
        ns["HB"], ns["HV"] = base, region.view if region else None
        writable = region is not None and region.writable
        ns["WB"] = base if writable else 1
        for n in (1, 2, 4, 8):
            ns[f"HE{n}"] = end - n
            ns[f"WE{n}"] = end - n if writable else 0

    # --- running ------------------------------------------------------------
    def run(
        self,
        memory: bytes | bytearray | None = None,
        *,
        args: Sequence[int] | None = None,
        packet: bytes | bytearray | None = None,
        env: object | None = None,
    ) -> RunResult:
        """Run once.

        ``memory`` becomes a writable region passed as r1 (its address) and
        r2 (its length), the bpf_conformance convention; ``args`` instead sets
        r1..r5 directly (pointers into regions the caller added to
        ``self.memory``).  ``packet`` is the data LD_ABS/LD_IND read.  A
        bytearray given as ``memory`` is written in place.  ``env`` replaces
        the default :class:`Env` helpers receive for this run (it needs a
        ``memory`` attribute, and a ``packet`` one for LD_ABS/LD_IND).
        """
        regions: list[Region] = []
        regs = [0, 0, 0, 0, 0]
        if memory is not None and len(memory):
            buf = memory if isinstance(memory, bytearray) else bytearray(memory)
            region = self.memory.add(Region("memory", buf))
            regions.append(region)
            regs[0], regs[1] = region.base, len(buf)
            self._set_hot(region)
        if args is not None:
            regs = [a & M64 for a in args] + [0] * (5 - len(args))
        if packet is not None:
            self.env.packet = Region("packet", bytearray(packet) or bytearray(1), writable=False)
        self._ns["ENV"] = env if env is not None else self.env
        try:
            return self._run(regs)
        finally:
            for region in regions:
                self.memory.remove(region)
            self.env.packet = None
            self._ns["ENV"] = self.env
            self._set_hot(None)

    def invoke(self, function: int, args: Sequence[int]) -> int:
        """Call the subprogram at ``function`` from inside a helper; returns its r0.

        ``function`` is a BPF_PSEUDO_FUNC value (what ld_imm64 src 4 loads) or
        a pc.  The callee gets a new frame below the calling program's, as a
        bpf-to-bpf call would, and r1..r5 = ``args``.  This is how bpf_loop
        and bpf_for_each_map_elem run their callbacks.  As in Linux, the
        callback's frame counts toward the 8 frames: ``invoke`` raises
        :class:`~pybpf.errors.CallDepthError` when the caller is in the eighth
        frame, and a call inside the callback that would open a frame under
        the stack raises it at that call's pc (never touching the stack).
        """
        pc = function & 0xFFFFFFFF if function & ~0xFFFFFFFF & M64 == FUNC_TOKEN else function
        if pc not in self.compiled.leaders:
            raise VmError(f"callback target {pc} is not a function of this program")
        frame = self._ns["FRAME"]
        caller_top = frame[0]
        top = caller_top - STACK_SIZE
        # the frame's place bounds the depth while r10 is the frame pointer; the count of
        # active callbacks bounds it whatever the program wrote to r10
        if top - STACK_SIZE < self.stack.base or self._callbacks >= MAX_CALL_FRAMES - 1:
            raise CallDepthError(f"callback would exceed {MAX_CALL_FRAMES} frames")
        regs = [a & M64 for a in args] + [0] * (5 - len(args))
        self._callbacks += 1
        try:
            r0, _, tail = self._entry(*regs[:5], top, pc)
        finally:
            frame[0] = caller_top
            self._callbacks -= 1
        if tail is not None:
            raise TailCallError("tail call from a callback")
        return r0 & M64

    def set_hot(self, region: Region | None) -> None:
        """Give the inline fast path to ``region`` (the packet of the next runs), or None."""
        self._set_hot(region)

    def close(self) -> None:
        """Release the stack region from the (possibly shared) memory."""
        if self.stack in self.memory:
            self.memory.remove(self.stack)

    def _run(self, regs: list[int]) -> RunResult:
        vm, executed, calls = self, 0, 0
        adopted: list[Interpreter] = []
        r1 = regs[0]
        try:
            while True:
                r0, n, tail = vm._entry(r1, regs[1], regs[2], regs[3], regs[4], vm.stack.end)
                executed += n
                if tail is None:
                    return RunResult(r0 & M64, executed)
                calls += 1
                if calls > MAX_TAIL_CALLS:  # the kernel falls through after 33 tail calls;
                    return RunResult(r0 & M64, executed)  # pragma: no cover - runtime decides
                target, r1 = tail
                target._adopt(self)  # same run: same env and packet, the target's own stack
                adopted.append(target)
                vm = target
                if executed > self.budget:  # stopped before the target's first instruction
                    raise BudgetExceeded(self.budget, pc=0)
        finally:
            for other in adopted:
                if other is not self:
                    other._adopt(None)

    _RUN_STATE = ("ENV", "HB", "HV", "WB", "HE1", "HE2", "HE4", "HE8", "WE1", "WE2", "WE4", "WE8")

    def _adopt(self, caller: Interpreter | None) -> None:
        """Take the caller's run state (env, packet fast path) for a tail call; None resets."""
        if caller is None:
            self._ns["ENV"] = self.env
            self._set_hot(None)
            return
        for name in self._RUN_STATE:
            self._ns[name] = caller._ns[name]


def _missing(ident: int, what: str = "helper"):
    def call(env, r1, r2, r3, r4, r5):
        raise UnknownHelperError(f"unknown {what} {ident}")

    return call
