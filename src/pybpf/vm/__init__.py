"""Engines that run eBPF programs: the reference interpreter and its memory model."""

from pybpf.vm.helpers import Helper, HelperTable, conformance_helpers
from pybpf.vm.interpreter import Interpreter, RunResult
from pybpf.vm.memory import Memory, Region

__all__ = [
    "Helper", "HelperTable", "Interpreter", "Memory", "Region", "RunResult",
    "conformance_helpers",
]  # fmt: skip
