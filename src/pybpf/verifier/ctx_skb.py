"""The ``struct __sk_buff`` program types (net/core/filter.c).

socket_filter, sched_cls / sched_act, cgroup_skb, the lightweight-tunnel
types (lwt_in, lwt_out, lwt_xmit, lwt_seg6local), sk_skb and
flow_dissector share one context, ``struct __sk_buff``, and the kernel's
``bpf_skb_is_valid_access`` (:func:`skb_common`); each type's own
``*_is_valid_access`` first refuses or narrows some fields:

* socket_filter: no packet pointers, no socket fields, only ``cb`` writable;
* tc: the socket fields refused; mark, tc_index, priority, tc_classid, cb,
  tstamp and queue_mapping writable; ``tstamp_type`` a 1-byte load;
* cgroup_skb: no tc_classid, data_meta, wire_len; mark, priority, cb, tstamp
  writable; packet pointers (the loader is privileged: CAP_BPF);
* lwt_*: no tc_classid, socket fields, data_meta, tstamp, wire_len,
  hwtstamp; mark, priority and cb writable;
* sk_skb: no tc_classid, data_meta, tstamp, wire_len, hwtstamp, and not
  even a read of mark; tc_index and priority writable;
* flow_dissector: only data, data_end and flow_keys, read-only.

Linux 6.18's answers were checked offset by offset (tests/test_verifier_ctx.py
and tests/test_progtypes_more.py).
"""

from __future__ import annotations

from pybpf.verifier.ctx_base import (
    UNMODELLED,
    CtxAccess,
    HelperSet,
    ProgTypeOps,
    field_at,
    in_field,
    layout,
    u32s,
)
from pybpf.verifier.types import Base, Flag

SOCKET_FILTER, SCHED_CLS, SCHED_ACT, CGROUP_SKB = 1, 3, 4, 8
LWT_IN, LWT_OUT, LWT_XMIT, SK_SKB, LWT_SEG6LOCAL, FLOW_DISSECTOR = 10, 11, 12, 14, 19, 22

# enum bpf_attach_type values of these types
BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS = 0, 1
BPF_SK_SKB_STREAM_PARSER, BPF_SK_SKB_STREAM_VERDICT, BPF_SK_SKB_VERDICT = 4, 5, 38
BPF_FLOW_DISSECTOR = 17

SK_BUFF = layout(
    *u32s("len pkt_type mark queue_mapping protocol vlan_present vlan_tci vlan_proto priority"
          " ingress_ifindex ifindex tc_index"),
    ("cb", 20, 4),
    *u32s("hash tc_classid data data_end napi_id family remote_ip4 local_ip4"),
    ("remote_ip6", 16, 4), ("local_ip6", 16, 4),
    *u32s("remote_port local_port data_meta"),
    ("flow_keys", 8, 8), ("tstamp", 8, 8),
    *u32s("wire_len gso_segs"),
    ("sk", 8, 8),
    *u32s("gso_size"),
    ("tstamp_type", 1, 1), ("_pad", 3, 1),
    ("hwtstamp", 8, 8),
)  # fmt: skip
SK_BUFF_SIZE = 192
_SK = SK_BUFF
PKT = {"data": Base.PTR_TO_PACKET, "data_meta": Base.PTR_TO_PACKET_META,
       "data_end": Base.PTR_TO_PACKET_END}  # fmt: skip


def skb_common(off: int, size: int, write: bool, ldsx: bool,
               result: CtxAccess) -> CtxAccess | None:  # fmt: skip
    """bpf_skb_is_valid_access: the rules every __sk_buff program type shares."""
    if off < 0 or off >= SK_BUFF_SIZE or off % size:
        return None
    name = field_at(_SK, off)
    plain = CtxAccess(result.base, result.flags, 0, name)
    if name == "cb":
        return plain if off + size <= _SK["cb"][0] + _SK["cb"][1] else None
    if name in PKT:
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
    if in_field(_SK, off, "family", "local_port"):
        return None
    if write and name != "cb":
        return None
    return skb_common(off, size, write, ldsx, CtxAccess())


_TC_WRITABLE = frozenset({"mark", "tc_index", "priority", "tc_classid", "cb", "tstamp",
                          "queue_mapping"})  # fmt: skip


def _tc(off: int, size: int, write: bool, attach: int, ldsx: bool):
    name = field_at(_SK, off)
    if write and name not in _TC_WRITABLE:
        return None
    if in_field(_SK, off, "family", "local_port"):
        return None
    if off == _SK["tstamp_type"][0]:
        return CtxAccess(field_size=0, field=name) if size == 1 else None
    base = PKT.get(name, Base.SCALAR)
    return skb_common(off, size, write, ldsx, CtxAccess(base))


_CG_WRITABLE = frozenset({"mark", "priority", "cb", "tstamp"})


def _cgroup_skb(off: int, size: int, write: bool, attach: int, ldsx: bool):
    name = field_at(_SK, off)
    if name in ("tc_classid", "data_meta", "wire_len"):
        return None
    if write and name not in _CG_WRITABLE:
        return None
    base = PKT.get(name, Base.SCALAR)  # data/data_end need CAP_BPF: the loader is privileged
    return skb_common(off, size, write, ldsx, CtxAccess(base))


_LWT_REFUSED = frozenset({"tc_classid", "data_meta", "tstamp", "wire_len", "hwtstamp"})
_LWT_WRITABLE = frozenset({"mark", "priority", "cb"})


def _lwt(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """lwt_is_valid_access: no socket fields; mark, priority and cb writable."""
    name = field_at(_SK, off)
    if name in _LWT_REFUSED or in_field(_SK, off, "family", "local_port"):
        return None
    if write and name not in _LWT_WRITABLE:
        return None
    return skb_common(off, size, write, ldsx, CtxAccess(PKT.get(name, Base.SCALAR)))


_SK_SKB_REFUSED = frozenset({"tc_classid", "data_meta", "tstamp", "wire_len", "hwtstamp", "mark"})


def _sk_skb(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sk_skb_is_valid_access: mark is not even readable; tc_index and priority writable."""
    name = field_at(_SK, off)
    if name in _SK_SKB_REFUSED:
        return None
    if write and name not in ("tc_index", "priority"):
        return None
    return skb_common(off, size, write, ldsx, CtxAccess(PKT.get(name, Base.SCALAR)))


def _flow_dissector(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """Only the packet and the flow keys; nothing is writable."""
    if off < 0 or off >= SK_BUFF_SIZE or off % size or write:
        return None
    name = field_at(_SK, off)
    if name in ("data", "data_end"):
        return CtxAccess(PKT[name], field=name) if size == 4 and not ldsx else None
    if name == "flow_keys":
        return CtxAccess(Base.PTR_TO_FLOW_KEYS, field=name) if size == 8 else None
    return None


# --- helper sets -------------------------------------------------------------------------------
_SOCK_LOOKUP = "sk_lookup_tcp sk_lookup_udp sk_release skc_lookup_tcp"
_SYNCOOKIE_RAW = ("tcp_raw_gen_syncookie_ipv4 tcp_raw_gen_syncookie_ipv6"
                  " tcp_raw_check_syncookie_ipv4 tcp_raw_check_syncookie_ipv6")  # fmt: skip
_SK_FILTER = ("skb_load_bytes skb_load_bytes_relative get_socket_cookie get_netns_cookie"
              " get_socket_uid perf_event_output")  # fmt: skip
_TC = """
    skb_store_bytes skb_load_bytes skb_load_bytes_relative skb_pull_data csum_diff
    csum_update csum_level l3_csum_replace l4_csum_replace clone_redirect get_cgroup_classid
    skb_vlan_push skb_vlan_pop skb_change_proto skb_change_type skb_adjust_room
    skb_change_tail skb_change_head skb_get_tunnel_key skb_set_tunnel_key skb_get_tunnel_opt
    skb_set_tunnel_opt redirect redirect_neigh redirect_peer get_route_realm get_hash_recalc
    set_hash_invalid set_hash perf_event_output get_smp_processor_id skb_under_cgroup
    get_socket_cookie get_netns_cookie get_socket_uid fib_lookup check_mtu sk_fullsock
    sk_storage_get sk_storage_delete skb_get_xfrm_state skb_cgroup_classid skb_cgroup_id
    skb_ancestor_cgroup_id tcp_sock get_listener_sock tcp_check_syncookie skb_ecn_set_ce
    tcp_gen_syncookie sk_assign skb_set_tstamp
"""
# get_retval/set_retval (cgroup_common_func_proto): not for INET_INGRESS/EGRESS, the only
# attach types BPF_PROG_LOAD accepts for cgroup_skb
_CGROUP_SKB = """
    get_local_storage sk_fullsock sk_storage_get sk_storage_delete skb_cgroup_id
    skb_ancestor_cgroup_id sk_cgroup_id sk_ancestor_cgroup_id tcp_sock get_listener_sock
    skb_ecn_set_ce
"""
# lwt_out_func_proto; lwt_in adds lwt_push_encap, lwt_xmit the tunnel and rewrite helpers;
# lwt_seg6local's seg6 helpers need CONFIG_IPV6_SEG6_BPF, which the reference kernel lacks
_LWT_OUT = ("skb_load_bytes skb_pull_data csum_diff get_cgroup_classid get_route_realm"
            " get_hash_recalc perf_event_output get_smp_processor_id skb_under_cgroup")
_LWT_XMIT = """
    skb_get_tunnel_key skb_set_tunnel_key skb_get_tunnel_opt skb_set_tunnel_opt redirect
    clone_redirect skb_change_tail skb_change_head skb_store_bytes csum_update csum_level
    l3_csum_replace l4_csum_replace set_hash_invalid lwt_push_encap
"""
_SK_SKB = f"""
    skb_store_bytes skb_load_bytes skb_pull_data skb_change_tail skb_change_head
    skb_adjust_room get_socket_cookie get_socket_uid sk_redirect_map sk_redirect_hash
    perf_event_output {_SOCK_LOOKUP}
"""
_SK_SKB_VARIANTS = {
    "skb_pull_data": "sk_skb_pull_data_proto", "skb_change_tail": "sk_skb_change_tail_proto",
    "skb_change_head": "sk_skb_change_head_proto", "skb_adjust_room": "sk_skb_adjust_room_proto",
}  # fmt: skip

_SKB_RUN = "skb"  # bpf_prog_test_run_skb
TYPES = (
    ProgTypeOps(SOCKET_FILTER, "socket_filter", _socket_filter, SK_BUFF_SIZE,
                HelperSet("net", _SK_FILTER), test_run=_SKB_RUN),
    ProgTypeOps(SCHED_CLS, "sched_cls", _tc, SK_BUFF_SIZE,
                HelperSet("net", f"{_TC} {_SOCK_LOOKUP} {_SYNCOOKIE_RAW}"), packet="rw",
                test_run=_SKB_RUN),
    ProgTypeOps(SCHED_ACT, "sched_act", _tc, SK_BUFF_SIZE,
                HelperSet("net", f"{_TC} {_SOCK_LOOKUP} {_SYNCOOKIE_RAW}"), packet="rw",
                test_run=_SKB_RUN),
    ProgTypeOps(CGROUP_SKB, "cgroup_skb", _cgroup_skb, SK_BUFF_SIZE,
                HelperSet("net", f"{_SK_FILTER} {_SOCK_LOOKUP} {_CGROUP_SKB}"),
                attach_types=frozenset({BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS}),
                ret=lambda attach: (0, 3) if attach == BPF_CGROUP_INET_EGRESS else (0, 1),
                packet="r", test_run=_SKB_RUN,
                sweep_attach=(BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS)),
    # lwt: bpf_prog_test_run_skb runs them; pybpf's skb context knows the four types above
    ProgTypeOps(LWT_IN, "lwt_in", _lwt, SK_BUFF_SIZE,
                HelperSet("net", f"{_LWT_OUT} lwt_push_encap"), packet="r",
                test_run=UNMODELLED),
    ProgTypeOps(LWT_OUT, "lwt_out", _lwt, SK_BUFF_SIZE, HelperSet("net", _LWT_OUT),
                packet="r", test_run=UNMODELLED),
    ProgTypeOps(LWT_XMIT, "lwt_xmit", _lwt, SK_BUFF_SIZE,
                HelperSet("net", f"{_LWT_OUT} {_LWT_XMIT}"), packet="rw",
                test_run=UNMODELLED),
    ProgTypeOps(LWT_SEG6LOCAL, "lwt_seg6local", _lwt, SK_BUFF_SIZE,
                HelperSet("net", _LWT_OUT), packet="r"),
    ProgTypeOps(SK_SKB, "sk_skb", _sk_skb, SK_BUFF_SIZE,
                HelperSet("net", _SK_SKB, variants=_SK_SKB_VARIANTS), packet="rw",
                sweep_attach=(0, BPF_SK_SKB_STREAM_PARSER, BPF_SK_SKB_STREAM_VERDICT,
                              BPF_SK_SKB_VERDICT)),
    ProgTypeOps(FLOW_DISSECTOR, "flow_dissector", _flow_dissector, SK_BUFF_SIZE,
                HelperSet("net", "skb_load_bytes", drop="perf_event_output",
                          variants={"skb_load_bytes": "bpf_flow_dissector_load_bytes_proto"}),
                packet="r", test_run=UNMODELLED, sweep_attach=(0, BPF_FLOW_DISSECTOR)),
)
