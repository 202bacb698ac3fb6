"""The kernel's side of eBPF, simulated: maps, helpers, program types, test runs.

:class:`~pybpf.runtime.kernel.Kernel` is the entry point: it creates maps,
loads programs (relocation, helper checks, tag, xlated image, engine) and
test-runs them with BPF_PROG_TEST_RUN semantics.
"""
