"""The kernel functions pybpf knows: flags and the program types that may call them.

A kfunc's prototype is BTF (the kernel's vmlinux; pybpf reads the extern
declaration the object carries, :mod:`.kfunc_proto`), but what the
verifier does with it is decided by facts BTF does not hold: the
``BTF_ID_FLAGS`` of the kfunc (``KF_ACQUIRE``, ``KF_RET_NULL``...) and the
kfunc id sets registered per program type (``register_btf_kfunc_id_set``).
This module is the one place those facts are written down, transcribed
from Linux 6.12: ``kernel/bpf/helpers.c`` (``generic_btf_ids`` for
tracing, tc, xdp, struct_ops, syscall and cgroup_skb programs;
``common_btf_ids`` for every program type) and ``kernel/bpf/cpumask.c``
(``cpumask_kfunc_btf_ids`` for tracing, struct_ops and syscall programs).
Which "hook" a program type's sets live under is
``bpf_prog_type_to_kfunc_hook`` of ``kernel/bpf/btf.c``.

A kfunc not listed is one pybpf does not implement: a call to it is
refused at verification ("pybpf does not implement kfunc X yet").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag


class KF(IntFlag):
    """The ``KF_*`` kfunc flags (include/linux/btf.h)."""

    NONE = 0
    ACQUIRE = 1 << 0  # returns a referenced pointer
    RELEASE = 1 << 1  # releases its referenced argument
    RET_NULL = 1 << 2  # the returned pointer may be NULL
    TRUSTED_ARGS = 1 << 4  # pointer arguments must be trusted (referenced or PTR_TRUSTED)
    SLEEPABLE = 1 << 5  # only sleepable programs may call it
    DESTRUCTIVE = 1 << 6  # needs CAP_SYS_BOOT
    RCU = 1 << 7  # pointer arguments may also be RCU-protected
    ITER_NEW = 1 << 8  # open-coded iterator constructor
    ITER_NEXT = 1 << 9  # open-coded iterator step
    ITER_DESTROY = 1 << 10  # open-coded iterator destructor
    RCU_PROTECTED = 1 << 11  # must be called in an RCU read-side section
    FASTCALL = 1 << 12  # clobbers only the registers it uses (bpf_fastcall)


# --- program types (enum bpf_prog_type) and the kfunc hook each one reads --------------------

_SOCKET_FILTER, _KPROBE, _SCHED_CLS, _SCHED_ACT, _TRACEPOINT, _XDP, _PERF_EVENT = range(1, 8)
_CGROUP_SKB, _LWT_IN, _LWT_OUT, _LWT_XMIT, _SK_SKB, _LWT_SEG6LOCAL = 8, 10, 11, 12, 14, 19
_TRACING, _STRUCT_OPS, _LSM, _SYSCALL, _NETFILTER = 26, 27, 29, 31, 32

COMMON, XDP, TC, STRUCT_OPS, TRACING, SYSCALL = "common", "xdp", "tc", "struct_ops", "tracing", \
    "syscall"  # fmt: skip
CGROUP_SKB, SCHED_ACT, SK_SKB, SOCKET_FILTER, LWT, NETFILTER, KPROBE = "cgroup_skb", "sched_act", \
    "sk_skb", "socket_filter", "lwt", "netfilter", "kprobe"  # fmt: skip

#: bpf_prog_type_to_kfunc_hook: a program type not listed has no hook of its own
_HOOKS: dict[int, str] = {
    _XDP: XDP, _SCHED_CLS: TC, _STRUCT_OPS: STRUCT_OPS, _TRACING: TRACING, _TRACEPOINT: TRACING,
    _PERF_EVENT: TRACING, _LSM: TRACING, _SYSCALL: SYSCALL, _CGROUP_SKB: CGROUP_SKB,
    _SCHED_ACT: SCHED_ACT, _SK_SKB: SK_SKB, _SOCKET_FILTER: SOCKET_FILTER, _LWT_IN: LWT,
    _LWT_OUT: LWT, _LWT_XMIT: LWT, _LWT_SEG6LOCAL: LWT, _NETFILTER: NETFILTER, _KPROBE: KPROBE,
}  # fmt: skip


def hook_of(prog_type: int) -> str | None:
    """The kfunc hook whose sets a program of ``prog_type`` may call (besides ``common``)."""
    return _HOOKS.get(prog_type)


@dataclass(frozen=True)
class Kfunc:
    """One kfunc's kernel facts: its flags and the hooks its id set is registered for."""

    name: str
    flags: KF
    hooks: frozenset[str]
    #: the kernel's parameter names, where a suffix means something (``__ign``, ``__k``):
    #: an object's extern declaration may not carry them
    params: tuple[str, ...] = ()

    def allowed(self, prog_type: int) -> bool:
        """btf_kfunc_id_set_contains: the common set, or the set of the program's hook."""
        return COMMON in self.hooks or hook_of(prog_type) in self.hooks


_GENERIC = frozenset({TRACING, TC, XDP, STRUCT_OPS, SYSCALL, CGROUP_SKB})  # helpers.c kfunc_init
_CPUMASK = frozenset({TRACING, STRUCT_OPS, SYSCALL})  # cpumask.c cpumask_kfunc_init
_ALL = frozenset({COMMON})

_A, _R, _N, _T, _RCU = KF.ACQUIRE, KF.RELEASE, KF.RET_NULL, KF.TRUSTED_ARGS, KF.RCU
_NEW, _NEXT, _DESTROY = KF.ITER_NEW, KF.ITER_NEXT | KF.RET_NULL, KF.ITER_DESTROY

_TABLE: tuple[tuple, ...] = (
    # kernel/bpf/helpers.c, generic_btf_ids
    ("bpf_task_acquire", _A | _RCU | _N, _GENERIC),
    ("bpf_task_release", _R, _GENERIC),
    ("bpf_cgroup_acquire", _A | _RCU | _N, _GENERIC),
    ("bpf_cgroup_release", _R, _GENERIC),
    ("bpf_cgroup_ancestor", _A | _RCU | _N, _GENERIC),
    ("bpf_cgroup_from_id", _A | _N, _GENERIC),
    ("bpf_task_under_cgroup", _RCU, _GENERIC),
    ("bpf_task_from_pid", _A | _N, _GENERIC),
    # kernel/bpf/helpers.c, common_btf_ids
    ("bpf_cast_to_kern_ctx", KF.FASTCALL, _ALL),
    ("bpf_rdonly_cast", KF.FASTCALL, _ALL, ("obj__ign", "btf_id__k")),
    ("bpf_iter_num_new", _NEW, _ALL),
    ("bpf_iter_num_next", _NEXT, _ALL),
    ("bpf_iter_num_destroy", _DESTROY, _ALL),
    ("bpf_iter_bits_new", _NEW, _ALL, ("it", "unsafe_ptr__ign", "nr_words")),
    ("bpf_iter_bits_next", _NEXT, _ALL),
    ("bpf_iter_bits_destroy", _DESTROY, _ALL),
    # kernel/bpf/cpumask.c, cpumask_kfunc_btf_ids
    ("bpf_cpumask_create", _A | _N, _CPUMASK),
    ("bpf_cpumask_release", _R, _CPUMASK),
    ("bpf_cpumask_acquire", _A | _T, _CPUMASK),
    *((f"bpf_cpumask_{op}", _RCU, _CPUMASK) for op in (
        "first", "first_zero", "first_and", "set_cpu", "clear_cpu", "test_cpu",
        "test_and_set_cpu", "test_and_clear_cpu", "setall", "clear", "and", "or", "xor", "equal",
        "intersects", "subset", "empty", "full", "copy", "any_distribute", "any_and_distribute",
        "weight")),
)  # fmt: skip

KFUNCS: dict[str, Kfunc] = {row[0]: Kfunc(*row) for row in _TABLE}


def kfunc(name: str) -> Kfunc | None:
    """The kernel facts of kfunc ``name``, None when pybpf does not implement it."""
    return KFUNCS.get(name)
