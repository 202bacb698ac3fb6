"""Context access rules per program type (the kernel's ``is_valid_access``), and what else
the verifier and the load path know of each type.

:func:`ctx_access` answers what the verifier asks of a load or store through
a PTR_TO_CTX register at constant offset ``off``: refused (None, the kernel
logs ``invalid bpf_context access off=%d size=%d``) or allowed, with the
type the loaded register gets (``xdp_md->data`` is PTR_TO_PACKET,
``__sk_buff->sk`` PTR_TO_SOCK_COMMON_OR_NULL, most fields an unknown scalar)
and the field size a narrow load is widened to (``ctx_field_size``: a 1-byte
load of ``__sk_buff->len`` becomes a 4-byte load and a mask; 0 means the
access is converted as is).

Also here: :func:`ctx_size` (one past the last byte the verifier can ever
accept), :func:`direct_packet_access` (``may_access_direct_pkt_data``),
:func:`return_range` (the R0 range ``check_return_code`` enforces at the
main program's exit) and :func:`load_error` (what BPF_PROG_LOAD refuses of a
type before verifying: ``bpf_prog_load_check_attach`` and the sleepable
rule).

The program types are declared by family modules, one per context struct
family (:mod:`.ctx_base` describes the declaration, :class:`ProgTypeOps`):
:mod:`.ctx_skb` (``struct __sk_buff``: socket_filter, tc, cgroup_skb, lwt,
sk_skb, flow_dissector), :mod:`.ctx_xdp`, :mod:`.ctx_tracing` (kprobe,
tracepoint, raw tracepoints, perf_event, syscall), :mod:`.ctx_cgroup`
(cgroup_sock, cgroup_sock_addr, cgroup_sysctl, cgroup_sockopt),
:mod:`.ctx_sock` (sock_ops, sk_msg, sk_reuseport, sk_lookup) and :mod:`.ctx_netfilter`.  :data:`OPS`
maps each modelled ``enum bpf_prog_type`` number to its declaration.  The
layouts are the uapi structs of Linux 6.18 on x86-64; the rules were read
from net/core/filter.c, kernel/bpf/cgroup.c, kernel/trace/bpf_trace.c,
kernel/bpf/syscall.c and net/netfilter/nf_bpf_link.c and are checked
against the kernel offset by offset by ``tests/test_verifier_ctx.py`` and
``tests/test_progtypes_more.py``.  The loader is assumed privileged
(CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, as root), which is what decides
``cgroup_skb``'s packet access.
"""

from __future__ import annotations

import errno

from pybpf.verifier import ctx_cgroup, ctx_netfilter, ctx_skb, ctx_sock, ctx_tracing, ctx_xdp
from pybpf.verifier.ctx_base import (
    NO_TEST_RUN,
    UNMODELLED,
    CtxAccess,
    HelperSet,
    ProgTypeOps,
    field_at,
    layout,
)
from pybpf.verifier.ctx_cgroup import (
    BPF_SOCK,
    BPF_SOCK_ADDR,
    BPF_SOCKOPT,
    BPF_SYSCTL,
    CGROUP_SOCK,
    CGROUP_SOCK_ADDR,
    CGROUP_SOCKOPT,
    CGROUP_SYSCTL,
)
from pybpf.verifier.ctx_netfilter import BPF_NF_CTX, NETFILTER
from pybpf.verifier.ctx_skb import (
    CGROUP_SKB,
    FLOW_DISSECTOR,
    LWT_IN,
    LWT_OUT,
    LWT_SEG6LOCAL,
    LWT_XMIT,
    SCHED_ACT,
    SCHED_CLS,
    SK_BUFF,
    SK_BUFF_SIZE,
    SK_SKB,
    SOCKET_FILTER,
)
from pybpf.verifier.ctx_sock import (
    BPF_SK_LOOKUP_CTX,
    BPF_SOCK_OPS,
    SK_LOOKUP,
    SK_MSG,
    SK_MSG_MD,
    SK_REUSEPORT,
    SK_REUSEPORT_MD,
    SOCK_OPS,
)
from pybpf.verifier.ctx_tracing import (
    BPF_TRACE_KPROBE_SESSION,
    BPF_TRACE_UPROBE_SESSION,
    KPROBE,
    MAX_BPF_FUNC_ARGS,
    PERF_EVENT,
    PERF_EVENT_DATA,
    PERF_EVENT_DATA_SIZE,
    PERF_MAX_TRACE_SIZE,
    PT_REGS_SIZE,
    RAW_TRACEPOINT,
    RAW_TRACEPOINT_WRITABLE,
    SYSCALL,
    TRACEPOINT,
)
from pybpf.verifier.ctx_xdp import BPF_XDP_DEVMAP, XDP, XDP_MD, XDP_MD_SIZE

__all__ = [
    "BPF_CGROUP_INET_EGRESS", "BPF_NF_CTX", "BPF_SK_LOOKUP_CTX", "BPF_SOCK", "BPF_SOCKOPT",
    "BPF_SOCK_ADDR", "BPF_SOCK_OPS", "BPF_SYSCTL", "BPF_TRACE_KPROBE_SESSION",
    "BPF_TRACE_UPROBE_SESSION", "BPF_XDP_DEVMAP", "CGROUP_SKB", "CGROUP_SOCK", "CGROUP_SOCKOPT",
    "CGROUP_SOCK_ADDR", "CGROUP_SYSCTL", "FAMILIES", "FLOW_DISSECTOR", "KPROBE", "LWT_IN",
    "LWT_OUT", "LWT_SEG6LOCAL", "LWT_XMIT", "MAX_BPF_FUNC_ARGS", "MODELLED", "NETFILTER",
    "NO_TEST_RUN", "OPS", "PERF_EVENT", "PERF_EVENT_DATA", "PERF_EVENT_DATA_SIZE",
    "PERF_MAX_TRACE_SIZE", "PROG_TYPES", "PT_REGS_SIZE", "RAW_TRACEPOINT",
    "RAW_TRACEPOINT_WRITABLE", "SCHED_ACT", "SCHED_CLS", "SK_BUFF", "SK_BUFF_SIZE", "SK_LOOKUP",
    "SK_MSG", "SK_MSG_MD", "SK_REUSEPORT", "SK_REUSEPORT_MD", "SK_SKB", "SOCKET_FILTER",
    "SOCK_OPS", "SYSCALL", "TRACEPOINT", "UNMODELLED", "XDP", "XDP_MD", "XDP_MD_SIZE",
    "CtxAccess", "HelperSet", "ProgTypeOps", "ctx_access", "ctx_size", "direct_packet_access",
    "field_at", "layout", "load_error", "ops", "return_range",
]  # fmt: skip

BPF_CGROUP_INET_EGRESS = ctx_skb.BPF_CGROUP_INET_EGRESS

#: The family modules, each with its ``TYPES``.
FAMILIES = (ctx_skb, ctx_xdp, ctx_tracing, ctx_cgroup, ctx_sock, ctx_netfilter)
OPS: dict[int, ProgTypeOps] = {}
for _family in FAMILIES:
    for _ops in _family.TYPES:
        if _ops.prog_type in OPS:  # pragma: no cover - a declaration error
            raise ValueError(f"program type {_ops.prog_type} is declared twice")
        OPS[_ops.prog_type] = _ops

MODELLED: frozenset[int] = frozenset(OPS)
"""Every program type pybpf models (loads, verifies)."""

PROG_TYPES: frozenset[int] = frozenset(
    t for t, o in OPS.items() if 0 in o.sweep_attach and o.sleepable != "required")
"""The modelled types whose rules the kernel answers for a program loaded with
expected_attach_type 0 and no flags (all but cgroup_sock_addr, cgroup_sockopt,
sk_lookup, netfilter and syscall, which need an attach type or BPF_F_SLEEPABLE): what a
sweep at attach type 0 covers.  :data:`MODELLED` has every type."""


def ops(prog_type: int) -> ProgTypeOps | None:
    """The declaration of ``prog_type``; None when pybpf does not model it."""
    return OPS.get(int(prog_type))


def ctx_access(prog_type: int, off: int, size: int, *, write: bool, attach_type: int = 0,
               ldsx: bool = False) -> CtxAccess | None:  # fmt: skip
    """Whether the verifier allows a ``size``-byte access at ``ctx + off``; None refuses.

    ``write`` for a store (BPF_STX; the kernel refuses BPF_ST and atomics on
    the context before asking), ``ldsx`` for a sign-extending load
    (BPF_MEMSX).  ``attach_type`` is the expected_attach_type the program
    was loaded with (a 0 is fixed up as the kernel does).  ``size`` is 1, 2,
    4 or 8; anything else, and a program type pybpf does not model (see
    :data:`MODELLED`), is refused.
    """
    found = OPS.get(int(prog_type))
    if found is None or size not in (1, 2, 4, 8):
        return None
    return found.access(off, size, write, found.attach(int(attach_type)), ldsx)


def ctx_size(prog_type: int) -> int:
    """One past the last context byte the verifier can accept; 0 for unknown types.

    The size of the uapi struct for the networking and perf_event types,
    ``struct pt_regs`` for kprobes, PERF_MAX_TRACE_SIZE for tracepoints (the
    record's real size is only known at attach), 12 u64 arguments for raw
    tracepoints and 64 KiB for syscall programs.
    """
    found = OPS.get(int(prog_type))
    return found.ctx_size if found else 0


def direct_packet_access(prog_type: int, write: bool, *, helper_pkt_access: bool | None = None
                         ) -> bool:  # fmt: skip
    """may_access_direct_pkt_data: may this program type touch packet memory directly.

    With ``helper_pkt_access`` (a packet pointer passed to a helper), the
    answer for the packet types is the helper prototype's ``pkt_access``;
    cgroup_sockopt's optval buffer is open to helpers whatever their
    prototype says.
    """
    found = OPS.get(int(prog_type))
    mode = found.packet if found else ""
    if mode == "ctx":
        return True
    if not mode or (mode == "r" and write):
        return False
    return True if helper_pkt_access is None else helper_pkt_access


def return_range(prog_type: int, attach_type: int = 0) -> tuple[int, int] | None:
    """The [lo, hi] R0 must lie in at the main program's exit; None when anything goes.

    check_return_code of Linux 6.18 for programs without BTF attach targets:
    cgroup_skb [0, 1] ([0, 3] on egress, where 2 and 3 also ask for
    congestion notification), kprobe sessions [0, 1], cgroup_sock_addr
    [1, 1] for recvmsg / getpeername / getsockname and [0, 3] for bind,
    the other cgroup types, sock_ops, sk_lookup and netfilter [0, 1]; xdp,
    tc, socket filters, lwt, sk_skb, sk_msg, flow_dissector and the tracing
    types may return any value.
    """
    found = OPS.get(int(prog_type))
    if found is None:
        return (0, 1) if int(prog_type) == 15 else None  # cgroup_device
    return found.ret(found.attach(int(attach_type)))


_SLEEPABLE_TYPES = frozenset({KPROBE, 26, 27, 29, SYSCALL})  # + tracing, struct_ops, lsm


def load_error(prog_type: int, attach_type: int = 0, *, sleepable: bool = False
               ) -> tuple[int, str] | None:  # fmt: skip
    """(errno, reason) when BPF_PROG_LOAD refuses the type before verifying it, else None.

    ``bpf_prog_load_check_attach``: an expected_attach_type the type does not
    take (after the fixup of a 0: cgroup_sock's is INET_SOCK_CREATE) is
    EINVAL; then the verifier's sleepable rule (``check_attach_btf_id``): a
    syscall program must be sleepable, and only the tracing, lsm,
    struct_ops, (u)probe and syscall types may be.
    """
    prog_type = int(prog_type)
    found = OPS.get(prog_type)
    if found is not None:
        attach = found.attach(int(attach_type))
        if found.attach_types is not None and attach not in found.attach_types:
            return errno.EINVAL, (f"program type {found.name} cannot be loaded with "
                                  f"expected_attach_type {attach}")  # fmt: skip
        if found.sleepable == "required" and not sleepable:
            return errno.EINVAL, "Syscall programs can only be sleepable"
    if sleepable and prog_type not in _SLEEPABLE_TYPES:
        return errno.EINVAL, ("Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops "
                              "programs can be sleepable")  # fmt: skip
    return None
