"""perf_event_output: a sample into a BPF_MAP_TYPE_PERF_EVENT_ARRAY.

One helper for every program type, with the checks of the kernel's
``bpf_perf_event_output`` (tracing), ``bpf_event_output_data`` and the
skb / xdp variants (net/core/filter.c):

* ``flags`` low 32 bits (BPF_F_INDEX_MASK) are the array index, or
  BPF_F_CURRENT_CPU (0xffffffff) for the running CPU's slot; an index past
  ``max_entries`` is ``-E2BIG``;
* bits 32..51 (BPF_F_CTXLEN_MASK) ask networking programs to append that
  many packet bytes after the data (XDP: ``ctx.packet()``, skb:
  ``ctx.payload()``; more than the packet holds is ``-EFAULT``); for a
  context without a packet, and for any other flag bit, ``-EINVAL``;
* the map's ``output(index, data)`` does the rest (``-ENOENT`` when no perf
  event is open on that slot, ``-EOPNOTSUPP`` for one on another CPU); it
  is also given ``cpu=`` when it accepts that keyword.
"""

from __future__ import annotations

import errno

from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import call_with_cpu, map_arg, u32
from pybpf.verifier import protos as P

BPF_F_INDEX_MASK = 0xFFFF_FFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32


def _packet(ctx) -> bytes | None:
    for attr in ("packet", "payload"):
        method = getattr(ctx, attr, None)
        if callable(method):
            return method()
    return None


@define("perf_event_output", [Arg.PTR_TO_CTX, Arg.CONST_MAP_PTR, Arg.ANYTHING,
                              P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE_OR_ZERO], Ret.INTEGER,
        gpl_only=True)  # fmt: skip
def perf_event_output(env, r1, r2, r3, r4, r5):
    flags = r3
    if flags & ~(BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK):
        return -errno.EINVAL
    ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32
    extra = b""
    if ctx_len:
        packet = _packet(env.ctx)
        if packet is None:
            return -errno.EINVAL
        if ctx_len > len(packet):
            return -errno.EFAULT
        extra = packet[:ctx_len]
    m = map_arg(env, r2)
    if m is None or not hasattr(m, "output"):
        return -errno.EINVAL
    index = flags & BPF_F_INDEX_MASK
    if index == BPF_F_CURRENT_CPU:
        index = env.cpu
    if index >= m.max_entries:
        return -errno.E2BIG
    data = env.memory.read(r4, u32(r5)) + extra
    return call_with_cpu(m.output, index, data, cpu=env.cpu)
