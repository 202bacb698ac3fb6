"""Context access rules per program type (the kernel's ``is_valid_access``).

:func:`ctx_access` answers what the verifier asks of a load or store through
a PTR_TO_CTX register at constant offset ``off``: refused (None, the kernel
logs ``invalid bpf_context access off=%d size=%d``) or allowed, with the
type the loaded register gets (``xdp_md->data`` is PTR_TO_PACKET,
``__sk_buff->sk`` PTR_TO_SOCK_COMMON_OR_NULL, most fields an unknown scalar)
and the field size a narrow load is widened to (``ctx_field_size``: a 1-byte
load of ``__sk_buff->len`` becomes a 4-byte load and a mask; 0 means the
access is converted as is).

Also here: :func:`ctx_size` (one past the last byte the verifier can ever
accept), :func:`direct_packet_access` (``may_access_direct_pkt_data``) and
:func:`return_range` (the R0 range ``check_return_code`` enforces at the
main program's exit).

Program types are ``enum bpf_prog_type`` numbers; the layouts are the uapi
structs of Linux 6.18 on x86-64 (``struct __sk_buff``, ``struct xdp_md``,
``struct pt_regs``, ``struct bpf_perf_event_data``).  The tables were read
from net/core/filter.c and kernel/trace/bpf_trace.c and are checked
against the running kernel by ``tests/test_verifier_ctx.py``.  The loader
is assumed privileged (CAP_BPF, as root), which is what decides
``cgroup_skb``'s packet access.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.verifier.types import Base, Flag, type_str

SOCKET_FILTER, KPROBE, SCHED_CLS, SCHED_ACT, TRACEPOINT, XDP, PERF_EVENT, CGROUP_SKB = range(1, 9)
RAW_TRACEPOINT = 17
FLOW_DISSECTOR = 22

# enum bpf_attach_type values that change a rule
BPF_CGROUP_INET_EGRESS = 1
BPF_XDP_DEVMAP = 33
BPF_TRACE_KPROBE_SESSION = 56
BPF_TRACE_UPROBE_SESSION = 57

PT_REGS_SIZE = 168  # struct pt_regs on x86-64: 21 registers
PERF_MAX_TRACE_SIZE = 8192
MAX_BPF_FUNC_ARGS = 12


@dataclass(frozen=True)
class CtxAccess:
    """An allowed context access.

    ``base``/``flags``: the loaded register's type (SCALAR for stores and
    most fields).  ``field_size``: the kernel's ``ctx_field_size`` — nonzero
    when a narrower load is widened to this many bytes and masked.
    ``field``: the struct member accessed, for messages.
    """

    base: Base = Base.SCALAR
    flags: Flag = Flag.NONE
    field_size: int = 0
    field: str = ""

    @property
    def type_name(self) -> str:
        """The register type as the kernel's log spells it (``pkt``, ``sock_common_or_null``)."""
        return type_str(self.base, self.flags)


# --- struct layouts ------------------------------------------------------------------------
def _layout(*fields: tuple[str, int, int]) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) from (name, size, align) members in declaration order."""
    out, off = {}, 0
    for name, size, align in fields:
        off = (off + align - 1) // align * align
        out[name] = (off, size)
        off += size
    return out


def _u32s(names: str) -> list[tuple[str, int, int]]:
    return [(n, 4, 4) for n in names.split()]


SK_BUFF = _layout(
    *_u32s("len pkt_type mark queue_mapping protocol vlan_present vlan_tci vlan_proto priority"
           " ingress_ifindex ifindex tc_index"),
    ("cb", 20, 4),
    *_u32s("hash tc_classid data data_end napi_id family remote_ip4 local_ip4"),
    ("remote_ip6", 16, 4), ("local_ip6", 16, 4),
    *_u32s("remote_port local_port data_meta"),
    ("flow_keys", 8, 8), ("tstamp", 8, 8),
    *_u32s("wire_len gso_segs"),
    ("sk", 8, 8),
    *_u32s("gso_size"),
    ("tstamp_type", 1, 1), ("_pad", 3, 1),
    ("hwtstamp", 8, 8),
)  # fmt: skip
SK_BUFF_SIZE = 192
XDP_MD = _layout(*_u32s("data data_end data_meta ingress_ifindex rx_queue_index egress_ifindex"))
XDP_MD_SIZE = 24
PERF_EVENT_DATA = _layout(("regs", PT_REGS_SIZE, 8), ("sample_period", 8, 8), ("addr", 8, 8))
PERF_EVENT_DATA_SIZE = 184


def _in(layout: dict[str, tuple[int, int]], off: int, first: str, last: str | None = None) -> bool:
    """``off`` lies within members first..last (bpf_ctx_range / bpf_ctx_range_till)."""
    start = layout[first][0]
    end_off, end_size = layout[last or first]
    return start <= off < end_off + end_size


def field_at(layout: dict[str, tuple[int, int]], off: int) -> str:
    """The member containing byte ``off`` (``""`` outside the struct)."""
    for name, (start, size) in layout.items():
        if start <= off < start + size:
            return name
    return ""


_SK = SK_BUFF
_PKT = {"data": Base.PTR_TO_PACKET, "data_meta": Base.PTR_TO_PACKET_META,
        "data_end": Base.PTR_TO_PACKET_END}  # fmt: skip


# --- __sk_buff ------------------------------------------------------------------------------
def _skb_common(off: int, size: int, write: bool, ldsx: bool,
                result: CtxAccess) -> CtxAccess | None:  # fmt: skip
    """bpf_skb_is_valid_access: the rules every __sk_buff program type shares."""
    if off < 0 or off >= SK_BUFF_SIZE or off % size:
        return None
    name = field_at(_SK, off)
    plain = CtxAccess(result.base, result.flags, 0, name)
    if name == "cb":
        return plain if off + size <= _SK["cb"][0] + _SK["cb"][1] else None
    if name in _PKT:
        return plain if size == 4 and not ldsx else None
    if name in ("remote_ip6", "local_ip6", "remote_ip4", "local_ip4"):
        return plain if size == 4 else None
    if name == "flow_keys":
        return None  # only BPF_PROG_TYPE_FLOW_DISSECTOR reads it
    if name == "hwtstamp":
        return plain if size == 8 and not write else None
    if name == "tstamp":
        return plain if size == 8 else None
    if name == "sk":
        if write or size != 8:
            return None
        return CtxAccess(Base.PTR_TO_SOCK_COMMON, Flag.MAYBE_NULL, 0, name)
    if name in ("tstamp_type", "_pad"):
        return None
    if write:
        return plain if size == 4 else None
    if size > 4:  # bpf_ctx_narrow_access_ok: a power of two no wider than the u32 field
        return None
    return CtxAccess(result.base, result.flags, 4, name)


def _socket_filter(off: int, size: int, write: bool, attach: int, ldsx: bool):
    name = field_at(_SK, off)
    if name in ("tc_classid", "data", "data_meta", "data_end", "tstamp", "wire_len", "hwtstamp"):
        return None
    if _in(_SK, off, "family", "local_port"):
        return None
    if write and name != "cb":
        return None
    return _skb_common(off, size, write, ldsx, CtxAccess())


_TC_WRITABLE = frozenset({"mark", "tc_index", "priority", "tc_classid", "cb", "tstamp",
                          "queue_mapping"})  # fmt: skip


def _tc(off: int, size: int, write: bool, attach: int, ldsx: bool):
    name = field_at(_SK, off)
    if write and name not in _TC_WRITABLE:
        return None
    if _in(_SK, off, "family", "local_port"):
        return None
    if off == _SK["tstamp_type"][0]:
        return CtxAccess(field_size=0, field=name) if size == 1 else None
    base = _PKT.get(name, Base.SCALAR)
    return _skb_common(off, size, write, ldsx, CtxAccess(base))


_CG_WRITABLE = frozenset({"mark", "priority", "cb", "tstamp"})


def _cgroup_skb(off: int, size: int, write: bool, attach: int, ldsx: bool):
    name = field_at(_SK, off)
    if name in ("tc_classid", "data_meta", "wire_len"):
        return None
    if write and name not in _CG_WRITABLE:
        return None
    base = _PKT.get(name, Base.SCALAR)  # data/data_end need CAP_BPF: the loader is privileged
    return _skb_common(off, size, write, ldsx, CtxAccess(base))


def _flow_dissector(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """Only the packet and the flow keys; nothing is writable."""
    if off < 0 or off >= SK_BUFF_SIZE or off % size or write:
        return None
    name = field_at(_SK, off)
    if name in ("data", "data_end"):
        return CtxAccess(_PKT[name], field=name) if size == 4 and not ldsx else None
    if name == "flow_keys":
        return CtxAccess(Base.PTR_TO_FLOW_KEYS, field=name) if size == 8 else None
    return None


# --- xdp_md -------------------------------------------------------------------------------------
def _xdp(off: int, size: int, write: bool, attach: int, ldsx: bool):
    name = field_at(XDP_MD, off)
    if name == "egress_ifindex" and off == XDP_MD[name][0] and attach != BPF_XDP_DEVMAP:
        return None
    if write:
        return None  # rx_queue_index is writable only by device-offloaded programs
    if off < 0 or off >= XDP_MD_SIZE or off % size or size != 4:
        return None
    base = _PKT.get(name, Base.SCALAR)
    if base is not Base.SCALAR and ldsx:
        return None
    return CtxAccess(base, Flag.NONE, 0, name)


# --- tracing ------------------------------------------------------------------------------------
def _kprobe(off: int, size: int, write: bool, attach: int, ldsx: bool):
    # The 6.18.19 sources accept stores into pt_regs (marking the program
    # kprobe_write_ctx); the running 6.18.44 refuses them, and the kernel is the oracle.
    if write or off < 0 or off + size > PT_REGS_SIZE or off % size:
        return None
    return CtxAccess(field=f"regs+{off}")


def _tracepoint(off: int, size: int, write: bool, attach: int, ldsx: bool):
    # the first 8 bytes (common_type, flags, preempt_count, pid) are not the program's
    if off < 8 or off >= PERF_MAX_TRACE_SIZE or write or off % size:
        return None
    return CtxAccess(field=f"+{off}")


def _raw_tracepoint(off: int, size: int, write: bool, attach: int, ldsx: bool):
    if off < 0 or off >= 8 * MAX_BPF_FUNC_ARGS or write or off % size:
        return None
    return CtxAccess(field=f"args[{off // 8}]")


def _perf_event(off: int, size: int, write: bool, attach: int, ldsx: bool):
    if off < 0 or off >= PERF_EVENT_DATA_SIZE or write or off % size:
        return None
    name = field_at(PERF_EVENT_DATA, off)
    if name in ("sample_period", "addr"):
        return CtxAccess(field_size=8, field=name)
    return CtxAccess(field=f"regs+{off}") if size == 8 else None


_RULES = {
    SOCKET_FILTER: (_socket_filter, SK_BUFF_SIZE),
    SCHED_CLS: (_tc, SK_BUFF_SIZE),
    SCHED_ACT: (_tc, SK_BUFF_SIZE),
    CGROUP_SKB: (_cgroup_skb, SK_BUFF_SIZE),
    FLOW_DISSECTOR: (_flow_dissector, SK_BUFF_SIZE),
    XDP: (_xdp, XDP_MD_SIZE),
    KPROBE: (_kprobe, PT_REGS_SIZE),
    TRACEPOINT: (_tracepoint, PERF_MAX_TRACE_SIZE),
    RAW_TRACEPOINT: (_raw_tracepoint, 8 * MAX_BPF_FUNC_ARGS),
    PERF_EVENT: (_perf_event, PERF_EVENT_DATA_SIZE),
}
PROG_TYPES: frozenset[int] = frozenset(_RULES)


def ctx_access(prog_type: int, off: int, size: int, *, write: bool, attach_type: int = 0,
               ldsx: bool = False) -> CtxAccess | None:  # fmt: skip
    """Whether the verifier allows a ``size``-byte access at ``ctx + off``; None refuses.

    ``write`` for a store (BPF_STX; the kernel refuses BPF_ST and atomics on
    the context before asking), ``ldsx`` for a sign-extending load
    (BPF_MEMSX).  ``size`` is 1, 2, 4 or 8; anything else, and a program
    type pybpf does not model (see :data:`PROG_TYPES`), is refused.
    """
    rule = _RULES.get(int(prog_type))
    if rule is None or size not in (1, 2, 4, 8):
        return None
    return rule[0](off, size, write, attach_type, ldsx)


def ctx_size(prog_type: int) -> int:
    """One past the last context byte the verifier can accept; 0 for unknown types.

    The size of the uapi struct for the networking and perf_event types,
    ``struct pt_regs`` for kprobes, PERF_MAX_TRACE_SIZE for tracepoints (the
    record's real size is only known at attach) and 12 u64 arguments for
    raw tracepoints.
    """
    rule = _RULES.get(int(prog_type))
    return rule[1] if rule else 0


# --- packet access and return codes ----------------------------------------------------------
_PKT_READ_ONLY = frozenset({10, 11, 19, 21, 22, CGROUP_SKB})  # lwt_in/out, seg6local, ...
_PKT_READ_WRITE = frozenset({SCHED_CLS, SCHED_ACT, XDP, 12, 14, 16})  # lwt_xmit, sk_skb, sk_msg
CGROUP_SOCKOPT = 25


def direct_packet_access(prog_type: int, write: bool, *, helper_pkt_access: bool | None = None
                         ) -> bool:  # fmt: skip
    """may_access_direct_pkt_data: may this program type touch packet memory directly.

    With ``helper_pkt_access`` (a packet pointer passed to a helper), the
    answer for the packet types is the helper prototype's ``pkt_access``.
    """
    prog_type = int(prog_type)
    if prog_type in _PKT_READ_ONLY and write:
        return False
    if prog_type in _PKT_READ_ONLY or prog_type in _PKT_READ_WRITE:
        return True if helper_pkt_access is None else helper_pkt_access
    return prog_type == CGROUP_SOCKOPT


_ZERO_ONE = (0, 1)
_RET_DEFAULT_01 = frozenset({9, 13, 15, 23, 25})  # cgroup_sock, sock_ops, cgroup_device, ...
CGROUP_SOCK_ADDR, SK_LOOKUP, NETFILTER = 18, 30, 32
_SOCK_ADDR_ONE = frozenset({19, 20, 29, 30, 31, 32, 51, 52, 53})  # recvmsg/getpeername/getsockname
_SOCK_ADDR_BIND = frozenset({8, 9})  # BPF_CGROUP_INET4_BIND, INET6_BIND


def return_range(prog_type: int, attach_type: int = 0) -> tuple[int, int] | None:
    """The [lo, hi] R0 must lie in at the main program's exit; None when anything goes.

    check_return_code of Linux 6.18 for programs without BTF attach targets:
    cgroup_skb [0, 1] ([0, 3] on egress, where 2 and 3 also ask for
    congestion notification), kprobe sessions [0, 1]; xdp, tc, socket
    filters and the tracing types may return any value.
    """
    prog_type, attach_type = int(prog_type), int(attach_type)
    if prog_type == CGROUP_SKB:
        return (0, 3) if attach_type == BPF_CGROUP_INET_EGRESS else _ZERO_ONE
    if prog_type == KPROBE:
        session = (BPF_TRACE_KPROBE_SESSION, BPF_TRACE_UPROBE_SESSION)
        return _ZERO_ONE if attach_type in session else None
    if prog_type == CGROUP_SOCK_ADDR:
        if attach_type in _SOCK_ADDR_ONE:
            return (1, 1)
        return (0, 3) if attach_type in _SOCK_ADDR_BIND else _ZERO_ONE
    if prog_type in _RET_DEFAULT_01 or prog_type in (SK_LOOKUP, NETFILTER):
        return _ZERO_ONE
    return None
