"""Which helpers take which maps: the kernel's ``check_map_func_compatibility`` (Linux 6.18).

The kernel checks every helper call that passes a map (ARG_CONST_MAP_PTR)
both ways: some map types may only be given to some helpers
(:data:`MAP_FUNCS`: a sockmap to the socket-redirect helpers, a local
storage map to its own get/delete, a stack map to bpf_get_stackid...), and
some helpers take only some map types (:data:`FUNC_MAPS`: bpf_tail_call a
prog array, bpf_redirect_map a devmap, cpumap or xskmap...).  A call failing
either is refused with "cannot pass map_type N into func bpf_NAME#ID"
(EINVAL).

Sockmaps and sockhashes may also be updated or deleted through the generic
map_update_elem / map_delete_elem, but only where no socket lock can be held
(``may_update_sockmap``): socket filters, tc, XDP, sk_reuseport, flow
dissector and sk_lookup programs, BPF iterators (tracing programs attached
as BPF_TRACE_ITER), and sock_ops programs for deletes.  Elsewhere the
refusal is preceded by "cannot update sockmap in this context".

:func:`map_func_error` answers the kernel's refusal for one call, and
:func:`refusal` the verifier's (text and errno).

The data are read from kernel/bpf/verifier.c (check_map_func_compatibility,
may_update_sockmap); pybpf's program types and helper ids are
:mod:`pybpf.runtime.progtypes`' and :mod:`pybpf.isa.helper_ids`'.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping

from pybpf.isa.helper_ids import helper_ids, helper_name

# enum bpf_map_type
(HASH, ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY, PERCPU_HASH, PERCPU_ARRAY, STACK_TRACE, CGROUP_ARRAY,
 LRU_HASH, LRU_PERCPU_HASH, LPM_TRIE, ARRAY_OF_MAPS, HASH_OF_MAPS, DEVMAP, SOCKMAP, CPUMAP, XSKMAP,
 SOCKHASH, CGROUP_STORAGE, REUSEPORT_SOCKARRAY, PERCPU_CGROUP_STORAGE, QUEUE, STACK, SK_STORAGE,
 DEVMAP_HASH, STRUCT_OPS, RINGBUF, INODE_STORAGE, TASK_STORAGE, BLOOM_FILTER, USER_RINGBUF,
 CGRP_STORAGE, ARENA) = range(1, 34)  # fmt: skip

# enum bpf_prog_type values may_update_sockmap names
(SOCKET_FILTER, SCHED_CLS, SCHED_ACT, XDP, SOCK_OPS, SK_REUSEPORT, FLOW_DISSECTOR, TRACING,
 SK_LOOKUP) = (1, 3, 4, 6, 13, 21, 22, 26, 30)  # fmt: skip
BPF_TRACE_ITER = 28  # enum bpf_attach_type


MAP_LOOKUP, MAP_UPDATE, MAP_DELETE = (helper_ids("map_lookup_elem"),
                                      helper_ids("map_update_elem"),
                                      helper_ids("map_delete_elem"))
(LOOKUP,), (UPDATE,), (DELETE,) = MAP_LOOKUP, MAP_UPDATE, MAP_DELETE

#: map type -> the only helpers it may be passed to (the first half of the two-way check);
#: sockmaps and sockhashes also take map_update_elem / map_delete_elem where
#: :func:`may_update_sockmap` allows
MAP_FUNCS: Mapping[int, frozenset[int]] = {
    PROG_ARRAY: helper_ids("tail_call"),
    PERF_EVENT_ARRAY: helper_ids("perf_event_read perf_event_output skb_output "
                                 "perf_event_read_value xdp_output"),
    RINGBUF: helper_ids("ringbuf_output ringbuf_reserve ringbuf_query ringbuf_reserve_dynptr "
                         "ringbuf_submit_dynptr ringbuf_discard_dynptr"),
    USER_RINGBUF: helper_ids("user_ringbuf_drain"),
    STACK_TRACE: helper_ids("get_stackid"),
    CGROUP_ARRAY: helper_ids("skb_under_cgroup current_task_under_cgroup"),
    CGROUP_STORAGE: helper_ids("get_local_storage"),
    PERCPU_CGROUP_STORAGE: helper_ids("get_local_storage"),
    DEVMAP: helper_ids("redirect_map map_lookup_elem"),
    DEVMAP_HASH: helper_ids("redirect_map map_lookup_elem"),
    CPUMAP: helper_ids("redirect_map"),
    XSKMAP: helper_ids("redirect_map map_lookup_elem"),
    ARRAY_OF_MAPS: helper_ids("map_lookup_elem"),
    HASH_OF_MAPS: helper_ids("map_lookup_elem"),
    SOCKMAP: helper_ids("sk_redirect_map sock_map_update msg_redirect_map sk_select_reuseport "
                         "map_lookup_elem"),
    SOCKHASH: helper_ids("sk_redirect_hash sock_hash_update msg_redirect_hash sk_select_reuseport "
                          "map_lookup_elem"),
    REUSEPORT_SOCKARRAY: helper_ids("sk_select_reuseport"),
    QUEUE: helper_ids("map_peek_elem map_pop_elem map_push_elem"),
    STACK: helper_ids("map_peek_elem map_pop_elem map_push_elem"),
    SK_STORAGE: helper_ids("sk_storage_get sk_storage_delete kptr_xchg"),
    INODE_STORAGE: helper_ids("inode_storage_get inode_storage_delete kptr_xchg"),
    TASK_STORAGE: helper_ids("task_storage_get task_storage_delete kptr_xchg"),
    CGRP_STORAGE: helper_ids("cgrp_storage_get cgrp_storage_delete kptr_xchg"),
    BLOOM_FILTER: helper_ids("map_peek_elem map_push_elem"),
}  # fmt: skip


def _by_helper(table: Mapping[str, frozenset[int]]) -> dict[int, frozenset[int]]:
    return {ident: maps for names, maps in table.items() for ident in helper_ids(names)}


#: helper -> the only map types it takes (the second half)
FUNC_MAPS: Mapping[int, frozenset[int]] = _by_helper({
    "tail_call": frozenset({PROG_ARRAY}),
    "perf_event_read perf_event_output perf_event_read_value skb_output xdp_output":
        frozenset({PERF_EVENT_ARRAY}),
    "ringbuf_output ringbuf_reserve ringbuf_query ringbuf_reserve_dynptr ringbuf_submit_dynptr "
    "ringbuf_discard_dynptr": frozenset({RINGBUF}),
    "user_ringbuf_drain": frozenset({USER_RINGBUF}),
    "get_stackid": frozenset({STACK_TRACE}),
    "current_task_under_cgroup skb_under_cgroup": frozenset({CGROUP_ARRAY}),
    "redirect_map": frozenset({DEVMAP, DEVMAP_HASH, CPUMAP, XSKMAP}),
    "sk_redirect_map msg_redirect_map sock_map_update": frozenset({SOCKMAP}),
    "sk_redirect_hash msg_redirect_hash sock_hash_update": frozenset({SOCKHASH}),
    "get_local_storage": frozenset({CGROUP_STORAGE, PERCPU_CGROUP_STORAGE}),
    "sk_select_reuseport": frozenset({REUSEPORT_SOCKARRAY, SOCKMAP, SOCKHASH}),
    "map_pop_elem": frozenset({QUEUE, STACK}),
    "map_peek_elem map_push_elem": frozenset({QUEUE, STACK, BLOOM_FILTER}),
    "map_lookup_percpu_elem": frozenset({PERCPU_ARRAY, PERCPU_HASH, LRU_PERCPU_HASH}),
    "sk_storage_get sk_storage_delete": frozenset({SK_STORAGE}),
    "inode_storage_get inode_storage_delete": frozenset({INODE_STORAGE}),
    "task_storage_get task_storage_delete": frozenset({TASK_STORAGE}),
    "cgrp_storage_get cgrp_storage_delete": frozenset({CGRP_STORAGE}),
})  # fmt: skip

SOCK_MAPS = frozenset({SOCKMAP, SOCKHASH})
#: program types that may update and delete sockmap / sockhash entries with the generic helpers
SOCKMAP_WRITERS = frozenset({SOCKET_FILTER, SCHED_CLS, SCHED_ACT, XDP, SK_REUSEPORT,
                             FLOW_DISSECTOR, SK_LOOKUP})  # fmt: skip
CONTEXT_NOTE = "cannot update sockmap in this context"


def may_update_sockmap(func_id: int, prog_type: int, attach_type: int = 0) -> bool:
    """Whether ``prog_type`` may change a sockmap or sockhash with helper ``func_id``.

    Only map_update_elem and map_delete_elem are concerned; BPF iterators
    (tracing, BPF_TRACE_ITER) may both, sock_ops programs may delete (they
    update through bpf_sock_map_update / bpf_sock_hash_update, which check the
    socket's state).
    """
    if func_id not in (UPDATE, DELETE):
        return False
    if prog_type == TRACING:
        return attach_type == BPF_TRACE_ITER
    if prog_type == SOCK_OPS:
        return func_id == DELETE
    return prog_type in SOCKMAP_WRITERS


def _fname(func_id: int) -> str:
    name = helper_name(func_id)
    return f"bpf_{name}" if name else "unknown"


def map_func_error(func_id: int, map_type: int, prog_type: int | None = None,
                   attach_type: int = 0) -> str | None:  # fmt: skip
    """The kernel's log when passing a ``map_type`` map to helper ``func_id`` is refused.

    None when the call is allowed.  The text's last line is the error
    ("cannot pass map_type N into func bpf_NAME#ID", EINVAL); a refused sockmap
    update or delete is preceded by "cannot update sockmap in this context".
    ``prog_type`` None: the program type is not known, and sockmap updates and
    deletes are taken as allowed.
    """
    note = None
    allowed = MAP_FUNCS.get(map_type)
    if allowed is not None and func_id not in allowed:
        if map_type not in SOCK_MAPS or func_id not in (UPDATE, DELETE):
            return _cannot_pass(func_id, map_type)
        if prog_type is not None and not may_update_sockmap(func_id, prog_type, attach_type):
            note = CONTEXT_NOTE
    maps = FUNC_MAPS.get(func_id)
    if note is None and (maps is None or map_type in maps):
        return None
    error = _cannot_pass(func_id, map_type)
    return f"{note}\n{error}" if note else error


def _cannot_pass(func_id: int, map_type: int) -> str:
    return f"cannot pass map_type {map_type} into func {_fname(func_id)}#{func_id}"


def refusal(func_id: int, m: object, prog_type: int | None = None,
            attach_type: int = 0) -> tuple[str, int] | None:  # fmt: skip
    """What the verifier answers a call passing map ``m`` to helper ``func_id``: None, or
    the kernel's refusal (:func:`map_func_error`) as (log text, EINVAL)."""
    error = map_func_error(func_id, int(getattr(m, "map_type", 0)), prog_type, attach_type)
    return None if error is None else (error, errno.EINVAL)


# --- which maps a program may use at all (check_map_prog_compatibility) -------------------------
#: the map types a sleepable program may use
SLEEPABLE_MAPS = frozenset({
    HASH, LRU_HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, ARRAY_OF_MAPS, HASH_OF_MAPS,
    RINGBUF, USER_RINGBUF, INODE_STORAGE, SK_STORAGE, TASK_STORAGE, CGRP_STORAGE, QUEUE, STACK,
    ARENA,
})  # fmt: skip
CGROUP_STORAGES = frozenset({CGROUP_STORAGE, PERCPU_CGROUP_STORAGE})


#: is_tracing_prog_type: kprobe, tracepoint, perf_event, raw_tracepoint (and writable)
TRACING_PROG_TYPES = frozenset({2, 5, 7, 17, 24})
#: what check_map_prog_compatibility refuses of a map value's special fields (the
#: ``btf_fields`` a loader records from the value's BTF), in its order: the field, the
#: program types concerned (None: tracing ones), the refusal
_FIELD_RULES = (
    ("bpf_list_head", None, "tracing progs cannot use bpf_{list_head,rb_root} yet"),
    ("bpf_rb_root", None, "tracing progs cannot use bpf_{list_head,rb_root} yet"),
    ("bpf_spin_lock", frozenset({SOCKET_FILTER}),
     "socket filter progs cannot use bpf_spin_lock yet"),
    ("bpf_spin_lock", None, "tracing progs cannot use bpf_spin_lock yet"),
    ("bpf_timer", None, "tracing progs cannot use bpf_timer yet"),
    ("bpf_wq", None, "tracing progs cannot use bpf_wq yet"),
)  # fmt: skip


def map_prog_error(maps: list[object], *, sleepable: bool = False,
                   prog_type: int | None = None) -> tuple[str, int] | None:  # fmt: skip
    """The kernel's refusal of a program using ``maps`` (in the order its instructions
    first name them), or None: a special field of the value the program type may not use
    (EINVAL; with ``prog_type``), a struct_ops map (EINVAL), a map type a sleepable program
    may not use (EINVAL), or two different cgroup storage maps of one kind (EBUSY)."""
    storages: dict[int, object] = {}
    for m in maps:
        t = int(getattr(m, "map_type", 0))
        fields = getattr(m, "btf_fields", frozenset())
        for name, types, error in _FIELD_RULES:
            if name in fields and prog_type in (types or TRACING_PROG_TYPES):
                return error, errno.EINVAL
        if t == STRUCT_OPS:
            return "bpf_struct_ops map cannot be used in prog", errno.EINVAL
        if sleepable and t not in SLEEPABLE_MAPS:
            return ("Sleepable programs can only use array, hash, ringbuf and local storage "
                    "maps", errno.EINVAL)  # fmt: skip
        if t in CGROUP_STORAGES and storages.setdefault(t, m) is not m:
            return "only one cgroup storage of each type is allowed", errno.EBUSY
    return None
