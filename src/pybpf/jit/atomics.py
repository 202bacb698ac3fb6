"""Hardware atomic read-modify-writes for Python callers (memory other processes share).

The interpreter and the JIT's checked callouts perform BPF_ATOMIC through
:meth:`pybpf.vm.memory.Memory.atomic`, a Python load then store: atomic within
one process, not against another process writing the same shared mapping (a
map's memory file, :mod:`pybpf.kernel.mapfiles`).  For such regions the
runtime asks :func:`host_atomics` instead: the same ``atomicrmw``/``cmpxchg``
(sequentially consistent) that JIT-compiled code uses, compiled once per
process, so every engine's atomics agree across processes as the kernel's do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from pybpf.isa import AtomicOp
from pybpf.jit import native

_RMW = {AtomicOp.ADD: "add", AtomicOp.OR: "or", AtomicOp.AND: "and", AtomicOp.XOR: "xor",
        AtomicOp.XCHG: "xchg"}  # fmt: skip


def atomic_ir() -> str:
    """One function ``<op><bytes>(address, value, r0) -> old`` per RMW op and width 4, 8."""
    out = []
    for n in (4, 8):
        t = f"i{8 * n}"
        narrow = n < 8
        value = "%t" if narrow else "%v"
        head = ["  %p = inttoptr i64 %a to ptr"]
        head += [f"  %t = trunc i64 %v to {t}"] if narrow else []
        ret = [f"  %z = zext {t} %old to i64", "  ret i64 %z"] if narrow else ["  ret i64 %old"]
        for name in _RMW.values():
            body = [f"  %old = atomicrmw {name} ptr %p, {t} {value} seq_cst, align {n}"]
            out.append(f"define i64 @{name}{n}(i64 %a, i64 %v, i64 %r0) {{\n"
                       + "\n".join(head + body + ret) + "\n}")  # fmt: skip
        expected = ([f"  %e = trunc i64 %r0 to {t}"] if narrow else [])
        body = expected + [
            f"  %pair = cmpxchg ptr %p, {t} {'%e' if narrow else '%r0'}, {t} {value} seq_cst "
            f"seq_cst, align {n}",
            f"  %old = extractvalue {{ {t}, i1 }} %pair, 0",
        ]  # fmt: skip
        out.append(f"define i64 @cmpxchg{n}(i64 %a, i64 %v, i64 %r0) {{\n"
                   + "\n".join(head + body + ret) + "\n}")  # fmt: skip
    return "\n\n".join(out) + "\n"


@functools.cache
def host_atomics() -> Callable[[int, int, int, int, int], int]:
    """``atomic(address, size, op, value, r0) -> old`` for sizes 4 and 8 (the BPF RMWs);
    the caller checks bounds and writability first."""
    module = native.compile_ir(atomic_ir(), opt_level=0)
    table = {(op, n): module.function(f"{_RMW.get(op, 'cmpxchg')}{n}", 3)
             for n in (4, 8) for op in [*_RMW, AtomicOp.CMPXCHG]}  # fmt: skip

    def atomic(address: int, size: int, op: int, value: int, r0: int) -> int:
        kind = op if op in (AtomicOp.XCHG, AtomicOp.CMPXCHG) else op & ~AtomicOp.FETCH
        return table[(kind, size)](address, value & (1 << 64) - 1, r0 & (1 << 64) - 1)

    atomic.module = module  # the code lives as long as the function
    return atomic


__all__ = ["atomic_ir", "host_atomics"]
