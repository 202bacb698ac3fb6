"""The instruction budget: how many instructions one run may execute.

A program no verifier has seen may loop forever (``ja -1``).  The kernel
never runs such a program (its verifier refuses it); pybpf runs it, in the
conformance plugin, ``pybpf run`` and the Python API, and stops it with
:class:`~pybpf.errors.BudgetExceeded` once it has executed more than its
budget of instructions.  The interpreter and the JIT's checked mode count the
same way (each basic block adds its length when it starts), so both stop at
the same pc with the same count.

This module is the one home of the numbers; the interpreter, the JIT, the
engine registry and the command lines import them from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pybpf.errors import PybpfError
from pybpf.isa import MAX_LOOPS

DEFAULT_BUDGET = MAX_LOOPS
"""The budget of a run no verifier has checked: 2**23 = 8,388,608 instructions.

Sized by the slowest engine, so an infinite loop ends in seconds on any engine.
Measured on an idle 2-core machine, the interpreter runs tight loops (``ja -1``, a
few ALU ops, an always-true backward jump) at 11-36 M insn/s, so they end in under a
second; loops of memory accesses, atomics, signed division or calls run at 2-4 M
insn/s and end in 2-5 s.  The JIT's checked mode runs every such loop natively, far
faster.  It is BPF_MAX_LOOPS, the kernel's bound on may_goto and bpf_loop: a may_goto
loop of an unverified program stops on the budget before the may_goto count runs out
(verified programs get :data:`VERIFIED_BUDGET`).
"""

VERIFIED_BUDGET = 1 << 32
"""The interpreter's budget for programs a verifier accepted.

They terminate by construction and the kernel runs them without a budget,
but bounded loops (bpf_iter_num, may_goto) may legitimately run tens of
millions of instructions, so they keep the old, practically unbounded
budget.  The JIT's direct mode (verified programs) does not count at all.
"""

MAX_BUDGET = (1 << 63) - 1
"""The largest budget: the JIT compares the count as a 64-bit word."""

BUDGET_ENV = "PYBPF_BUDGET"
"""The environment variable that sets the command lines' default budget."""


def parse_budget(text: str, what: str = "budget") -> int:
    """A budget from command-line or environment text (``10000000``, ``10_000_000``, ``0x100``).

    Raises PybpfError, naming ``what``, for anything but an integer in
    1..:data:`MAX_BUDGET`.
    """
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise PybpfError(f"{what} {text!r} is not a number of instructions") from None
    return check_budget(value, what)


def check_budget(value: int, what: str = "budget") -> int:
    """``value`` when it is a usable budget (1..:data:`MAX_BUDGET`), else PybpfError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_BUDGET:
        raise PybpfError(f"{what} must be an instruction count from 1 to {MAX_BUDGET}, "
                         f"not {value!r}")  # fmt: skip
    return value


def budget_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The command lines' default budget: ``$PYBPF_BUDGET`` when set, else DEFAULT_BUDGET.

    Raises PybpfError when the variable is set to something that is not a
    budget (a typo must not silently fall back to the default).
    """
    environ = os.environ if environ is None else environ
    text = environ.get(BUDGET_ENV, "")
    return parse_budget(text, BUDGET_ENV) if text.strip() else DEFAULT_BUDGET


def exhausted_hint(how: str) -> str:
    """The advice front ends append to a BudgetExceeded message; ``how`` names the knob."""
    return f"(an infinite loop? raise it with {how})"
