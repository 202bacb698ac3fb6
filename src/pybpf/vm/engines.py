"""The execution engines by name, behind one signature.

Every engine runs every test case: tests and the conformance plugin iterate
over :data:`ENGINES` instead of naming an engine.  Today there is the
reference interpreter, plain and in its tracing build (``pybpf run --trace``);
a native JIT registers here when it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pybpf.isa import Instruction
from pybpf.vm.helpers import HelperTable
from pybpf.vm.interpreter import Interpreter

Runner = Callable[[Sequence[Instruction], bytes, HelperTable], int]


def _interp(insns: Sequence[Instruction], memory: bytes, helpers: HelperTable) -> int:
    return Interpreter(insns, helpers=helpers).run(memory=memory).r0


def _interp_traced(insns: Sequence[Instruction], memory: bytes, helpers: HelperTable) -> int:
    # the tracing build must compute exactly what the plain one does
    vm = Interpreter(insns, helpers=helpers, tracer=lambda pc, regs: None)
    return vm.run(memory=memory).r0


ENGINES: dict[str, Runner] = {"interp": _interp, "interp-trace": _interp_traced}
