"""Native code for the conformance suite's helper (:func:`pybpf.vm.conformance_helpers`).

bpf_conformance's helper 5 returns its first argument.  A Python helper
costs the JIT a trampoline callout, about 2 µs, on every call; compiled in,
a loop of ``call 5`` (or ``callx`` of 5) runs natively, so an unverified
program looping on it reaches the instruction budget as fast as any other
loop instead of taking B/2 callouts of Python.

Usage::

    JitProgram(insns, helpers=table, native_calls=native_calls(table))
"""

from __future__ import annotations

from pybpf.jit.ir import CallSite, NativeCall
from pybpf.vm.helpers import HelperTable, conformance_identity


def _identity(site: CallSite) -> str:
    return f"{site.result} = add i64 {site.args[0]}, 0"


def native_calls(helpers: HelperTable) -> dict[int, NativeCall]:
    """Hooks (``JitProgram(native_calls=...)``) for the helpers of ``helpers`` that are
    the conformance identity; empty for any other table.

    Recognised by the function itself, not the id, so a table that maps 5 to
    something else (or has no 5) keeps its own helper.
    """
    return {ident: _identity for ident, helper in helpers.helpers.items()
            if helper.fn is conformance_identity}  # fmt: skip
