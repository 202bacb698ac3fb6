"""Map helpers: lookup, update, delete, push / pop / peek, per-CPU lookup.

Prototypes from kernel/bpf/helpers.c.  The map argument is the address an
ld_imm64 of the map's fd yields; the kernel turns it back into the map
(:meth:`~pybpf.runtime.kernel.Kernel.map_from_pointer`).  A register that
holds no map gives ``-EINVAL`` (lookup: NULL) — the verifier would have
refused the program.  The work is the map's program face
(:class:`~pybpf.runtime.maps.base.Map` ``prog_*`` methods), called with the
CPU the program runs on for per-CPU maps.  A map type without push / pop /
peek (anything but queue, stack and bloom filter) answers ``-EINVAL`` too.
"""

from __future__ import annotations

import errno

from pybpf.runtime.helpers import Arg, ArgFlag, Ret, define
from pybpf.runtime.helpers._common import call_with_cpu, map_arg, u32

A = Arg
# pop/peek fill the value: ARG_PTR_TO_MAP_VALUE | MEM_UNINIT | MEM_WRITE
_VALUE_OUT = A.PTR_TO_MAP_VALUE | ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE


@define("map_lookup_elem", [A.CONST_MAP_PTR, A.PTR_TO_MAP_KEY], Ret.PTR_TO_MAP_VALUE_OR_NULL,
        pkt_access=True)  # fmt: skip
def map_lookup_elem(env, r1, r2, r3, r4, r5):
    m = map_arg(env, r1)
    if m is None:
        return 0
    return m.prog_lookup(r2, cpu=env.cpu)


@define("map_update_elem", [A.CONST_MAP_PTR, A.PTR_TO_MAP_KEY, A.PTR_TO_MAP_VALUE, A.ANYTHING],
        Ret.INTEGER, pkt_access=True)  # fmt: skip
def map_update_elem(env, r1, r2, r3, r4, r5):
    m = map_arg(env, r1)
    if m is None:
        return -errno.EINVAL
    return m.prog_update(r2, r3, r4, cpu=env.cpu)


@define("map_delete_elem", [A.CONST_MAP_PTR, A.PTR_TO_MAP_KEY], Ret.INTEGER, pkt_access=True)
def map_delete_elem(env, r1, r2, r3, r4, r5):
    m = map_arg(env, r1)
    if m is None:
        return -errno.EINVAL
    return m.prog_delete(r2, cpu=env.cpu)


def _queue_op(env, address: int, op: str, *args: int) -> int:
    m = map_arg(env, address)
    method = getattr(m, op, None) if m is not None else None
    if method is None:
        return -errno.EINVAL
    return call_with_cpu(method, *args, cpu=env.cpu)


@define("map_push_elem", [A.CONST_MAP_PTR, A.PTR_TO_MAP_VALUE, A.ANYTHING], Ret.INTEGER,
        pkt_access=True)  # fmt: skip
def map_push_elem(env, r1, r2, r3, r4, r5):
    return _queue_op(env, r1, "prog_push", r2, r3)


@define("map_pop_elem", [A.CONST_MAP_PTR, _VALUE_OUT], Ret.INTEGER)
def map_pop_elem(env, r1, r2, r3, r4, r5):
    return _queue_op(env, r1, "prog_pop", r2)


@define("map_peek_elem", [A.CONST_MAP_PTR, _VALUE_OUT], Ret.INTEGER)
def map_peek_elem(env, r1, r2, r3, r4, r5):
    return _queue_op(env, r1, "prog_peek", r2)


@define("map_lookup_percpu_elem", [A.CONST_MAP_PTR, A.PTR_TO_MAP_KEY, A.ANYTHING],
        Ret.PTR_TO_MAP_VALUE_OR_NULL, pkt_access=True)  # fmt: skip
def map_lookup_percpu_elem(env, r1, r2, r3, r4, r5):
    """The value of ``key`` on CPU ``r3`` of a per-CPU map; NULL past the last CPU."""
    m = map_arg(env, r1)
    cpu = u32(r3)
    if m is None or cpu >= env.kernel.ncpus:
        return 0
    return m.prog_lookup(r2, cpu=cpu)
