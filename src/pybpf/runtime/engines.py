"""The execution engines by name: how tests run a case and how the runtime builds one.

Every engine runs every test case: the conformance tests, the data tests and
the conformance plugin iterate over :data:`ENGINES` instead of naming an
engine.  ``interp`` is the reference interpreter, ``interp-trace`` its
tracing build (``pybpf run --trace``), ``jit`` the native JIT in checked
mode (these programs are not verified).  Each runs under an instruction
budget (:mod:`pybpf.vm.budget`), so a program that loops forever ends with
BudgetExceeded.

:func:`build` is what :meth:`pybpf.runtime.program.Program.load` calls: an
engine object (``run``/``invoke``/``set_hot``/``close``) for a loaded
program.  The registry lives here, above both the vm and the jit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pybpf.errors import PybpfError
from pybpf.isa import Instruction
from pybpf.jit import cache as jit_cache
from pybpf.jit import conformance
from pybpf.jit.engine import JitProgram
from pybpf.vm.budget import DEFAULT_BUDGET, VERIFIED_BUDGET
from pybpf.vm.helpers import HelperTable
from pybpf.vm.interpreter import Interpreter

Runner = Callable[..., int]
"""``runner(insns, memory, helpers, *, budget=DEFAULT_BUDGET) -> r0``."""

JIT_CHECKED_DEFAULT = False
"""True runs even verified programs checked; by default only unverified programs are."""


def _interp(insns: Sequence[Instruction], memory: bytes, helpers: HelperTable, *,
            budget: int = DEFAULT_BUDGET) -> int:  # fmt: skip
    return Interpreter(insns, helpers=helpers, budget=budget).run(memory=memory).r0


def _interp_traced(insns: Sequence[Instruction], memory: bytes, helpers: HelperTable, *,
                   budget: int = DEFAULT_BUDGET) -> int:  # fmt: skip
    # the tracing build must compute exactly what the plain one does
    vm = Interpreter(insns, helpers=helpers, budget=budget, tracer=lambda pc, regs: None)
    return vm.run(memory=memory).r0


def _jit(insns: Sequence[Instruction], memory: bytes, helpers: HelperTable, *,
         budget: int = DEFAULT_BUDGET) -> int:  # fmt: skip
    prog = JitProgram(insns, helpers=helpers, checked=True, budget=budget,
                      native_calls=conformance.native_calls(helpers))  # helper 5 compiled in
    try:
        return prog.run(memory=memory).r0
    finally:
        prog.close()


ENGINES: dict[str, Runner] = {"interp": _interp, "interp-trace": _interp_traced, "jit": _jit}

NAMES = ("interp", "jit")
"""Engines a loaded program may run on (``--engine``)."""


def build(name: str, insns: Sequence[Instruction], *, verified: bool = False, **kwargs):
    """The engine ``name`` for ``insns``; kwargs are the Interpreter's.

    ``verified`` lets the JIT trust the program (direct memory access, no
    instruction counting); otherwise it runs checked.  Without a ``budget``
    an unverified program gets :data:`~pybpf.vm.budget.DEFAULT_BUDGET` and a
    verified one :data:`~pybpf.vm.budget.VERIFIED_BUDGET` (it terminates by
    construction and may legitimately run long bounded loops).  Raises
    PybpfError for an unknown name.
    """
    kwargs.setdefault("budget", VERIFIED_BUDGET if verified else DEFAULT_BUDGET)
    if name == "interp":
        return Interpreter(insns, **kwargs)
    if name == "jit":
        checked = JIT_CHECKED_DEFAULT or not verified
        return jit_cache.build(insns, checked=checked, **kwargs)  # the on-disk compile cache
    raise PybpfError(f"unknown engine {name!r} (one of {', '.join(NAMES)})")
