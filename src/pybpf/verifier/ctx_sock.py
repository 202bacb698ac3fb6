"""The socket programs: sock_ops, sk_msg, sk_reuseport and sk_lookup (net/core/filter.c).

* **sock_ops** — ``struct bpf_sock_ops`` (``sock_ops_is_valid_access``):
  4-byte loads of the u32 fields (narrower ones of ``skb_tcp_flags`` only),
  8-byte loads of bytes_received, bytes_acked and skb_hwtstamp; ``sk`` is a
  PTR_TO_SOCKET_OR_NULL, skb_data / skb_data_end packet pointers; only
  ``reply`` and ``sk_txhash`` are writable (4 bytes).  The kernel reads the
  packet through skb_data directly but refuses it to helpers and writes
  (``may_access_direct_pkt_data`` has no sock_ops case); pybpf's memory
  checker asks one question for both, so reads through skb_data are refused
  too.  R0 is [0, 1].
* **sk_msg** — ``struct sk_msg_md`` (``sk_msg_is_valid_access``): read-only;
  data / data_end 8-byte packet pointers (the packet is readable and
  writable), the address fields and ``size`` 4-byte loads, ``sk`` a
  PTR_TO_SOCKET.
* **sk_reuseport** — ``struct sk_reuseport_md`` (``sk_reuseport_is_valid_access``):
  read-only; data / data_end packet pointers (read-only packet), ``sk`` a
  PTR_TO_SOCKET, ``migrating_sk`` a PTR_TO_SOCK_COMMON_OR_NULL, ``hash`` a
  4-byte load, len / ip_protocol / bind_inany narrow loads, eth_protocol
  loads of 2 or 4 bytes.  A zero expected_attach_type is
  SK_REUSEPORT_SELECT.
* **sk_lookup** — ``struct bpf_sk_lookup`` (``sk_lookup_is_valid_access``):
  read-only; ``sk`` a PTR_TO_SOCKET_OR_NULL, the u32 fields narrow loads,
  ``remote_port`` a 4-byte load (backward compatibility) or a narrow one of
  its be16, its padding narrow u16 loads.  R0 is [0, 1] (SK_DROP, SK_PASS).

None of them has a test run in the kernel but sk_lookup, whose run pybpf
does not model.
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
    narrow_ok,
    ptr,
    u32s,
    zero_one,
)
from pybpf.verifier.ctx_cgroup import cgroup_common
from pybpf.verifier.types import Base, Flag

SOCK_OPS, SK_MSG, SK_REUSEPORT, SK_LOOKUP = 13, 16, 21, 30
BPF_CGROUP_SOCK_OPS, BPF_SK_MSG_VERDICT, BPF_SK_LOOKUP = 3, 7, 36
BPF_SK_REUSEPORT_SELECT, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE = 39, 40

BPF_SOCK_OPS = layout(
    *u32s("op"), ("args", 16, 4),  # union { args[4]; reply; replylong[4]; }
    *u32s("family remote_ip4 local_ip4"), ("remote_ip6", 16, 4), ("local_ip6", 16, 4),
    *u32s("remote_port local_port is_fullsock snd_cwnd srtt_us bpf_sock_ops_cb_flags state"
          " rtt_min snd_ssthresh rcv_nxt snd_nxt snd_una mss_cache ecn_flags rate_delivered"
          " rate_interval_us packets_out retrans_out total_retrans segs_in data_segs_in"
          " segs_out data_segs_out lost_out sacked_out sk_txhash"),
    ("bytes_received", 8, 8), ("bytes_acked", 8, 8), ptr("sk"), ptr("skb_data"),
    ptr("skb_data_end"), *u32s("skb_len skb_tcp_flags"), ("skb_hwtstamp", 8, 8),
)  # fmt: skip
BPF_SOCK_OPS_SIZE = 224
_REPLY = BPF_SOCK_OPS["args"][0]  # reply shares args[0]
_SOCK_OPS_PTRS = {"sk": (Base.PTR_TO_SOCKET, Flag.MAYBE_NULL),
                  "skb_data": (Base.PTR_TO_PACKET, Flag.NONE),
                  "skb_data_end": (Base.PTR_TO_PACKET_END, Flag.NONE)}  # fmt: skip


def _sock_ops(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sock_ops_is_valid_access (see the module docstring)."""
    lay = BPF_SOCK_OPS
    if off < 0 or off >= BPF_SOCK_OPS_SIZE or off % size:
        return None
    name = field_at(lay, off)
    if write:
        if off == _REPLY or off == lay["sk_txhash"][0]:
            return CtxAccess(field="reply" if off == _REPLY else name) if size == 4 else None
        return None
    if in_field(lay, off, "bytes_received", "bytes_acked") or name == "skb_hwtstamp":
        return CtxAccess(field=name) if size == 8 else None
    if name in _SOCK_OPS_PTRS:
        base, flags = _SOCK_OPS_PTRS[name]
        return CtxAccess(base, flags, field=name) if size == 8 else None
    if name == "skb_tcp_flags" and off == lay[name][0]:
        return CtxAccess(field_size=4, field=name) if narrow_ok(size, 4) else None
    return CtxAccess(field=name) if size == 4 else None


SK_MSG_MD = layout(
    ptr("data"), ptr("data_end"), *u32s("family remote_ip4 local_ip4"), ("remote_ip6", 16, 4),
    ("local_ip6", 16, 4), *u32s("remote_port local_port size"), ptr("sk"),
)  # fmt: skip
SK_MSG_MD_SIZE = 80
_SK_MSG_PTRS = {"data": Base.PTR_TO_PACKET, "data_end": Base.PTR_TO_PACKET_END,
                "sk": Base.PTR_TO_SOCKET}  # fmt: skip


def _sk_msg(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sk_msg_is_valid_access: read-only; pointers 8 bytes, the rest 4."""
    if write or off < 0 or off >= SK_MSG_MD_SIZE or off % size:
        return None
    name = field_at(SK_MSG_MD, off)
    if name in _SK_MSG_PTRS:
        return CtxAccess(_SK_MSG_PTRS[name], field=name) if size == 8 else None
    return CtxAccess(field=name) if size == 4 else None


SK_REUSEPORT_MD = layout(
    ptr("data"), ptr("data_end"), *u32s("len eth_protocol ip_protocol bind_inany hash"),
    ptr("sk"), ptr("migrating_sk"),
)  # fmt: skip
SK_REUSEPORT_MD_SIZE = 56
_REUSEPORT_PTRS = {"data": (Base.PTR_TO_PACKET, Flag.NONE),
                   "data_end": (Base.PTR_TO_PACKET_END, Flag.NONE),
                   "sk": (Base.PTR_TO_SOCKET, Flag.NONE),
                   "migrating_sk": (Base.PTR_TO_SOCK_COMMON, Flag.MAYBE_NULL)}  # fmt: skip


def _sk_reuseport(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sk_reuseport_is_valid_access (see the module docstring)."""
    lay = SK_REUSEPORT_MD
    if write or off < 0 or off >= SK_REUSEPORT_MD_SIZE or off % size:
        return None
    name = field_at(lay, off)
    if not name:
        return None  # the padding before sk
    exact = off == lay[name][0]
    if name in _REUSEPORT_PTRS:
        base, flags = _REUSEPORT_PTRS[name]
        return CtxAccess(base, flags, field=name) if exact and size == 8 else None
    if name == "hash":
        return CtxAccess(field=name) if size == 4 else None
    if name == "eth_protocol" and size < 2:  # the skb's protocol is a be16
        return None
    return CtxAccess(field_size=4, field=name) if narrow_ok(size, 4) else None


BPF_SK_LOOKUP_CTX = layout(
    ptr("sk"), *u32s("family protocol remote_ip4"), ("remote_ip6", 16, 4),
    ("remote_port", 2, 2), ("_pad", 2, 2), *u32s("local_ip4"), ("local_ip6", 16, 4),
    *u32s("local_port ingress_ifindex"),
)  # fmt: skip
BPF_SK_LOOKUP_SIZE = 72  # the union with a u64 cookie aligns it to 8


def _sk_lookup(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sk_lookup_is_valid_access (see the module docstring)."""
    if write or off < 0 or off >= BPF_SK_LOOKUP_SIZE or off % size:
        return None
    name = field_at(BPF_SK_LOOKUP_CTX, off)
    if name == "sk":
        return CtxAccess(Base.PTR_TO_SOCKET, Flag.MAYBE_NULL, field=name) if size == 8 else None
    if name == "remote_port" and size == 4:
        return CtxAccess(field=name)
    if name in ("remote_port", "_pad"):
        return CtxAccess(field_size=2, field=name) if narrow_ok(size, 2) else None
    if not name:
        return None  # the tail padding
    return CtxAccess(field_size=4, field=name) if narrow_ok(size, 4) else None


_SOCK_OPS_HELPERS = """
    setsockopt getsockopt sock_ops_cb_flags_set sock_map_update sock_hash_update
    get_socket_cookie get_netns_cookie perf_event_output sk_storage_get sk_storage_delete
    tcp_sock load_hdr_opt store_hdr_opt reserve_hdr_opt
"""
_SK_MSG_HELPERS = """
    msg_redirect_map msg_redirect_hash msg_apply_bytes msg_cork_bytes msg_pull_data
    msg_push_data msg_pop_data perf_event_output get_netns_cookie sk_storage_get
    sk_storage_delete
"""

TYPES = (
    ProgTypeOps(
        SOCK_OPS, "sock_ops", _sock_ops, BPF_SOCK_OPS_SIZE,
        HelperSet("net", _SOCK_OPS_HELPERS, by_attach=cgroup_common, variants={
            "setsockopt": "bpf_sock_ops_setsockopt_proto",
            "getsockopt": "bpf_sock_ops_getsockopt_proto",
            "get_socket_cookie": "bpf_get_socket_cookie_sock_ops_proto",
            "get_netns_cookie": "bpf_get_netns_cookie_sock_ops_proto",
            "perf_event_output": "bpf_event_output_data_proto"}),
        ret=zero_one, sweep_attach=(0, BPF_CGROUP_SOCK_OPS)),
    ProgTypeOps(
        SK_MSG, "sk_msg", _sk_msg, SK_MSG_MD_SIZE,
        HelperSet("net", _SK_MSG_HELPERS, variants={
            "perf_event_output": "bpf_event_output_data_proto",
            "get_netns_cookie": "bpf_get_netns_cookie_sk_msg_proto"}),
        packet="rw", sweep_attach=(0, BPF_SK_MSG_VERDICT)),
    ProgTypeOps(
        SK_REUSEPORT, "sk_reuseport", _sk_reuseport, SK_REUSEPORT_MD_SIZE,
        HelperSet("base", "sk_select_reuseport skb_load_bytes skb_load_bytes_relative"
                  " get_socket_cookie ktime_get_coarse_ns", drop="perf_event_output", variants={
                      "skb_load_bytes": "sk_reuseport_load_bytes_proto",
                      "skb_load_bytes_relative": "sk_reuseport_load_bytes_relative_proto",
                      "get_socket_cookie": "bpf_get_socket_ptr_cookie_proto"}),
        attach_types=frozenset({BPF_SK_REUSEPORT_SELECT, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE}),
        default_attach=BPF_SK_REUSEPORT_SELECT, packet="r",
        sweep_attach=(0, BPF_SK_REUSEPORT_SELECT, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE)),
    ProgTypeOps(
        SK_LOOKUP, "sk_lookup", _sk_lookup, BPF_SK_LOOKUP_SIZE,
        HelperSet("net", "perf_event_output sk_assign sk_release", variants={
            "perf_event_output": "bpf_event_output_data_proto",
            "sk_assign": "bpf_sk_lookup_assign_proto"}),
        attach_types=frozenset({BPF_SK_LOOKUP}), ret=zero_one, test_run=UNMODELLED,
        sweep_attach=(BPF_SK_LOOKUP,)),
)
