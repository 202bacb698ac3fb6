"""A program compiled to native code, with the Interpreter's interface.

Usage::

    prog = JitProgram(insns, helpers=conformance_helpers(), checked=True)
    prog.run(memory=b"\\x01\\x02").r0
    prog.close()

Construction translates the program (:mod:`pybpf.jit.ir`) and compiles it
(:mod:`pybpf.jit.native`); a run fills a context of 64-bit words, calls the
native entry, and serves its callouts in Python: helpers, kfuncs, accesses
outside the stack and hot windows (through :class:`~pybpf.vm.memory.Memory`,
so faults carry the interpreter's message and pc), LD_ABS/LD_IND, tail calls
and errors.  An exception raised while serving a callout is recorded, the
native code returns at once, and :meth:`JitProgram.run` raises it: the same
:class:`~pybpf.errors.VmError` subclass with the same pc as the interpreter.

Modes: ``checked=True`` (for programs no verifier has seen) counts executed
instructions per block exactly as the interpreter does and stops at
``budget`` (default :data:`~pybpf.vm.budget.DEFAULT_BUDGET`) with
BudgetExceeded at the interpreter's pc, and sends every access outside the
stack frames and the hot region through Memory.  ``checked=False`` trusts a
verifier: no counting and no budget (``RunResult.executed`` is 0; a verified
program terminates, and counting costs a tight loop about 1.8x at the default
level and keeps LLVM's O2 from folding loops), and accesses outside the stack
and hot region go directly to host memory except those in the context region
(r1's region when it converts its fields).  So an unverified program must not
run with ``checked=False``: neither its memory accesses nor its loops are
bounded there (:func:`pybpf.runtime.engines.build` never does it).
In both modes loads from the context that its converted image answers
(``region.image_address``, kept current by the runtime) are native; other
context accesses are callouts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from pybpf.errors import (
    BudgetExceeded,
    CallDepthError,
    HelperError,
    JitError,
    MemoryFault,
    PybpfError,
    TailCallError,
    UnknownHelperError,
    VmError,
)
from pybpf.isa import MAX_CALL_FRAMES, MAX_TAIL_CALLS, STACK_SIZE, Instruction
from pybpf.jit import native
from pybpf.jit.abi import ENTRY, SLOTS, Callout, Fault, Slot, Status, split_callout
from pybpf.jit.ir import IrOptions, NativeCall, translate
from pybpf.vm import ldabs
from pybpf.vm.budget import DEFAULT_BUDGET, check_budget
from pybpf.vm.compiler import FUNC_TOKEN
from pybpf.vm.helpers import HelperTable
from pybpf.vm.interpreter import Env, RunResult
from pybpf.vm.memory import Memory, Region

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
S32 = 1 << 31
ENGINE_VERSION = 2
"""Bumped whenever generated code changes meaning (the compile cache keys on it)."""


# plain ints for the per-run path (enum lookups cost more than the native call)
_IN_FIRST, _IN_LAST = int(Slot.R1), int(Slot.HOT_WSIZE) + 1
_ABORT, _AUX, _R0, _EXECUTED = int(Slot.ABORT), int(Slot.AUX), int(Slot.R0), int(Slot.EXECUTED)
_ABORTED, _EXITED = int(Status.ABORT), int(Status.EXIT)
_CUSTOM, _CUSTOM_END = int(Slot.CUSTOM_BASE), int(Slot.CTX_IMAGE) + 1
_R10 = int(Slot.R10)
_HELPER, _KFUNC, _HELPER_X = int(Callout.HELPER), int(Callout.KFUNC), int(Callout.HELPER_X)
_LOAD, _STORE, _ATOMIC = int(Callout.LOAD), int(Callout.STORE), int(Callout.ATOMIC)
_LD_ABS, _TAIL_CALL = int(Callout.LD_ABS), int(Callout.TAIL_CALL)
assert 0 < _HELPER < _KFUNC < _HELPER_X < min(_LOAD, _STORE, _ATOMIC, _LD_ABS, _TAIL_CALL)


def _at_pc(err: PybpfError, pc: int) -> PybpfError:
    if isinstance(err, VmError) and err.pc is None:
        err.pc = pc
        err.args = (f"pc {pc}: {err.args[0]}",) + err.args[1:]
    return err


class _Call:
    """One activation of the native entry: its context words and what it recorded."""

    __slots__ = ("env", "error", "slots", "tail")

    def __init__(self) -> None:
        self.slots = native.Slots(SLOTS)
        self.env: object = None
        self.error: BaseException | None = None
        self.tail: object = None


class Activation:
    """A registered run context (see :meth:`JitProgram.activation`)."""

    def __init__(self, call: _Call) -> None:
        self._call = call
        self.address = call.slots.address
        self.words = call.slots.words

    def check(self) -> None:
        """Raise the error a callout recorded (after an ABORT status), if any."""
        error, self._call.error = self._call.error, None
        self.words[_ABORT] = 0
        if error is not None:
            raise error


class JitProgram:
    """One program compiled to native code, ready to run any number of times.

    Arguments are the Interpreter's (``helpers``, ``resolve_imm64``,
    ``tail_call``, ``budget``, ``memory``) plus ``checked`` (see the module
    docstring), ``opt_level`` (0..3, see :func:`pybpf.jit.native.compile_ir`;
    None picks :func:`pybpf.jit.native.auto_opt_level`: 2 for small programs,
    1 above, so compiling stays fast), ``native_calls``/``prelude`` (the
    helper hook of :mod:`pybpf.jit.ir`) and ``object_code`` (a previously
    compiled object for the same instructions and options, from a cache).
    Raises what the interpreter raises for invalid code, and JitError when
    LLVM refuses the module.
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
        checked: bool = False,
        opt_level: int | None = None,
        native_calls: Mapping[int, NativeCall] | None = None,
        prelude: str = "",
        object_code: bytes | None = None,
    ) -> None:
        self.insns = tuple(insns)
        self.helpers = helpers or HelperTable()
        self.memory = memory or Memory()
        self.env = Env(self.memory)
        self.tail_call = tail_call
        self.budget = check_budget(budget)
        self.checked = checked
        if opt_level is None:
            opt_level = native.auto_opt_level(len(self.insns))
        self.opt_level = opt_level
        options = IrOptions(resolve_imm64=resolve_imm64, count=checked, direct=not checked,
                            native_calls=dict(native_calls or {}), prelude=prelude)  # fmt: skip
        self.translation = translate(self.insns, options=options)
        if object_code is None:
            self.native = native.compile_ir(self.translation.text, opt_level=opt_level)
        else:
            self.native = native.load_object(object_code)
        self._entry = self.native.entry(ENTRY)
        self.stack = Region("stack", bytearray(STACK_SIZE * MAX_CALL_FRAMES))
        self.memory.add(self.stack)
        self._stack_end = self.stack.end
        self._trampoline = native.trampoline(self._callout)
        self._trampoline_address = native.address_of(self._trampoline)
        self._calls: dict[int, _Call] = {}  # context address -> its activation
        self._frames: list[_Call] = []  # contexts by nesting depth
        self._depth = 0
        self._fns = {i: self._helper_fn(i) for i in self.translation.helper_ids}
        self._kfuncs = {i: self._kfunc_fn(i) for i in self.translation.kfunc_ids}
        self._xfns: dict[int, object] = {}  # callx: helper id -> function, found at first use
        self._env: object = self.env
        self._hot: Region | None = None
        self._frame_top = self.stack.end
        self._last_tail: tuple[object, int] | None = None
        self._ctx_words = (0, 0, 0)  # the current run's context window and image

    # --- what listings and caches read -------------------------------------------
    @property
    def source(self) -> str:
        """The LLVM IR the program was compiled from."""
        return self.translation.text

    @property
    def object_code(self) -> bytes:
        """The relocatable object file of the compiled module (ELF on Linux)."""
        return self.native.object_code

    # --- running ------------------------------------------------------------------
    def run(
        self,
        memory: bytes | bytearray | None = None,
        *,
        args: Sequence[int] | None = None,
        packet: bytes | bytearray | None = None,
        env: object | None = None,
    ) -> RunResult:
        """Run once; arguments as :meth:`pybpf.vm.Interpreter.run`.

        ``RunResult.executed`` counts instructions in checked mode and is 0
        otherwise.
        """
        regions: list[Region] = []
        regs = [0, 0, 0, 0, 0]
        if memory is not None and len(memory):
            buf = memory if isinstance(memory, bytearray) else bytearray(memory)
            region = self.memory.add(Region("memory", buf))
            regions.append(region)
            regs[0], regs[1] = region.base, len(buf)
            self._hot = region
        if args is not None:
            regs = [a & M64 for a in args] + [0] * (5 - len(args))
        if packet is not None:
            self.env.packet = Region("packet", bytearray(packet) or bytearray(1), writable=False)
        self._env = env if env is not None else self.env
        try:
            return self._run(regs)
        finally:
            for region in regions:
                self.memory.remove(region)
            self.env.packet = None
            self._env = self.env
            self._hot = None

    def invoke(self, function: int, args: Sequence[int]) -> int:
        """Call subprogram ``function`` from inside a helper (bpf_loop); returns r0.

        As :meth:`pybpf.vm.Interpreter.invoke`: a new frame below the caller's.
        """
        pc = function & M32 if function & ~M32 & M64 == FUNC_TOKEN else function
        if pc not in self.translation.entries:
            raise VmError(f"callback target {pc} is not a function of this program")
        caller_top = self._frame_top
        top = caller_top - STACK_SIZE
        if top - STACK_SIZE < self.stack.base:
            raise CallDepthError(f"callback would exceed {MAX_CALL_FRAMES} frames")
        regs = [a & M64 for a in args] + [0] * (5 - len(args))
        try:
            status, r0, _ = self._enter(self._env, regs, top, pc, self._hot)
        finally:
            self._frame_top = caller_top
        if status == Status.TAIL_CALL:
            raise TailCallError("tail call from a callback")
        return r0

    @contextmanager
    def activation(self, args: Sequence[int] = (), *, env: object | None = None,
                   hot: Region | None = None) -> Iterator[Activation]:  # fmt: skip
        """A filled run context for a native driver that calls the entry itself.

        For repeat loops (BPF_PROG_TEST_RUN's ``repeat``): the context holds
        r1..r5 = ``args`` and the frame, hot region and trampoline of a run,
        and stays registered so its callouts reach ``env`` until the block
        ends.  The driver calls ``entry_address`` with ``activation.address``
        as many times as it likes and reads the results from
        ``activation.words`` (:class:`~pybpf.jit.abi.Slot`); when a call
        returns :attr:`~pybpf.jit.abi.Status.ABORT`, :meth:`Activation.check`
        raises the recorded error.
        """
        regs = [a & M64 for a in args] + [0] * (5 - len(args))
        call = self._new_call()
        words = call.slots.words
        if hot is None:
            hb = hs = hws = 0
        else:
            hb, hs, hws = hot.base, hot.size, hot.size if hot.writable else 0
        words[_IN_FIRST:_IN_LAST] = [*regs[:5], self._stack_end, 0, self._stack_end, hb, hs, hws]
        self._ctx_words = self._context(regs[0])
        words[_CUSTOM:_CUSTOM_END] = self._ctx_words
        call.env = env if env is not None else self.env
        try:
            yield Activation(call)
        finally:
            del self._calls[call.slots.address]

    @property
    def entry_address(self) -> int:
        """The address of the compiled ``uint64 bpf_entry(void *ctx)``."""
        return self.native.address(ENTRY)

    def set_hot(self, region: Region | None) -> None:
        """Let the native fast path reach ``region`` directly (None: no region)."""
        self._hot = region

    def close(self) -> None:
        """Release the stack region and the native code."""
        if self.stack in self.memory:
            self.memory.remove(self.stack)
        self.native.close()
        self._entry = _closed  # the code is unmapped: calling it would crash the process

    def _run(self, regs: list[int]) -> RunResult:
        prog, executed, calls, env, hot = self, 0, 0, self._env, self._hot
        r1 = regs[0]
        while True:
            status, r0, n = prog._enter(env, [r1, *regs[1:]], prog._stack_end, 0, hot)
            executed += n
            if status == _EXITED:
                return RunResult(r0, executed)
            calls += 1
            if calls > MAX_TAIL_CALLS:  # the kernel falls through after 33 tail calls
                return RunResult(r0, executed)
            target, r1 = prog._last_tail
            if not isinstance(target, JitProgram):  # another engine finishes the run
                result = target.run(args=[r1, *regs[1:]], env=env)
                return RunResult(result.r0, executed + result.executed)
            if self.checked and executed > self.budget:  # as the interpreter: before pc 0
                raise BudgetExceeded(self.budget, pc=0)
            prog = target

    def _context(self, r1: int) -> tuple[int, int, int]:
        """(CUSTOM_BASE, CUSTOM_SIZE, CTX_IMAGE) for a run whose r1 is ``r1``.

        When r1 points into a region that converts its accesses (a context),
        the generated code sends accesses there to Python, except loads its
        converted image answers (``region.image_address``, see
        :func:`pybpf.jit.abi.ctx_image_layout`).
        """
        ctx = self.memory.find(r1, 1) if r1 else None
        if ctx is None or not ctx.custom_access:
            return 0, 0, 0
        return ctx.base, ctx.size, getattr(ctx, "image_address", 0)

    def _new_call(self) -> _Call:
        call = _Call()
        words = call.slots.words
        words[Slot.TRAMPOLINE] = self._trampoline_address
        words[Slot.BUDGET] = self.budget
        self._calls[call.slots.address] = call
        return call

    def _enter(self, env, regs: Sequence[int], top: int, start: int,
               hot: Region | None) -> tuple[int, int, int]:  # fmt: skip
        depth = self._depth
        if depth == len(self._frames):  # one context per nesting level (callbacks nest)
            self._frames.append(self._new_call())
        call = self._frames[depth]
        words = call.slots.words
        if hot is None:
            hb = hs = hws = 0
        else:
            hb, hs, hws = hot.base, hot.size, hot.size if hot.writable else 0
        words[_IN_FIRST:_IN_LAST] = [*regs[:5], top, start, self._stack_end, hb, hs, hws]
        words[_ABORT] = words[_AUX] = 0
        if start == 0:  # a run: r1 is its context, which callbacks it makes share
            self._ctx_words = self._context(regs[0])
        words[_CUSTOM:_CUSTOM_END] = self._ctx_words
        call.env, call.error, call.tail = env, None, None
        self._depth = depth + 1
        try:
            status = self._entry(call.slots.address)
        finally:
            self._depth = depth
        if status == _ABORTED:
            error, call.error = call.error, None
            if error is None:  # pragma: no cover - the trampoline always records one
                raise VmError("native code aborted without an error")
            raise error
        self._last_tail = call.tail
        return status, words[_R0], words[_EXECUTED]

    # --- callouts -------------------------------------------------------------------
    def _callout(self, ctx: int, ident: int, a1: int, a2: int, a3: int, a4: int,
                 a5: int) -> int:  # fmt: skip
        call = self._calls.get(ctx)
        if call is None:  # pragma: no cover - only our own code calls back
            return 0
        # split_callout inlined, kinds as plain ints, helpers first: a loop that calls a
        # helper pays this on every iteration, and it bounds how fast the budget runs out
        kind, pc, value = ident >> 56, (ident >> 32) & 0xFFFFFF, ident & M32
        try:
            if kind <= _HELPER_X:  # HELPER, KFUNC, HELPER_X
                words = call.slots.words
                self._frame_top = words[_R10]
                if kind == _HELPER_X:
                    what = words[_AUX]
                    fn = self._xfns.get(what) or self._dynamic(what)
                else:  # the id is the call's signed 32-bit immediate
                    what = value - (1 << 32) if value >> 31 else value
                    fn = (self._fns if kind == _HELPER else self._kfuncs)[what]
                try:  # _helper inlined: one Python call less per helper call
                    return fn(call.env, a1, a2, a3, a4, a5) & M64
                except PybpfError as err:
                    raise _at_pc(err, pc) from None
                except Exception as err:
                    raise HelperError(f"helper {what} failed: {err!r}", pc=pc) from err
            if kind == _LOAD:
                return self._load(pc, a1, a2)
            if kind == _STORE:
                self._store(pc, a1, a2, a3)
                return 0
            if kind == _ATOMIC:
                return self._atomic(pc, a1, a2, a3, a4, a5)
            if kind == _LD_ABS:
                return self._ld_abs(call, pc, a1, a2)
            if kind == _TAIL_CALL:
                return self._tail(call, pc, a1, a2, a3)
            raise self._fault(Fault(split_callout(ident)[2]), pc)
        except BaseException as err:  # recorded here, re-raised by _enter
            call.error = err
            call.slots[Slot.ABORT] = 1
            return 0

    def _helper_fn(self, helper_id: int):
        helper = self.helpers.get(helper_id)
        return helper.fn if helper else _missing(helper_id)

    def _kfunc_fn(self, btf_id: int):
        kfunc = self.helpers.kfuncs.get(btf_id)
        return kfunc.fn if kfunc else _missing(btf_id, "kfunc")

    def _dynamic(self, helper_id: int):
        helper = self.helpers.get(helper_id & M64)
        if helper is None:
            return _missing(helper_id)
        self._xfns[helper_id] = helper.fn
        return helper.fn

    def _in_stack(self, address: int, size: int) -> bool:
        base, top = self.stack.base, self.stack.end
        return base <= address < top or base < address + size <= top

    def _below_frame(self, pc: int, address: int, size: int, write: bool) -> MemoryFault:
        return MemoryFault(pc=pc, address=address, size=size, write=write, region="stack",
                           reason="outside the current frame of")  # fmt: skip

    def _load(self, pc: int, address: int, size: int) -> int:
        if self._in_stack(address, size):
            raise self._below_frame(pc, address, size, False)
        return self.memory.load(pc, address, size)

    def _store(self, pc: int, address: int, size: int, value: int) -> None:
        if self._in_stack(address, size):
            raise self._below_frame(pc, address, size, True)
        self.memory.store(pc, address, size, value & ((1 << (8 * size)) - 1))

    def _atomic(self, pc: int, address: int, size: int, op: int, value: int, r0: int) -> int:
        if self._in_stack(address, size):
            raise self._below_frame(pc, address, size, True)
        return self.memory.atomic(pc, address, size, op, value, r0)

    def _ld_abs(self, call: _Call, pc: int, offset: int, size: int) -> int:
        packet = getattr(call.env, "packet", None)
        if packet is None:
            raise VmError("legacy packet load (LD_ABS/LD_IND) without a packet", pc=pc)
        value = ldabs.load(packet, offset, size, getattr(call.env, "packet_headers", None))
        call.slots[Slot.AUX] = value is None
        return value or 0

    def _tail(self, call: _Call, pc: int, r1: int, r2: int, r3: int) -> int:
        if self.tail_call is None:
            raise UnknownHelperError("bpf_tail_call (12) needs a tail-call resolver", pc=pc)
        target = self.tail_call(call.env, r1, r2, r3 & M32)
        call.tail = None if target is None else (target, r1)
        return 0 if target is None else 1

    def _fault(self, fault: Fault, pc: int) -> VmError:
        if fault is Fault.FELL_OFF:
            return VmError("fell off the end of the program", pc=pc)
        if fault is Fault.CALL_DEPTH:
            return CallDepthError(f"call depth exceeds {MAX_CALL_FRAMES} frames", pc=pc)
        if fault is Fault.BUDGET:
            return BudgetExceeded(self.budget, pc=pc)
        if fault is Fault.TAIL_IN_SUBPROG:
            return TailCallError("tail call from a bpf-to-bpf subprogram", pc=pc)
        return VmError("call target is not a function of this program", pc=pc)


def _closed(ctx: int) -> int:
    raise JitError("the program was closed; its native code is gone")


def _missing(ident: int, what: str = "helper"):
    def call(env, r1, r2, r3, r4, r5):
        raise UnknownHelperError(f"unknown {what} {ident}")

    return call
