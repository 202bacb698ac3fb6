"""Program types: their numbers, contexts, helper availability and SEC names.

:data:`PROG_TYPES` maps each supported ``enum bpf_prog_type`` to a
:class:`ProgTypeSpec`: its bpftool name (``xdp``), the helpers it may call
(the kernel's ``*_func_proto`` per type, per expected_attach_type where the
kernel's switch looks at it) and how a test run builds its context
(:mod:`pybpf.runtime.context`).  :data:`SEC_TABLE` maps libbpf's section
names to (program type, expected attach type).

The specs are built from the verifier-side declarations of the family
modules (:data:`pybpf.verifier.ctx.OPS`, one :class:`ProgTypeOps
<pybpf.verifier.ctx.ProgTypeOps>` per type: context rules, return range,
packet access, attach types, helper names, test-run kind): adding a program
type is adding its declaration to one ``pybpf/verifier/ctx_*.py`` module;
this module only resolves the helper names against the helper groups and
picks the test runner.

Helper availability is what Linux 6.18 answers to a program loaded with every
capability (root): ``bpf_base_func_proto`` (kernel/bpf/helpers.c) including
its CAP_BPF and CAP_PERFMON parts, ``bpf_sk_base_func_proto`` on top of it
for networking types, ``bpf_tracing_func_proto`` for the tracing ones, and
each type's own switch (net/core/filter.c, kernel/bpf/cgroup.c,
kernel/trace/bpf_trace.c, kernel/bpf/syscall.c), on an x86-64 build
(probe_read and probe_read_str are there:
ARCH_HAS_NON_OVERLAPPING_ADDRESS_SPACE) without CONFIG_BPF_KPROBE_OVERRIDE
(no override_return) nor CONFIG_IPV6_SEG6_BPF (no lwt_seg6_* helpers).  The
base, networking and tracing sets come from
:mod:`pybpf.runtime.helpers.groups` when that module defines ``BASE`` /
``NET`` / ``TRACING``; otherwise from the lists below.

A type the kernel cannot test-run has no ``make_run`` (test_run answers
ENOTSUPP, as the kernel does); one the kernel can and pybpf does not model
yet (lwt, flow_dissector, syscall, netfilter) answers EOPNOTSUPP.

:func:`sec_to_prog_type` follows libbpf's ``section_defs`` and
``sec_def_matches``: an entry ending in ``+`` matches the bare name or the
name followed by ``/`` and anything (``kprobe`` and ``kprobe/do_exit``), one
ending in ``/`` matches any name with that prefix, others match exactly;
the first matching entry of the table wins.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

from pybpf.errors import KernelError
from pybpf.isa.helper_ids import helper_id, helper_ids
from pybpf.uapi import ProgFlag
from pybpf.verifier import ctx as ctxrules


class ProgType(IntEnum):
    """``enum bpf_prog_type`` (include/uapi/linux/bpf.h)."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class AttachType(IntEnum):
    """``enum bpf_attach_type`` (include/uapi/linux/bpf.h, Linux 6.18)."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56
    TRACE_UPROBE_SESSION = 57


@dataclass(frozen=True)
class ProgTypeSpec:
    """What pybpf knows of one program type.

    ``helpers``: the helper ids the type may call whatever its
    expected_attach_type (the intersection over the attach types it may be
    loaded with); :meth:`helpers_for` is the exact set for one attach type.
    ``make_run`` builds the per-run context for a test run
    (:func:`pybpf.runtime.testrun.test_run` calls it); None means the type
    has no test run in the kernel (ENOTSUPP).  ``ops``: the verifier-side
    declaration (:class:`pybpf.verifier.ctx.ProgTypeOps`).  ``proto_variants``:
    helper id -> the kernel prototype this type gets where it differs from
    the common one (for the prototype tables).
    """

    prog_type: ProgType
    name: str
    helpers: frozenset[int]
    make_run: Callable | None = None
    extra: dict = field(default_factory=dict)
    ops: ctxrules.ProgTypeOps | None = None
    by_attach: Mapping[int, frozenset[int]] = field(default_factory=dict)
    proto_variants: Mapping[int, str] = field(default_factory=dict)

    def helpers_for(self, attach_type: int = 0) -> frozenset[int]:
        """The helper ids a program loaded with ``attach_type`` may call."""
        if self.ops is not None:
            attach_type = self.ops.attach(int(attach_type))
        return self.by_attach.get(int(attach_type), self.helpers)

    def load_error(self, attach_type: int = 0, prog_flags: int = 0) -> str | None:
        """Why BPF_PROG_LOAD refuses this type with ``attach_type`` and ``prog_flags``
        (EINVAL), or None (see :func:`pybpf.verifier.ctx.load_error`)."""
        found = ctxrules.load_error(self.prog_type, attach_type,
                                    sleepable=bool(prog_flags & ProgFlag.SLEEPABLE))
        return None if found is None else found[1]


PROG_TYPES: dict[ProgType, ProgTypeSpec] = {}


# --- helper availability -------------------------------------------------------------------------


# bpf_base_func_proto: unprivileged part, then CAP_BPF, then CAP_PERFMON (root has both)
_BASE = helper_ids("""
    map_lookup_elem map_update_elem map_delete_elem map_push_elem map_pop_elem map_peek_elem
    map_lookup_percpu_elem get_prandom_u32 get_smp_processor_id get_numa_node_id tail_call
    ktime_get_ns ktime_get_boot_ns ktime_get_tai_ns ringbuf_output ringbuf_reserve
    ringbuf_submit ringbuf_discard ringbuf_query strncmp strtol strtoul get_current_pid_tgid
    get_ns_current_pid_tgid get_current_uid_gid
    spin_lock spin_unlock jiffies64 per_cpu_ptr this_cpu_ptr timer_init timer_set_callback
    timer_start timer_cancel kptr_xchg for_each_map_elem loop user_ringbuf_drain
    ringbuf_reserve_dynptr ringbuf_submit_dynptr ringbuf_discard_dynptr dynptr_from_mem
    dynptr_read dynptr_write dynptr_data cgrp_storage_get cgrp_storage_delete
    get_current_cgroup_id get_current_ancestor_cgroup_id current_task_under_cgroup
    get_cgroup_classid task_storage_get task_storage_delete
    trace_printk get_current_task get_current_task_btf get_current_comm probe_read_user
    probe_read_kernel probe_read_user_str probe_read_kernel_str copy_from_user
    copy_from_user_task snprintf_btf snprintf task_pt_regs trace_vprintk perf_event_read_value
    perf_event_read send_signal send_signal_thread get_task_stack get_branch_snapshot find_vma
""")
# bpf_tracing_func_proto: base plus these (probe_write_user needs CAP_SYS_ADMIN)
_TRACING_EXTRA = helper_ids("get_smp_processor_id probe_read probe_read_str get_func_ip "
                            "probe_write_user")
# bpf_sk_base_func_proto (the skc_to_* casts need CAP_PERFMON)
_SK_BASE_EXTRA = helper_ids("""
    skc_to_tcp6_sock skc_to_tcp_sock skc_to_tcp_timewait_sock skc_to_tcp_request_sock
    skc_to_udp6_sock skc_to_unix_sock skc_to_mptcp_sock ktime_get_coarse_ns
""")


def _groups() -> dict[str, frozenset[int]]:
    """The sets a HelperSet falls back to: from helpers/groups.py when it defines them,
    else the lists above."""
    base, tracing = _BASE, _BASE | _TRACING_EXTRA
    try:
        from pybpf.runtime.helpers import groups  # another module's; optional
    except ImportError:
        return {"base": base, "net": base | _SK_BASE_EXTRA, "tracing": tracing}

    def as_ids(value, default):
        if not value:
            return default
        return frozenset(v if isinstance(v, int) else helper_id(v) for v in value)

    base = as_ids(getattr(groups, "BASE", None), base)
    return {"base": base, "net": as_ids(getattr(groups, "NET", None), base | _SK_BASE_EXTRA),
            "tracing": as_ids(getattr(groups, "TRACING", None), tracing)}


def _attach_values(ops: ctxrules.ProgTypeOps) -> frozenset[int]:
    """The expected_attach_type values a type may be loaded with (after the 0 fixup)."""
    if ops.attach_types is not None:
        return ops.attach_types
    return frozenset(ops.attach(int(a)) for a in AttachType)


def _helper_sets(ops: ctxrules.ProgTypeOps, groups: dict[str, frozenset[int]]
                 ) -> tuple[frozenset[int], dict[int, frozenset[int]]]:  # fmt: skip
    """(the set every attach type gets, the set per attach type) of one type."""
    by_attach = {}
    for attach in sorted(_attach_values(ops)):
        group, added, dropped = ops.helpers.names(attach)
        by_attach[attach] = ((groups[group] | helper_ids(" ".join(added)))
                             - helper_ids(" ".join(dropped)))
    common = frozenset.intersection(*by_attach.values())
    return common, {a: h for a, h in by_attach.items() if h != common}


def _runner(kind: str) -> Callable:
    """A test-run entry that imports :mod:`pybpf.runtime.testrun` when first called."""

    def run(prog, **kwargs):
        from pybpf.runtime import testrun  # testrun imports this module

        return testrun.RUNNERS[kind](prog, **kwargs)

    run.__name__ = f"run_{kind}"
    return run


def _unmodelled_run(name: str) -> Callable:
    """The test run of a type the kernel can test-run and pybpf cannot (yet)."""

    def run(prog, **kwargs):
        raise KernelError(f"the kernel's test run of {name} programs is not modelled by pybpf",
                          errno=errno.EOPNOTSUPP)

    run.__name__ = f"run_{name}"
    return run


def _make_run(ops: ctxrules.ProgTypeOps) -> Callable | None:
    if ops.test_run is ctxrules.NO_TEST_RUN:
        return None
    if ops.test_run == ctxrules.UNMODELLED:
        return _unmodelled_run(ops.name)
    return _runner(ops.test_run)


def _spec(ops: ctxrules.ProgTypeOps, groups: dict[str, frozenset[int]]) -> ProgTypeSpec:
    common, by_attach = _helper_sets(ops, groups)
    variants = {helper_id(n): proto for n, proto in ops.helpers.variants.items()}
    return ProgTypeSpec(ProgType(ops.prog_type), ops.name, common, _make_run(ops), ops=ops,
                        by_attach=by_attach, proto_variants=variants)


def _build() -> None:
    groups = _groups()
    for prog_type in sorted(ctxrules.OPS):
        spec = _spec(ctxrules.OPS[prog_type], groups)
        PROG_TYPES[spec.prog_type] = spec


_build()


def by_name(name: str) -> ProgTypeSpec:
    """The spec of a bpftool type name (``xdp``); KeyError if unknown."""
    for spec in PROG_TYPES.values():
        if spec.name == name:
            return spec
    raise KeyError(name)


# --- libbpf section names ------------------------------------------------------------------------
class SecFlag(IntFlag):
    """libbpf's ``enum sec_def_flags``."""

    NONE = 0
    EXP_ATTACH_OPT = 1  # expected_attach_type dropped on kernels without it
    ATTACHABLE = 2
    ATTACHABLE_OPT = 3
    ATTACH_BTF = 4  # the target is named by BTF (fentry/func)
    SLEEPABLE = 8  # loaded with BPF_F_SLEEPABLE
    XDP_FRAGS = 16  # loaded with BPF_F_XDP_HAS_FRAGS
    USDT = 32


@dataclass(frozen=True)
class SecDef:
    """One row of libbpf's ``section_defs``."""

    sec: str
    prog_type: ProgType
    attach_type: int
    flags: SecFlag = SecFlag.NONE

    def matches(self, name: str) -> bool:
        """libbpf's ``sec_def_matches``."""
        if self.sec.endswith("/"):
            return name.startswith(self.sec)
        if self.sec.endswith("+"):
            stem = self.sec[:-1]
            return name == stem or name.startswith(stem + "/")
        return name == self.sec


def _sec_table() -> tuple[SecDef, ...]:
    P, A, F = ProgType, AttachType, SecFlag
    S, ATT, OPT, BTF, SL, FR = F.NONE, F.ATTACHABLE, F.ATTACHABLE_OPT, F.ATTACH_BTF, F.SLEEPABLE, \
        F.XDP_FRAGS  # fmt: skip
    rows = [
        ("socket", P.SOCKET_FILTER, 0, S),
        ("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, ATT),
        ("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, ATT),
        ("kprobe+", P.KPROBE, 0, S),
        ("uprobe+", P.KPROBE, 0, S),
        ("uprobe.s+", P.KPROBE, 0, SL),
        ("kretprobe+", P.KPROBE, 0, S),
        ("uretprobe+", P.KPROBE, 0, S),
        ("uretprobe.s+", P.KPROBE, 0, SL),
        ("kprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, S),
        ("kretprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, S),
        ("kprobe.session+", P.KPROBE, A.TRACE_KPROBE_SESSION, S),
        ("uprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, S),
        ("uretprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, S),
        ("uprobe.session+", P.KPROBE, A.TRACE_UPROBE_SESSION, S),
        ("uprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, SL),
        ("uretprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, SL),
        ("uprobe.session.s+", P.KPROBE, A.TRACE_UPROBE_SESSION, SL),
        ("ksyscall+", P.KPROBE, 0, S),
        ("kretsyscall+", P.KPROBE, 0, S),
        ("usdt+", P.KPROBE, 0, F.USDT),
        ("usdt.s+", P.KPROBE, 0, F.USDT | SL),
        ("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS, S),
        ("tc/egress", P.SCHED_CLS, A.TCX_EGRESS, S),
        ("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS, S),
        ("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS, S),
        ("tc", P.SCHED_CLS, 0, S),
        ("classifier", P.SCHED_CLS, 0, S),
        ("action", P.SCHED_ACT, 0, S),
        ("netkit/primary", P.SCHED_CLS, A.NETKIT_PRIMARY, S),
        ("netkit/peer", P.SCHED_CLS, A.NETKIT_PEER, S),
        ("tracepoint+", P.TRACEPOINT, 0, S),
        ("tp+", P.TRACEPOINT, 0, S),
        ("tracepoint.s+", P.TRACEPOINT, 0, SL),
        ("tp.s+", P.TRACEPOINT, 0, SL),
        ("raw_tracepoint+", P.RAW_TRACEPOINT, 0, S),
        ("raw_tp+", P.RAW_TRACEPOINT, 0, S),
        ("raw_tracepoint.s+", P.RAW_TRACEPOINT, 0, SL),
        ("raw_tp.s+", P.RAW_TRACEPOINT, 0, SL),
        ("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, 0, S),
        ("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, 0, S),
        ("tp_btf+", P.TRACING, A.TRACE_RAW_TP, BTF),
        ("tp_btf.s+", P.TRACING, A.TRACE_RAW_TP, BTF | SL),
        ("fentry+", P.TRACING, A.TRACE_FENTRY, BTF),
        ("fmod_ret+", P.TRACING, A.MODIFY_RETURN, BTF),
        ("fexit+", P.TRACING, A.TRACE_FEXIT, BTF),
        ("fentry.s+", P.TRACING, A.TRACE_FENTRY, BTF | SL),
        ("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, BTF | SL),
        ("fexit.s+", P.TRACING, A.TRACE_FEXIT, BTF | SL),
        ("freplace+", P.EXT, 0, BTF),
        ("lsm+", P.LSM, A.LSM_MAC, BTF),
        ("lsm.s+", P.LSM, A.LSM_MAC, BTF | SL),
        ("lsm_cgroup+", P.LSM, A.LSM_CGROUP, BTF),
        ("iter+", P.TRACING, A.TRACE_ITER, BTF),
        ("iter.s+", P.TRACING, A.TRACE_ITER, BTF | SL),
        ("syscall", P.SYSCALL, 0, SL),
        ("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, FR),
        ("xdp/devmap", P.XDP, A.XDP_DEVMAP, ATT),
        ("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, FR),
        ("xdp/cpumap", P.XDP, A.XDP_CPUMAP, ATT),
        ("xdp.frags", P.XDP, A.XDP, FR),
        ("xdp", P.XDP, A.XDP, OPT),
        ("perf_event", P.PERF_EVENT, 0, S),
        ("lwt_in", P.LWT_IN, 0, S),
        ("lwt_out", P.LWT_OUT, 0, S),
        ("lwt_xmit", P.LWT_XMIT, 0, S),
        ("lwt_seg6local", P.LWT_SEG6LOCAL, 0, S),
        ("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, OPT),
        ("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, OPT),
        ("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, OPT),
        ("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT, OPT),
        ("sk_skb", P.SK_SKB, 0, S),
        ("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, OPT),
        ("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, OPT),
        ("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, OPT),
        ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, OPT),
        ("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, OPT),
        ("cgroup/skb", P.CGROUP_SKB, 0, S),
        ("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, ATT),
        ("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, ATT),
        ("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, OPT),
        ("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, ATT),
        ("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, ATT),
    ]
    for call, attach in (
        ("bind4", A.CGROUP_INET4_BIND), ("bind6", A.CGROUP_INET6_BIND),
        ("connect4", A.CGROUP_INET4_CONNECT), ("connect6", A.CGROUP_INET6_CONNECT),
        ("connect_unix", A.CGROUP_UNIX_CONNECT), ("sendmsg4", A.CGROUP_UDP4_SENDMSG),
        ("sendmsg6", A.CGROUP_UDP6_SENDMSG), ("sendmsg_unix", A.CGROUP_UNIX_SENDMSG),
        ("recvmsg4", A.CGROUP_UDP4_RECVMSG), ("recvmsg6", A.CGROUP_UDP6_RECVMSG),
        ("recvmsg_unix", A.CGROUP_UNIX_RECVMSG), ("getpeername4", A.CGROUP_INET4_GETPEERNAME),
        ("getpeername6", A.CGROUP_INET6_GETPEERNAME),
        ("getpeername_unix", A.CGROUP_UNIX_GETPEERNAME),
        ("getsockname4", A.CGROUP_INET4_GETSOCKNAME),
        ("getsockname6", A.CGROUP_INET6_GETSOCKNAME),
        ("getsockname_unix", A.CGROUP_UNIX_GETSOCKNAME),
    ):  # fmt: skip
        rows.append((f"cgroup/{call}", P.CGROUP_SOCK_ADDR, attach, ATT))
    rows += [
        ("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, ATT),
        ("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, ATT),
        ("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, ATT),
        ("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, OPT),
        ("struct_ops+", P.STRUCT_OPS, 0, S),
        ("struct_ops.s+", P.STRUCT_OPS, 0, SL),
        ("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, ATT),
        ("netfilter", P.NETFILTER, A.NETFILTER, S),
    ]
    return tuple(SecDef(sec, pt, int(at), fl) for sec, pt, at, fl in rows)


SEC_TABLE: tuple[SecDef, ...] = _sec_table()
"""libbpf's section_defs in libbpf's order (the first match wins).

The fsession / fentry.multi rows of libbpf's development tree are left out:
their attach types are not in Linux 6.18's ``enum bpf_attach_type``.
"""


def find_sec_def(name: str) -> SecDef | None:
    """The first :data:`SEC_TABLE` row matching section ``name``, or None."""
    return next((d for d in SEC_TABLE if d.matches(name)), None)


def sec_to_prog_type(name: str) -> tuple[ProgType, int]:
    """(program type, expected_attach_type) libbpf derives from a SEC() name.

    Raises KeyError for a name libbpf does not recognise (``xdp/foo``,
    ``kprobefoo``).
    """
    sec = find_sec_def(name)
    if sec is None:
        raise KeyError(f"unrecognized ELF section name {name!r}")
    return sec.prog_type, sec.attach_type
