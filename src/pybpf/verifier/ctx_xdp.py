"""The XDP program type: ``struct xdp_md`` (net/core/filter.c ``xdp_is_valid_access``).

Six u32 fields, read-only (rx_queue_index is writable only by
device-offloaded programs), 4-byte loads only; data, data_end and
data_meta load as packet pointers; egress_ifindex exists only for programs
loaded for a devmap (BPF_XDP_DEVMAP).
"""

from __future__ import annotations

from pybpf.verifier.ctx_base import CtxAccess, HelperSet, ProgTypeOps, field_at, layout, u32s
from pybpf.verifier.types import Base, Flag

XDP = 6
BPF_XDP_DEVMAP, BPF_XDP_CPUMAP, BPF_XDP = 33, 35, 37

XDP_MD = layout(*u32s("data data_end data_meta ingress_ifindex rx_queue_index egress_ifindex"))
XDP_MD_SIZE = 24
_PKT = {"data": Base.PTR_TO_PACKET, "data_meta": Base.PTR_TO_PACKET_META,
        "data_end": Base.PTR_TO_PACKET_END}  # fmt: skip


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


_XDP = """
    perf_event_output get_smp_processor_id csum_diff xdp_adjust_head xdp_adjust_meta redirect
    redirect_map xdp_adjust_tail xdp_get_buff_len xdp_load_bytes xdp_store_bytes fib_lookup
    check_mtu tcp_check_syncookie tcp_gen_syncookie sk_lookup_tcp sk_lookup_udp sk_release
    skc_lookup_tcp tcp_raw_gen_syncookie_ipv4 tcp_raw_gen_syncookie_ipv6
    tcp_raw_check_syncookie_ipv4 tcp_raw_check_syncookie_ipv6
"""

TYPES = (
    ProgTypeOps(XDP, "xdp", _xdp, XDP_MD_SIZE, HelperSet("net", _XDP), packet="rw",
                test_run="xdp", sweep_attach=(0, BPF_XDP_DEVMAP)),
)
