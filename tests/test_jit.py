"""The native JIT: same results, errors and memory effects as the interpreter; its IR; its code.

Most cases are a table: each program runs through the reference interpreter and
the JIT (checked mode, and direct mode where the program is verifier-safe) and the
outcomes must be equal: r0, the executed count, the input memory afterwards, or the
error's type, pc and message.
"""

from __future__ import annotations

import ctypes
import re

import pytest

from pybpf.asm import ubpf
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
from pybpf.isa import Instruction, Pseudo
from pybpf.jit import native
from pybpf.jit.engine import JitProgram
from pybpf.jit.ir import CallSite, IrOptions, translate
from pybpf.runtime import engines
from pybpf.vm import HelperTable, Interpreter, Region, conformance_helpers


def _helpers() -> HelperTable:
    table = conformance_helpers()
    table.register(1, "boom", lambda env, *a: 1 // 0)
    table.register(2, "typed", lambda env, *a: (_ for _ in ()).throw(VmError("typed failure")))
    table.register(3, "sum", lambda env, r1, r2, r3, r4, r5: r1 + r2 + r3 + r4 + r5)
    table.register(4, "read", lambda env, r1, r2, *a: int.from_bytes(env.memory.read(r1, r2),
                                                                      "little"))
    table.register_kfunc(1234, "double", lambda env, r1, *a: r1 * 2)
    return table


def _address(buf: bytearray) -> int:
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def _relative(message: str, address: int, bases: dict[str, int]) -> str:
    """Fault addresses differ between engines (each has its own stack): name them by region."""
    for name, base in bases.items():
        if abs(address - base) < 1 << 16:
            return message.replace(f"{address:#x}", f"<{name}{address - base:+d}>")
    return message


def _outcome(engine, memory, packet) -> tuple:
    buf = None if memory is None else bytearray(memory)
    bases = {"stack": engine.stack.base}
    if buf:
        bases["memory"] = _address(buf)
    try:
        result = engine.run(memory=buf, packet=packet)
    except PybpfError as err:
        message = str(err)
        if isinstance(err, MemoryFault):
            message = _relative(message, err.address, bases)
        return ("error", type(err).__name__, getattr(err, "pc", None), message, buf)
    finally:
        engine.close()
    return ("ok", result.r0, result.executed, buf)


CASES = {
    # arithmetic the IR must not turn into LLVM undefined behaviour
    "div-by-zero-reg": ("mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1\nexit", None),
    "mod-by-zero-reg32": ("lddw %r0, 0x1ffffffff\nmov %r1, 0\nmod32 %r0, %r1\nexit", None),
    "sdiv-intmin": ("lddw %r0, 0x8000000000000000\nmov %r1, -1\nsdiv %r0, %r1\nexit", None),
    "smod-intmin32": ("mov32 %r0, 0x80000000\nmov32 %r1, -1\nsmod32 %r0, %r1\nexit", None),
    "shift-masked": ("mov %r0, 1\nmov %r1, 65\nlsh %r0, %r1\nexit", None),
    "arsh32": ("mov32 %r0, -16\nmov %r1, 33\narsh32 %r0, %r1\nexit", None),
    "bswap": ("lddw %r0, 0x0102030405060708\nbe32 %r0\nexit", None),
    "movsx": ("mov %r1, 0x80\nmovsx864 %r0, %r1\nexit", None),
    # memory
    "load-input": ("ldxw %r0, [%r1+2]\nexit", b"\x00\x01\x02\x03\x04\x05\x06\x07"),
    "store-input": ("stdw [%r1], -2\nmov %r0, 0\nexit", bytes(8)),
    "signed-load": ("ldxsh %r0, [%r1]\nexit", b"\xfe\xff"),
    "crosses-end": ("ldxdw %r0, [%r1+4]\nexit", bytes(8)),
    "past-end-store": ("stw [%r1+8], 1\nmov %r0, 0\nexit", bytes(8)),
    "null": ("mov %r2, 0\nldxb %r0, [%r2]\nexit", bytes(8)),
    "above-stack": ("ldxdw %r0, [%r10]\nexit", None),
    "below-frame": ("ldxdw %r0, [%r10-520]\nexit", None),
    "host-address": ("lddw %r2, 0x7fffffff0000\nstb [%r2], 1\nexit", bytes(8)),
    "stack-bottom": ("stb [%r10-512], 1\nldxb %r0, [%r10-512]\nexit", None),
    "stack-via-register": ("mov %r2, %r10\nstdw [%r2-8], 5\nldxdw %r0, [%r10-8]\nexit", None),
    "r10-written": ("mov %r10, %r1\nldxb %r0, [%r10]\nexit", b"\x2a"),
    "atomic-input": ("mov %r2, 5\nlock add [%r1], %r2\nldxdw %r0, [%r1]\nexit", bytes(8)),
    "atomic-fetch32": ("mov %r2, 5\nstw [%r10-4], -1\nlock fetch add32 [%r10-4], %r2\n"
                       "mov %r0, %r2\nexit", None),
    "atomic-fault": ("mov %r2, 1\nlock add [%r1+4], %r2\nexit", bytes(8)),
    "cmpxchg": ("stdw [%r10-8], 3\nmov %r0, 3\nmov %r2, 9\nlock cmpxchg [%r10-8], %r2\n"
                "ldxdw %r1, [%r10-8]\nlsh %r0, 8\nor %r0, %r1\nexit", None),
    # control flow, calls, budgets
    "loop-count": ("mov %r1, 3\nl:\nsub %r1, 1\njne %r1, 0, l\nmov %r0, 0\nexit", None),
    "budget": ("l:\nja l\nexit", None),
    "fell-off": ("mov %r0, 1\njeq %r0, 2, -2", None),
    "call-local": ("mov %r6, 6\nstdw [%r10-8], 100\nmov %r1, 5\ncall local f\n"
                   "ldxdw %r1, [%r10-8]\nadd %r0, %r1\nadd %r0, %r6\nexit\n"
                   "f:\nmov %r6, 60\nstdw [%r10-8], 1\nmov %r0, %r1\nexit", None),
    "callers-stack": ("stdw [%r10-8], 41\nmov %r1, %r10\nadd %r1, -8\ncall local f\n"
                      "ldxdw %r0, [%r10-8]\nexit\nf:\nldxdw %r2, [%r1]\nadd %r2, 1\n"
                      "stxdw [%r1], %r2\nexit", None),
    "call-depth": ("call local f0\nexit\n"
                   + "\n".join(f"f{i}:\ncall local f{i + 1}\nexit" for i in range(8))
                   + "\nf8:\nmov %r0, 1\nexit", None),
    "callx-helper": ("mov %r1, 9\nmov %r2, 5\ncall %r2\nexit", None),
    "callx-unknown": ("mov %r2, 77\ncall %r2\nexit", None),
    "callx-func": ("lddw %r2, func(f)\ncall %r2\nexit\nf:\nmov %r0, 33\nexit", None),
    "may-goto": ("mov %r0, 0\nl:\nmay_goto out\nadd %r0, 1\nja l\nout:\nexit", None),
    # helpers
    "helper-args": ("mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 3\n"
                    "add %r0, %r1\nexit", None),
    "helper-memory": ("mov %r2, 4\ncall 4\nexit", b"\x01\x02\x03\x04"),
    "helper-raises": ("mov %r0, 0\ncall 1\nexit", None),
    "helper-typed-error": ("call 2\nexit", None),
    "helper-unknown": ("mov %r0, 0\ncall 99\nexit", None),
    "helper-fault-in-helper": ("mov %r1, 0\nmov %r2, 4\ncall 4\nexit", None),
    "kfunc": ("mov %r1, 21\ncall runtime 1234\nexit", None),
    "kfunc-unknown": ("call runtime 99\nexit", None),
    # legacy packet loads
    "ldabs": ("ldabsh 1\nexit", None),
    "ldind": ("mov %r1, 2\nldindh %r1, 1\nexit", None),
    "ldabs-oob": ("mov %r0, 7\nmov %r1, -8\nldindb %r1, 1\nmov %r0, 9\nexit", None),
}
PACKET = b"\x11\x22\x33\x44\x55"
VERIFIER_SAFE = {"div-by-zero-reg", "mod-by-zero-reg32", "sdiv-intmin", "smod-intmin32",
                 "shift-masked", "arsh32", "bswap", "movsx", "load-input", "store-input",
                 "signed-load", "stack-bottom", "stack-via-register", "atomic-input",
                 "atomic-fetch32", "cmpxchg", "loop-count", "call-local", "callers-stack",
                 "helper-args", "helper-memory", "kfunc", "ldabs", "ldind",
                 "ldabs-oob"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_agrees_with_interpreter(name):
    src, memory = CASES[name]
    insns = ubpf.assemble(src)
    kw = {"helpers": _helpers(), "budget": 10_000}
    expected = _outcome(Interpreter(insns, **kw), memory, PACKET)
    assert _outcome(JitProgram(insns, checked=True, **kw), memory, PACKET) == expected
    if name in VERIFIER_SAFE:  # direct mode: same answer, executed unknown
        got = _outcome(JitProgram(insns, checked=False, **kw), memory, PACKET)
        assert got[:2] == expected[:2] and got[3:] == expected[3:] and got[2] == 0


def test_cases_cover_every_error_kind():
    kinds = set()
    for src, memory in CASES.values():
        outcome = _outcome(Interpreter(ubpf.assemble(src), helpers=_helpers(), budget=10_000),
                           memory, PACKET)  # fmt: skip
        kinds.add(outcome[1] if outcome[0] == "error" else "ok")
    assert kinds == {"ok", "MemoryFault", "BudgetExceeded", "VmError", "CallDepthError",
                     "HelperError", "UnknownHelperError"}  # fmt: skip


def test_fault_names_pc_address_and_region():
    prog = JitProgram(ubpf.assemble("mov %r0, 0\nldxw %r0, [%r1+6]\nexit"), checked=True)
    with pytest.raises(MemoryFault) as info:
        prog.run(memory=bytearray(8))
    fault = info.value
    assert (fault.pc, fault.size, fault.region, fault.write) == (1, 4, "memory", False)


def test_failing_helper_keeps_its_cause_and_the_process_alive():
    prog = JitProgram(ubpf.assemble("call 1\nexit"), helpers=_helpers())
    for _ in range(3):
        with pytest.raises(HelperError) as info:
            prog.run()
        assert isinstance(info.value.__cause__, ZeroDivisionError) and info.value.pc == 0
    prog.close()


def test_read_only_region_refuses_store():
    prog = JitProgram(ubpf.assemble("stw [%r1], 7\nmov %r0, 0\nexit"), checked=True)
    ro = prog.memory.add(Region("rodata", bytearray(4), writable=False))
    with pytest.raises(MemoryFault) as info:
        prog.run(args=[ro.base])
    assert info.value.region == "rodata" and info.value.write and ro.buf == bytearray(4)


def test_pseudo_lddw_resolved_at_translation():
    insns = [Instruction.lddw(1, 3, src_reg=Pseudo.MAP_FD), Instruction(0x71, 0, 1, 0, 0),
             Instruction(0x95)]  # fmt: skip
    region = Region("map", bytearray(b"\x2a"))
    prog = JitProgram(insns, resolve_imm64=lambda insn, pc: region.base, checked=True)
    prog.memory.add(region)
    assert prog.run().r0 == 42
    assert prog.translation.imm64 == {0: region.base}


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_tail_call_continues_in_the_target(engine):
    build = Interpreter if engine == "interp" else JitProgram
    target = build(ubpf.assemble("mov %r0, %r1\nadd %r0, 1\nexit"))
    calls = []

    def resolve(env, ctx, prog_array, index):
        calls.append(index)
        return target if index == 1 else None

    src = "mov %r6, %r1\nmov %r3, 0\ncall 12\nmov %r1, %r6\nmov %r3, 1\ncall 12\nmov %r0, 99\nexit"
    prog = build(ubpf.assemble(src), tail_call=resolve)
    assert prog.run(args=[41]).r0 == 42 and calls == [0, 1]
    nested = build(ubpf.assemble("call local f\nexit\nf:\nmov %r3, 1\ncall 12\nexit"),
                   tail_call=resolve)  # fmt: skip
    with pytest.raises(TailCallError):
        nested.run()


def test_tail_calls_stop_after_33():
    box = []
    prog = JitProgram(ubpf.assemble("add %r1, 1\nmov %r0, %r1\ncall 12\nexit"),
                      tail_call=lambda env, ctx, m, i: box[0])  # fmt: skip
    box.append(prog)
    assert prog.run(args=[0]).r0 == 34


def test_helper_calls_back_into_a_subprogram():
    """bpf_loop's mechanism: invoke runs a callback in a frame below the caller's."""
    table = HelperTable()
    box: list[JitProgram] = []

    def loop(env, n, callback, ctx, flags, r5):
        for i in range(n):
            if box[0].invoke(callback, [i, ctx]):
                return i + 1
        return n

    table.register(181, "bpf_loop", loop)
    src = """
        stdw [%r10-8], 0
        mov %r1, 5
        lddw %r2, func(cb)
        mov %r3, %r10
        add %r3, -8
        mov %r4, 0
        call 181
        ldxdw %r1, [%r10-8]
        lsh %r0, 32
        or %r0, %r1
        exit
    cb:
        stdw [%r10-8], 99
        ldxdw %r3, [%r2]
        add %r3, %r1
        stxdw [%r2], %r3
        mov %r0, 0
        exit
    """
    for checked in (True, False):
        box[:] = [JitProgram(ubpf.assemble(src), helpers=table, checked=checked)]
        assert box[0].run().r0 == (5 << 32) | (0 + 1 + 2 + 3 + 4)
        with pytest.raises(VmError, match="not a function"):
            box[0].invoke(3, [])


def test_ir_is_pure_and_free_of_undefined_behaviour():
    src = ("mov %r1, 0\ndiv %r0, %r1\nsdiv %r0, %r1\nmod32 %r0, %r1\nsmod %r0, %r1\n"
           "lsh %r0, %r1\narsh32 %r0, %r1\nexit")  # fmt: skip
    insns = ubpf.assemble(src)
    first = translate(insns).text
    assert first == translate(insns).text
    assert "define i64 @bpf_entry(ptr %ctx)" in first
    assert not re.search(r"\b(nsw|nuw|exact|poison|undef)\b", first)
    for line in first.splitlines():  # every division has a guarded divisor
        if re.search(r"= (u|s)(div|rem) ", line):
            divisor = line.rsplit(",", 1)[1].strip()
            assert divisor.startswith("%") and re.search(
                rf"{re.escape(divisor)} = select i1", first
            ), line
        if re.search(r"= (shl|lshr|ashr) ", line):  # shift amounts masked
            amount = line.rsplit(",", 1)[1].strip()
            masked = rf"{re.escape(amount)} = and i(64 \S+, 63|32 \S+, 31)"
            assert amount.isdigit() or re.search(masked, first), line


def test_native_hook_replaces_the_trampoline():
    def identity(site: CallSite) -> str:
        return f"{site.result} = add i64 {site.args[0]}, 1000"

    insns = ubpf.assemble("mov %r1, 7\ncall 5\nexit")
    prog = JitProgram(insns, helpers=HelperTable(), native_calls={5: identity})
    assert prog.run().r0 == 1007 and 5 not in prog.translation.helper_ids
    assert JitProgram(insns, helpers=conformance_helpers()).run().r0 == 7
    options = IrOptions(native_calls={5: lambda site: None})
    assert 5 in translate(insns, options=options).helper_ids


def test_object_code_loads_again_and_runs():
    insns = ubpf.assemble("mov %r0, %r2\nmul %r0, 3\nexit")
    prog = JitProgram(insns)
    code = prog.object_code
    assert code[:4] == b"\x7fELF"
    again = JitProgram(insns, object_code=code)
    assert again.run(memory=bytes(5)).r0 == 15
    assert native.compile_object(prog.source)[:4] == b"\x7fELF"
    prog.close()
    again.close()


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_opt_level_computes_the_same(level):
    src = CASES["call-local"][0]
    assert JitProgram(ubpf.assemble(src), opt_level=level).run().r0 == 5 + 100 + 6


def test_llvm_refusals_are_jit_errors():
    with pytest.raises(JitError):
        native.compile_ir("define i64 @f( {")
    with pytest.raises(JitError):
        native.compile_ir("", opt_level=4)
    with pytest.raises(JitError):
        native.load_object(b"not an object")


def test_registry_and_build():
    assert {"interp", "jit"} <= set(engines.ENGINES)
    insns = ubpf.assemble("mov %r0, 5\nexit")
    assert engines.ENGINES["jit"](insns, b"", conformance_helpers()) == 5
    prog = engines.build("jit", insns)
    assert isinstance(prog, JitProgram) and prog.checked
    prog.close()
    with pytest.raises(PybpfError, match="unknown engine"):
        engines.build("nope", insns)
    with pytest.raises(UnknownHelperError):
        engines.ENGINES["jit"](ubpf.assemble("call 99\nexit"), b"", HelperTable())
    with pytest.raises(BudgetExceeded):
        JitProgram(ubpf.assemble("l:\nja l\nexit"), checked=True, budget=1000).run()


# --- the C fixtures, loaded by the runtime with the jit engine -------------------------


def _fixture_cases():
    import test_fixtures

    return test_fixtures.CASES


@pytest.fixture
def jit_engine(monkeypatch):
    real = engines.build
    monkeypatch.setattr(engines, "build", lambda name, insns, **kw: real("jit", insns, **kw))


@pytest.mark.parametrize(("name", "index"), _fixture_cases())
def test_fixtures_under_the_jit(name, index, jit_engine):
    import test_fixtures

    doc = test_fixtures.expect.load_expected(name)
    case = doc["cases"][index]
    observed = test_fixtures.observe(test_fixtures.FIXTURES / doc["object"], case)
    without = test_fixtures._without_flags
    assert test_fixtures.expect.differences(without(case), without(observed)) == []


def test_activation_lets_a_native_driver_call_the_entry():
    import ctypes as c

    table = conformance_helpers()
    prog = JitProgram(ubpf.assemble("call 5\nadd %r0, 1\nexit"), helpers=table)
    entry = c.CFUNCTYPE(c.c_uint64, c.c_void_p)(prog.entry_address)
    with prog.activation([41]) as act:
        for _ in range(3):
            assert entry(act.address) == 0 and act.words[0] == 42
        act.check()
    failing = JitProgram(ubpf.assemble("call 1\nexit"), helpers=_helpers())
    entry = c.CFUNCTYPE(c.c_uint64, c.c_void_p)(failing.entry_address)
    with failing.activation() as act:
        assert entry(act.address) == 2  # Status.ABORT
        with pytest.raises(HelperError):
            act.check()


def test_a_closed_program_refuses_to_run():
    prog = JitProgram(ubpf.assemble("mov %r0, 1\nexit"))
    prog.close()
    with pytest.raises(JitError, match="closed"):
        prog.run()


class _Converting(Region):
    """A context whose loads are converted in Python (as program contexts are)."""

    custom_access = True

    def load(self, pc, offset, size):
        return 1000 + offset

    def store(self, pc, offset, size, value):
        raise MemoryFault(pc=pc, address=self.base + offset, size=size, write=True,
                          region=self.name, reason="read-only field of")  # fmt: skip


@pytest.mark.parametrize("checked", [True, False])
def test_context_accesses_are_converted_in_both_modes(checked):
    insns = ubpf.assemble("ldxw %r0, [%r1+4]\nldxw %r2, [%r1+8]\nadd %r0, %r2\nexit")
    prog = JitProgram(insns, checked=checked)
    ctx = prog.memory.add(_Converting("ctx", bytearray(16)))
    assert prog.run(args=[ctx.base]).r0 == 1004 + 1008
    store = JitProgram(ubpf.assemble("stw [%r1+4], 1\nexit"), checked=checked,
                       memory=prog.memory)  # fmt: skip
    with pytest.raises(MemoryFault, match="read-only field"):
        store.run(args=[ctx.base])


def test_callback_calls_never_take_a_frame_under_the_stack():
    """A callback starts below its caller with a fresh call count; its frames stay in the stack.

    (The interpreter lets the eighth frame fall under the stack here and its fast path
    then writes at a negative offset of the stack buffer; the JIT stops at the call.)
    """
    table = HelperTable()
    box: list = []
    table.register(181, "bpf_loop", lambda env, n, cb, ctx, flags, r5: box[0].invoke(cb, [0]))
    chain = "\n".join(f"f{i}:\nstdw [%r10-8], {i}\ncall local f{i + 1}\nexit" for i in range(7))
    src = f"lddw %r2, func(f0)\ncall 181\nexit\n{chain}\nf7:\nstdw [%r10-512], 1\nexit"
    for checked in (True, False):
        box[:] = [JitProgram(ubpf.assemble(src), helpers=table, checked=checked)]
        with pytest.raises(CallDepthError):
            box[0].run()
    shallow = src.replace("call local f6", "mov %r0, 0")
    box[:] = [JitProgram(ubpf.assemble(shallow), helpers=table)]
    assert box[0].run().r0 == 0


def test_a_call_after_moving_r10_never_takes_a_frame_under_the_stack():
    # r10 moved 3584 bytes down, then a call: the callee's frame would lie below the
    # stack; both engines stop at the call (checked mode used to store under the buffer)
    from pybpf.asm import ubpf
    from pybpf.errors import CallDepthError
    from pybpf.vm.interpreter import Interpreter

    insns = ubpf.assemble("add %r10, -3584\ncall local f\nmov %r0, 7\nexit\n"
                          "f:\nstdw [%r10-512], 1\nmov %r0, 0\nexit")  # fmt: skip
    for engine in (Interpreter(insns), JitProgram(insns, checked=True)):
        with pytest.raises(CallDepthError) as info:
            engine.run(memory=b"")
        assert info.value.pc == 1
