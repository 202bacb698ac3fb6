"""The native JIT: eBPF to LLVM IR to machine code.

:mod:`.ir` translates instructions to LLVM IR text (pure, testable as
text); :mod:`.native` is the one module that holds llvmlite's native
handles (and calls compiled code); :mod:`.disasm` is the one module that
imports capstone (``bpftool prog dump jited``).
"""
