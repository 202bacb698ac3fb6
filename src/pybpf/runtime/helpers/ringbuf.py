"""BPF ring buffer helpers: ringbuf_output, ringbuf_reserve, ringbuf_submit,
ringbuf_discard, ringbuf_query (prototypes of kernel/bpf/ringbuf.c).

The ring buffer itself is the map's (``BPF_MAP_TYPE_RINGBUF``:
``reserve(size) -> address | 0``, ``submit(address)``, ``discard(address)``,
``output(data) -> 0 | -errno``, ``consume()``).  These helpers check what the
kernel checks at run time: reserve takes no flags (any flag: NULL), output,
submit and discard take only BPF_RB_NO_WAKEUP / BPF_RB_FORCE_WAKEUP (output:
``-EINVAL`` otherwise; wake-ups are not modelled).  The kernel finds a
record's ring buffer from the record's header; pybpf remembers, per run
(``env.scratch["ringbuf"]``), which map each reservation came from, and a
submit or discard of an address that is not a live reservation stops the
run with :class:`~pybpf.runtime.helpers._common.HelperMisuse` (the verifier
would have refused the program).

``ringbuf_query`` answers BPF_RB_AVAIL_DATA (0), BPF_RB_RING_SIZE (1),
BPF_RB_CONS_POS (2) and BPF_RB_PROD_POS (3), 0 for other flags: from the
map's ``query(flag)`` when it has one, else from its ``consumer_pos``,
``producer_pos`` and ``ring_size`` (default ``max_entries``) attributes.
"""

from __future__ import annotations

import errno

from pybpf.runtime.helpers import Arg, ArgFlag, Ret, define
from pybpf.runtime.helpers._common import HelperMisuse, map_arg, u32
from pybpf.verifier import protos as P

BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1
BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE, BPF_RB_CONS_POS, BPF_RB_PROD_POS = 0, 1, 2, 3
_WAKEUP = BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP
# submit/discard release the reservation: ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE
_RELEASED = Arg.PTR_TO_RINGBUF_MEM | ArgFlag.OBJ_RELEASE


def _ringbuf(env, address: int):
    m = map_arg(env, address)
    return m if m is not None and hasattr(m, "reserve") else None


@define("ringbuf_output", [Arg.CONST_MAP_PTR, P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE_OR_ZERO,
                           Arg.ANYTHING], Ret.INTEGER)  # fmt: skip
def ringbuf_output(env, r1, r2, r3, r4, r5):
    if r4 & ~_WAKEUP:
        return -errno.EINVAL
    m = _ringbuf(env, r1)
    if m is None:
        return -errno.EINVAL
    return m.output(env.memory.read(r2, u32(r3)))


@define("ringbuf_reserve", [Arg.CONST_MAP_PTR, Arg.CONST_ALLOC_SIZE_OR_ZERO, Arg.ANYTHING],
        Ret.PTR_TO_RINGBUF_MEM_OR_NULL, acquire=True)  # fmt: skip
def ringbuf_reserve(env, r1, r2, r3, r4, r5):
    m = _ringbuf(env, r1)
    if m is None or r3:
        return 0
    address = m.reserve(r2)
    if address:
        env.scratch.setdefault("ringbuf", {})[address] = m
    return address


def _release(env, address: int, how: str) -> int:
    m = env.scratch.get("ringbuf", {}).pop(address, None)
    if m is None:
        raise HelperMisuse(f"bpf_ringbuf_{how}: {address:#x} is not a ring buffer record "
                           "reserved by this run (or it was already released)")  # fmt: skip
    getattr(m, how)(address)
    return 0


@define("ringbuf_submit", [_RELEASED, Arg.ANYTHING], Ret.VOID)
def ringbuf_submit(env, r1, r2, r3, r4, r5):
    return _release(env, r1, "submit")


@define("ringbuf_discard", [_RELEASED, Arg.ANYTHING], Ret.VOID)
def ringbuf_discard(env, r1, r2, r3, r4, r5):
    return _release(env, r1, "discard")


@define("ringbuf_query", [Arg.CONST_MAP_PTR, Arg.ANYTHING], Ret.INTEGER)
def ringbuf_query(env, r1, r2, r3, r4, r5):
    m = _ringbuf(env, r1)
    if m is None:
        return 0
    query = getattr(m, "query", None)
    if query is not None:
        return query(r2)
    cons, prod = getattr(m, "consumer_pos", 0), getattr(m, "producer_pos", 0)
    if r2 == BPF_RB_AVAIL_DATA:
        return prod - cons
    if r2 == BPF_RB_RING_SIZE:
        return getattr(m, "ring_size", m.max_entries)
    if r2 == BPF_RB_CONS_POS:
        return cons
    if r2 == BPF_RB_PROD_POS:
        return prod
    return 0
