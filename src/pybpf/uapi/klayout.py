"""Kernel struct layouts the xlated view rewrites context and map accesses into.

The kernel's ``convert_ctx_accesses`` turns a load of ``xdp_md->data_end`` into a
load of ``xdp_buff->data_end``, and ``array_map_gen_lookup`` adds
``offsetof(struct bpf_array, value)``: offsets of kernel-internal structs, which are
facts of one kernel build.  Their one home is the snapshot ``kernel_layouts.json``
beside this module, read from the vmlinux BTF of the kernel pybpf models and
stamped with its release (``python -m pybpf.testing.kernel_layouts --write``
regenerates it; without ``--write`` it compares the snapshot with the running
kernel).  :data:`FIELDS` lists the members wanted, ``struct.member[.member]``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("kernel_layouts.json")

#: The members the xlated view needs (net/core/filter.c, kernel/bpf/*map*.c).
FIELDS = (
    # xdp_convert_ctx_access
    "xdp_buff.data", "xdp_buff.data_end", "xdp_buff.data_meta", "xdp_buff.rxq",
    "xdp_buff.txq", "xdp_rxq_info.dev", "xdp_rxq_info.queue_index", "xdp_txq_info.dev",
    "net_device.ifindex",
    # bpf_convert_ctx_access (struct __sk_buff)
    "sk_buff.len", "sk_buff.protocol", "sk_buff.vlan_proto", "sk_buff.priority",
    "sk_buff.skb_iif", "sk_buff.dev", "sk_buff.hash", "sk_buff.mark",
    "sk_buff.__pkt_type_offset", "sk_buff.queue_mapping", "sk_buff.vlan_all",
    "sk_buff.vlan_tci", "sk_buff.cb", "sk_buff.data", "sk_buff.tc_index",
    "sk_buff.sk", "sk_buff.tstamp", "sk_buff.data_len", "sk_buff.head",
    "sk_buff.__cloned_offset", "sk_buff.__mono_tc_offset",
    "qdisc_skb_cb.data", "qdisc_skb_cb.tc_classid", "qdisc_skb_cb.pkt_len",
    "sock_common.skc_family", "sock_common.skc_daddr", "sock_common.skc_rcv_saddr",
    "sock_common.skc_v6_daddr", "sock_common.skc_v6_rcv_saddr", "sock_common.skc_dport",
    "sock_common.skc_num",
    "bpf_skb_data_end.data_meta", "bpf_skb_data_end.data_end",
    "sk_buff.napi_id", "sk_msg.data", "sk_msg.data_end", "sk_msg.sk", "sk_msg_sg.size",
    "sk_skb_cb.data", "sk_skb_cb.temp_reg",
    # bpf_sock_convert_ctx_access, bpf_tcp_sock_..., bpf_xdp_sock_...
    "sock_common.skc_bound_dev_if", "sock.sk_mark", "sock.sk_priority", "sock.sk_type",
    "sock.sk_protocol", "sock_common.skc_state", "xdp_sock.queue_id",
    "tcp_sock.snd_cwnd", "tcp_sock.srtt_us", "tcp_sock.snd_ssthresh", "tcp_sock.rcv_nxt",
    "tcp_sock.snd_nxt", "tcp_sock.snd_una", "tcp_sock.mss_cache", "tcp_sock.ecn_flags",
    "tcp_sock.rate_delivered", "tcp_sock.rate_interval_us", "tcp_sock.packets_out",
    "tcp_sock.retrans_out", "tcp_sock.total_retrans", "tcp_sock.segs_in",
    "tcp_sock.data_segs_in", "tcp_sock.segs_out", "tcp_sock.data_segs_out",
    "tcp_sock.lost_out", "tcp_sock.sacked_out", "tcp_sock.bytes_received",
    "tcp_sock.bytes_acked", "tcp_sock.dsack_dups", "tcp_sock.delivered",
    # sk_lookup_convert_ctx_access, sk_reuseport_convert_ctx_access
    "bpf_sk_lookup_kern.family", "bpf_sk_lookup_kern.protocol", "bpf_sk_lookup_kern.sport",
    "bpf_sk_lookup_kern.dport", "bpf_sk_lookup_kern.v4.saddr", "bpf_sk_lookup_kern.v4.daddr",
    "bpf_sk_lookup_kern.v6.saddr", "bpf_sk_lookup_kern.v6.daddr",
    "bpf_sk_lookup_kern.selected_sk", "bpf_sk_lookup_kern.ingress_ifindex",
    "sk_reuseport_kern.skb", "sk_reuseport_kern.sk", "sk_reuseport_kern.migrating_sk",
    "sk_reuseport_kern.data_end", "sk_reuseport_kern.hash", "sk_reuseport_kern.bind_inany",
    # the maps' gen_lookup
    "bpf_array.value", "bpf_array.pptrs", "htab_elem.key", "htab_elem.lru_node", "bpf_lru_node.ref",
    "xsk_map.xsk_map",
)  # fmt: skip


#: Kernel-build values the rewrites embed, read from the kernel's own xlated image of a
#: small program: the per-CPU ``cpu_number`` (low 32 bits) and ``jiffies`` addresses the
#: inlined helpers load, and ``min_napi_id`` (MIN_NAPI_ID, NR_CPUS + 1).
ADDRESSES = ("cpu_number", "jiffies", "min_napi_id")


#: Bitfield members: (bit offset, bit size) (bpf_convert_tstamp_read/write's masks)
BITFIELDS = ("sk_buff.tc_at_ingress", "sk_buff.tstamp_type")


class LayoutError(LookupError):
    """A member the snapshot does not hold (add it to FIELDS and regenerate)."""


@dataclass(frozen=True)
class Layouts:
    """One kernel's offsets: ``fields["xdp_buff.data_end"] == (offset, size)``."""

    release: str
    fields: dict[str, tuple[int, int]]
    addresses: dict[str, int] = field(default_factory=dict)
    bitfields: dict[str, tuple[int, int]] = field(default_factory=dict)

    def mask(self, spec: str, byte: int) -> int:
        """The mask of bitfield ``spec`` (:data:`BITFIELDS`) in the byte at offset ``byte``."""
        try:
            bit, size = self.bitfields[spec]
        except KeyError:
            raise LayoutError(f"no layout recorded for {spec}") from None
        return ((1 << size) - 1) << (bit - 8 * byte)

    def address(self, name: str) -> int | None:
        """A value of :data:`ADDRESSES`, None when the snapshot lacks it."""
        return self.addresses.get(name)

    def off(self, spec: str) -> int:
        return self._get(spec)[0]

    def size(self, spec: str) -> int:
        return self._get(spec)[1]

    def _get(self, spec: str) -> tuple[int, int]:
        try:
            return self.fields[spec]
        except KeyError:
            raise LayoutError(f"no layout recorded for {spec}") from None


@functools.cache
def snapshot() -> Layouts:
    """The bundled snapshot (the kernel pybpf models)."""
    doc = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    return Layouts(doc["release"], {k: (v[0], v[1]) for k, v in doc["fields"].items()},
                   dict(doc.get("addresses", {})),
                   {k: (v[0], v[1]) for k, v in doc.get("bitfields", {}).items()})
