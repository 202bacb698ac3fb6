"""Unverified runs end by themselves: the default instruction budget, its knobs, its error.

The budget has one home (:mod:`pybpf.vm.budget`); the interpreter, the JIT's
checked mode, the engine registry, ``pybpf run`` and the conformance plugin
all take it from there and stop a run at the same pc.  The hostile programs
(tests/hostile.py) run here a few at a time, through the API with a small
budget and through the real executables; no test looks at a clock: each
asserts how the run ended (a value, or one clean error line).
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

import hostile
from pybpf.asm import ubpf
from pybpf.cli import conformance_plugin
from pybpf.cli.main import main as pybpf_main
from pybpf.errors import BudgetExceeded, PybpfError, VmError
from pybpf.isa import MAX_LOOPS, Instruction, decode, encode
from pybpf.jit import conformance
from pybpf.jit.engine import JitProgram
from pybpf.runtime import engines
from pybpf.vm import Interpreter, conformance_helpers
from pybpf.vm import budget as vm_budget
from pybpf.vm.budget import BUDGET_ENV, DEFAULT_BUDGET, VERIFIED_BUDGET

LOOP = "mov %r0, 1\nl:\nja l\nexit"  # pc 1 jumps to itself


def _insns(src: str) -> list[Instruction]:
    return ubpf.assemble(src)


# --- one default, everywhere ----------------------------------------------------------------


def test_the_default_is_declared_once_and_used_by_every_engine():
    insns = _insns("exit")
    assert DEFAULT_BUDGET == MAX_LOOPS < VERIFIED_BUDGET
    assert Interpreter(insns).budget == DEFAULT_BUDGET
    prog = JitProgram(insns, checked=True)
    assert prog.budget == DEFAULT_BUDGET
    prog.close()
    for verified, expected in ((False, DEFAULT_BUDGET), (True, VERIFIED_BUDGET)):
        for name in engines.NAMES:
            engine = engines.build(name, insns, verified=verified)
            assert engine.budget == expected, (name, verified)
            engine.close()
    engine = engines.build("interp", insns, verified=True, budget=77)
    assert engine.budget == 77


def test_a_may_goto_loop_runs_its_kernel_bound_on_a_verified_budget():
    # 2**23 iterations of may_goto + add + ja: the kernel's own bound, past the default
    insns = _insns("mov %r0, 0\nl:\nmay_goto out\nadd %r0, 1\nja l\nout:\nexit")
    assert Interpreter(insns, budget=VERIFIED_BUDGET).run().r0 == MAX_LOOPS
    with pytest.raises(BudgetExceeded):
        Interpreter(insns).run()


@pytest.mark.parametrize("bad", [0, -1, 1 << 63, True, 2.5, "10"])
def test_a_budget_must_be_a_positive_count(bad):
    with pytest.raises(PybpfError):
        Interpreter(_insns("exit"), budget=bad)
    with pytest.raises(PybpfError):
        JitProgram(_insns("exit"), checked=True, budget=bad)


def test_parse_budget_and_the_environment():
    assert vm_budget.parse_budget("1000") == 1000
    assert vm_budget.parse_budget(" 10_000 ") == 10_000
    assert vm_budget.parse_budget("0x100") == 256
    for text in ("", "ten", "0", "-5", "1e6"):
        with pytest.raises(PybpfError):
            vm_budget.parse_budget(text)
    assert vm_budget.budget_from_env({}) == DEFAULT_BUDGET
    assert vm_budget.budget_from_env({BUDGET_ENV: " "}) == DEFAULT_BUDGET
    assert vm_budget.budget_from_env({BUDGET_ENV: "123"}) == 123
    with pytest.raises(PybpfError, match=BUDGET_ENV):
        vm_budget.budget_from_env({BUDGET_ENV: "lots"})


# --- the same stop in every engine ------------------------------------------------------------

SHAPES = {
    "ja": LOOP,
    "cond": "mov %r0, 5\nl:\nadd %r1, 1\njne %r0, 6, l\nexit",
    "alu": "l:\nadd %r6, 1\nxor %r7, %r6\nmul %r7, 3\nja l\nexit",
    "stack": "l:\nstxdw [%r10-8], %r6\nldxdw %r6, [%r10-8]\nadd %r6, 1\nja l\nexit",
    "memory": "l:\nldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\nja l\nexit",
    "atomic": "mov %r2, 1\nl:\nlock add [%r10-8], %r2\nlock fetch xor [%r1], %r2\nja l\nexit",
    "call5": "l:\nmov %r1, 3\ncall 5\nja l\nexit",
    "local": "l:\ncall local f\nja l\nexit\nf:\nexit",
    "may_goto": "l:\nmay_goto out\nja l\nout:\nexit",  # ends at 2**23: past this budget
}


def _stop(engine) -> tuple[int | None, int]:
    try:
        engine.run(memory=bytearray(8))
    except BudgetExceeded as err:
        return err.pc, err.budget
    finally:
        engine.close()
    raise AssertionError("the loop ended by itself")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_engine_stops_an_infinite_loop_at_the_same_pc(shape):
    insns, helpers = _insns(SHAPES[shape]), conformance_helpers()
    expected = _stop(Interpreter(insns, helpers=helpers, budget=5000))
    assert expected[1] == 5000
    traced = Interpreter(insns, helpers=helpers, budget=5000, tracer=lambda *a: None)
    assert _stop(traced) == expected
    assert _stop(JitProgram(insns, helpers=helpers, budget=5000, checked=True)) == expected
    native = conformance.native_calls(helpers)
    assert _stop(JitProgram(insns, helpers=helpers, budget=5000, checked=True,
                            native_calls=native)) == expected  # fmt: skip
    for name in engines.NAMES:
        assert _stop(engines.build(name, insns, helpers=helpers, budget=5000)) == expected


def test_the_default_budget_stops_a_loop_on_the_jit():
    with pytest.raises(BudgetExceeded) as info:
        engines.ENGINES["jit"](_insns(LOOP), b"", conformance_helpers())
    assert (info.value.pc, info.value.budget) == (1, DEFAULT_BUDGET)
    assert str(info.value) == f"pc 1: instruction budget of {DEFAULT_BUDGET} exhausted"


def test_budget_runners_take_a_budget():
    for name in engines.ENGINES:
        with pytest.raises(BudgetExceeded) as info:
            engines.ENGINES[name](_insns(LOOP), b"", conformance_helpers(), budget=100)
        assert info.value.budget == 100


def test_a_budget_counts_exactly_the_executed_instructions():
    src = "mov %r0, 0\nmov %r1, 4\nl:\nadd %r0, 1\nsub %r1, 1\njne %r1, 0, l\nexit"
    executed = 2 + 4 * 3 + 1
    for budget in (executed, executed + 1):
        assert Interpreter(_insns(src), budget=budget).run().executed == executed
        assert JitProgram(_insns(src), budget=budget, checked=True).run().executed == executed
    with pytest.raises(BudgetExceeded):
        Interpreter(_insns(src), budget=executed - 1).run()
    with pytest.raises(BudgetExceeded):
        JitProgram(_insns(src), budget=executed - 1, checked=True).run()


# --- the conformance helper, compiled into the JIT ----------------------------------------


def test_the_conformance_helper_is_native_only_when_the_table_says_so():
    from pybpf.vm.helpers import HelperTable

    assert set(conformance.native_calls(conformance_helpers())) == {5}
    assert conformance.native_calls(HelperTable()) == {}
    other = HelperTable()
    other.register(5, "not_identity", lambda env, r1, *rest: r1 + 1)
    assert conformance.native_calls(other) == {}


@pytest.mark.parametrize("form", ["call", "callx"])
def test_helper_5_natively_gives_what_the_interpreter_gives(form):
    helpers = conformance_helpers()
    call = [Instruction(0x85, 0, 0, 0, 5)] if form == "call" else [Instruction(0x8D, 6)]
    insns = [Instruction(0xB7, 6, 0, 0, 5), Instruction(0xB7, 1, 0, 0, -7), *call,
             Instruction(0x07, 0, 0, 0, 1), Instruction(0x95)]  # fmt: skip
    expected = Interpreter(insns, helpers=helpers).run().r0
    prog = JitProgram(insns, helpers=helpers, checked=True,
                      native_calls=conformance.native_calls(helpers))  # fmt: skip
    assert prog.run().r0 == expected == (-7 + 1) & ((1 << 64) - 1)
    prog.close()
    unknown = [Instruction(0xB7, 6, 0, 0, 77), Instruction(0x8D, 6), Instruction(0x95)]
    prog = JitProgram(unknown, helpers=helpers, checked=True,
                      native_calls=conformance.native_calls(helpers))  # fmt: skip
    with pytest.raises(VmError, match="unknown helper 77"):
        prog.run()
    prog.close()


# --- the command lines ---------------------------------------------------------------------


def _plugin(argv: list[str], program: bytes) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = conformance_plugin.main(argv, io.StringIO(hostile.base16(program)), out, err)
    return status, out.getvalue(), err.getvalue()


def test_plugin_budget_option_environment_and_one_line(monkeypatch):
    loop = encode(_insns(LOOP))
    status, out, err = _plugin(["", "--budget 1000"], loop)  # the runner's two arguments
    assert (status, out) == (1, "")
    assert err == ("pc 1: instruction budget of 1000 exhausted (an infinite loop? raise it "
                   f"with --budget or ${BUDGET_ENV})\n")  # fmt: skip
    monkeypatch.setenv(BUDGET_ENV, "2000")
    assert "budget of 2000 exhausted" in _plugin([], loop)[2]
    assert "budget of 3000 exhausted" in _plugin(["--budget", "3000"], loop)[2]
    assert "budget of 2000 exhausted" in _plugin(["", "--engine jit"], loop)[2]
    monkeypatch.setenv(BUDGET_ENV, "many")
    status, out, err = _plugin([], loop)
    assert status == 1 and err.count("\n") == 1 and BUDGET_ENV in err


def test_plugin_accepts_the_runners_argv():
    code = encode(_insns("ldxw %r0, [%r1]\nexit"))
    assert _plugin(["2a 00 00 00", ""], code)[:2] == (0, "2a\n")
    assert _plugin(["", ""], encode(_insns("mov %r0, 9\nexit")))[:2] == (0, "9\n")
    assert _plugin(["2a 00 00 00", "--engine jit"], code)[:2] == (0, "2a\n")


def test_plugin_reports_an_internal_error_on_one_line(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setitem(engines.ENGINES, "interp", broken)
    status, out, err = _plugin([], encode(_insns("exit")))
    assert (status, out) == (1, "")
    assert err == "pybpf-conformance-plugin: internal error: RuntimeError: boom second line\n"


def test_pybpf_run_budget(tmp_path, capsys, monkeypatch):
    src = tmp_path / "loop.s"
    src.write_text(LOOP + "\n")
    assert pybpf_main(["run", str(src), "--budget", "500"]) == 1
    assert capsys.readouterr().err == ("pybpf run: pc 1: instruction budget of 500 exhausted "
                                       "(an infinite loop? raise it with --budget)\n")  # fmt: skip
    monkeypatch.setenv(BUDGET_ENV, "600")
    assert pybpf_main(["run", str(src), "--engine", "jit"]) == 1
    assert "budget of 600 exhausted" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pybpf_main(["run", str(src), "--budget", "0"])


# --- hostile programs ------------------------------------------------------------------------

FEW = hostile.programs(24, seed=7)


@pytest.mark.parametrize("program", FEW, ids=[p.name for p in FEW])
def test_hostile_program_ends_with_a_value_or_a_vm_error(program):
    """Every engine: r0, or a typed error (BudgetExceeded for the loops)."""
    try:
        insns = decode(program.code)
    except PybpfError:
        assert program.kind == "garbage"
        return
    helpers = conformance_helpers()
    outcomes = set()
    for make in (lambda: Interpreter(insns, helpers=helpers, budget=20_000),
                 lambda: JitProgram(insns, helpers=helpers, budget=20_000, checked=True),
                 lambda: JitProgram(insns, helpers=helpers, budget=20_000, checked=True,
                                    native_calls=conformance.native_calls(helpers))):  # fmt: skip
        try:
            engine = make()
        except PybpfError:  # refused before running (a bad jump, an unresolved load)
            outcomes.add("refused")
            continue
        try:
            outcomes.add(("value", engine.run(memory=bytearray(program.memory)).r0))
        except VmError as err:
            outcomes.add(type(err).__name__)
        finally:
            engine.close()
    assert len(outcomes) == 1, outcomes  # the engines agree
    if program.kind == "loop":
        assert outcomes == {"BudgetExceeded"}


@pytest.mark.parametrize("path", sorted(hostile.PATHS))
def test_hostile_programs_through_the_executables(path):
    """As bpf_conformance and a user run them: a value, or one line on stderr."""
    picks = FEW[:4]  # one of each kind: wild, garbage, helper, loop
    assert {p.kind for p in picks} == set(hostile.KINDS)
    for program in picks:
        outcome = hostile.run_path(path, program, env={BUDGET_ENV: "50000"})
        assert outcome.kind in ("value", "error"), (program.name, outcome)
        if program.kind == "loop":
            assert (outcome.kind, outcome.detail) == ("error", "budget"), program.name


def test_hostile_classify():
    assert hostile.classify("plugin", 0, "2a\n", "", 0).kind == "value"
    assert hostile.classify("plugin", 1, "", "pc 1: instruction budget of 5 exhausted\n",
                            0).detail == "budget"  # fmt: skip
    assert hostile.classify("plugin", 1, "", "a\nb\n", 0).kind == "bad"
    traceback = "Traceback (most recent call last):\n"
    assert hostile.classify("plugin", 1, "", traceback, 0).kind == "bad"
    assert hostile.classify("run-jit", 0, "r0 = 0x1 (1)\nexecuted 2 instructions\n", "",
                            0).kind == "value"  # fmt: skip


def test_program_module_is_importable_as_a_script():
    proc = subprocess.run([sys.executable, hostile.__file__, "--help"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "--count" in proc.stdout
