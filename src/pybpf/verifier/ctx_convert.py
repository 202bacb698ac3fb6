"""convert_ctx_accesses for the shown image: context and socket fields as the kernel's structs.

The kernel's ``*_convert_ctx_access`` callbacks (net/core/filter.c) rewrite a load or
store through the context pointer, or through a socket pointer, into accesses of the
kernel's own struct: ``xdp_md`` is ``xdp_buff``, ``__sk_buff`` is ``sk_buff`` (and
its socket, its cb), ``bpf_sock`` is ``sock``, ``bpf_tcp_sock`` is ``tcp_sock``,
``sk_msg_md`` is ``sk_msg``, ``bpf_sk_lookup`` is ``bpf_sk_lookup_kern``,
``sk_reuseport_md`` is ``sk_reuseport_kern`` (and its skb, its socket).  A load
narrower than a field that records a ctx_field_size loads the field whole and is
shifted and masked after (``is_narrower_load``).  Offsets come from :mod:`pybpf.uapi.klayout`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from pybpf.isa import Instruction
from pybpf.isa.opcodes import CLASS_MASK
from pybpf.uapi.klayout import Layouts
from pybpf.verifier.ctx_base import layout, u32s
from pybpf.verifier.ctx_cgroup import BPF_SOCK
from pybpf.verifier.ctx_skb import (
    CGROUP_SKB,
    LWT_IN,
    LWT_OUT,
    LWT_XMIT,
    SCHED_ACT,
    SCHED_CLS,
    SK_BUFF,
    SOCKET_FILTER,
)
from pybpf.verifier.ctx_sock import (
    BPF_SK_LOOKUP_CTX,
    SK_LOOKUP,
    SK_MSG_MD,
    SK_REUSEPORT,
    SK_REUSEPORT_MD,
)
from pybpf.verifier.ctx_xdp import XDP_MD
from pybpf.verifier.kinsn import (
    ADD,
    ALU64,
    AND,
    AX,
    BYTES,
    CGROUP_SOCK,
    JEQ,
    JGE,
    JMP32,
    JSET,
    LDX,
    LSH,
    MEM,
    MEMSX,
    MOV,
    RSH,
    SIZE,
    SK_MSG,
    SK_SKB,
    ST,
    STX,
    SUB,
    XDP,
    X,
    alu32_imm,
    alu64_imm,
    alu64_reg,
    ja,
    jmp_imm,
    ldx,
)


def _store(si: Instruction, size: int, off: int) -> Instruction:
    """BPF_EMIT_STORE: the same class of store (ST or STX) to another offset."""
    return Instruction((si.code & CLASS_MASK) | MEM | SIZE[size], si.dst_reg, si.src_reg, off,
                       si.imm)  # fmt: skip


def _xdp(si: Instruction, write: bool, lay: Layouts) -> tuple[list[Instruction], int]:
    """xdp_convert_ctx_access: xdp_md's fields are xdp_buff's (reads only)."""
    d, s = si.dst_reg, si.src_reg
    name = _field(XDP_MD, si.off)
    direct = {"data": "xdp_buff.data", "data_meta": "xdp_buff.data_meta",
              "data_end": "xdp_buff.data_end"}  # fmt: skip
    if name in direct:
        spec = direct[name]
        return [ldx(lay.size(spec), d, s, lay.off(spec))], 0
    if name == "ingress_ifindex":
        return [ldx(lay.size("xdp_buff.rxq"), d, s, lay.off("xdp_buff.rxq")),
                ldx(lay.size("xdp_rxq_info.dev"), d, d, lay.off("xdp_rxq_info.dev")),
                ldx(4, d, d, lay.off("net_device.ifindex"))], 0  # fmt: skip
    if name == "rx_queue_index":
        return [ldx(lay.size("xdp_buff.rxq"), d, s, lay.off("xdp_buff.rxq")),
                ldx(4, d, d, lay.off("xdp_rxq_info.queue_index"))], 0  # fmt: skip
    if name == "egress_ifindex":
        return [ldx(lay.size("xdp_buff.txq"), d, s, lay.off("xdp_buff.txq")),
                ldx(lay.size("xdp_txq_info.dev"), d, d, lay.off("xdp_txq_info.dev")),
                ldx(4, d, d, lay.off("net_device.ifindex"))], 0  # fmt: skip
    raise _Unmodelled(f"xdp_md offset {si.off}")


PKT_TYPE_MAX = 7
NO_QUEUE_MAPPING = 0xFFFF
# __sk_buff fields that are one plain load (or store) of a sk_buff member: (member, size)
_SKB_PLAIN = {
    "len": ("len", 4), "protocol": ("protocol", 2), "vlan_proto": ("vlan_proto", 2),
    "priority": ("priority", 4), "ingress_ifindex": ("skb_iif", 4), "hash": ("hash", 4),
    "mark": ("mark", 4), "vlan_tci": ("vlan_tci", 2), "tc_index": ("tc_index", 2),
}  # fmt: skip
# __sk_buff fields of the skb's socket: skb->sk, then one sock_common member (size)
_SKB_SOCK = {
    "family": ("skc_family", 2), "remote_ip4": ("skc_daddr", 4),
    "local_ip4": ("skc_rcv_saddr", 4), "remote_ip6": ("skc_v6_daddr", 4),
    "local_ip6": ("skc_v6_rcv_saddr", 4), "remote_port": ("skc_dport", 2),
    "local_port": ("skc_num", 2),
}  # fmt: skip
#: __sk_buff fields bpf_skb_is_valid_access records no ctx_field_size for (never narrowed)
_WHOLE = frozenset({"cb", "remote_ip6", "local_ip6", "remote_ip4", "local_ip4", "data",
                    "data_meta", "data_end", "flow_keys", "tstamp", "hwtstamp", "sk"})


def _sk_skb_data_end(si: Instruction, lay: Layouts) -> list[Instruction]:
    """bpf_convert_data_end_access: data + len - data_len (a register borrowed and saved
    in the skb's cb when the result overwrites the context pointer)."""
    d, s = si.dst_reg, si.src_reg
    temp = lay.off("sk_buff.cb") + lay.off("sk_skb_cb.temp_reg")
    out, reg = [], d
    if s == d:
        reg = 9
        while reg in (s, d):
            reg -= 1
        out.append(Instruction(STX | MEM | SIZE[8], s, reg, temp))
    out += [ldx(lay.size("sk_buff.data"), reg, s, lay.off("sk_buff.data")),
            ldx(lay.size("sk_buff.len"), AX, s, lay.off("sk_buff.len")),
            alu64_reg(ADD, reg, AX),
            ldx(lay.size("sk_buff.data_len"), AX, s, lay.off("sk_buff.data_len")),
            alu64_reg(SUB, reg, AX)]  # fmt: skip
    if s == d:
        out += [alu64_reg(MOV, AX, s), alu64_reg(MOV, d, reg), ldx(8, reg, AX, temp)]
    return out


def _tstamp(si: Instruction, write: bool, lay: Layouts) -> list[Instruction]:
    """bpf_convert_tstamp_read / _write for a program that never reads tstamp_type: a
    delivery time seen at ingress reads as 0, and a write at ingress clears its type."""
    byte = lay.off("sk_buff.__mono_tc_offset")
    ingress = lay.mask("sk_buff.tc_at_ingress", byte)
    kind = lay.mask("sk_buff.tstamp_type", byte)
    tstamp = lay.off("sk_buff.tstamp")
    if not write:
        d, s = si.dst_reg, si.src_reg
        return [ldx(1, AX, s, byte), jmp_imm(JSET, AX, ingress, 1, JMP32), ja(4),
                jmp_imm(JSET, AX, kind, 1, JMP32), ja(2), alu64_imm(MOV, d, 0), ja(1),
                ldx(8, d, s, tstamp)]  # fmt: skip
    skb = si.dst_reg
    return [ldx(1, AX, skb, byte), jmp_imm(JSET, AX, ingress, 1, JMP32), ja(2),
            alu32_imm(AND, AX, ~kind), Instruction(STX | MEM | SIZE[1], skb, AX, byte),
            Instruction((si.code & CLASS_MASK) | MEM | SIZE[8], skb, si.src_reg, tstamp,
                        si.imm)]  # fmt: skip


def _skb(si: Instruction, write: bool, lay: Layouts, *, tc: bool, sk_skb: bool = False,
         stamp_typed: bool = False) -> tuple[list[Instruction], int]:  # fmt: skip
    """bpf_convert_ctx_access (tc_cls_act_convert_ctx_access when ``tc``,
    sk_skb_convert_ctx_access when ``sk_skb``): the __sk_buff field's sk_buff
    member(s); returns the instructions and target_size."""
    d, s = si.dst_reg, si.src_reg
    name = _field(SK_BUFF, si.off)
    size = BYTES[si.code & 0x18]
    if sk_skb and name == "data_end":
        return _sk_skb_data_end(si, lay), 0
    if sk_skb and name == "cb":
        off = si.off - SK_BUFF["cb"][0] + lay.off("sk_buff.cb") + lay.off("sk_skb_cb.data")
        return [_store(si, size, off) if write else ldx(size, d, s, off)], 0
    if name in _SKB_PLAIN:
        member, width = _SKB_PLAIN[name]
        off = lay.off(f"sk_buff.{member}")
        return [_store(si, width, off) if write else ldx(width, d, s, off)], width
    if name == "ifindex":
        out = [ldx(lay.size("sk_buff.dev"), d, s, lay.off("sk_buff.dev"))]
        if not tc:
            out.append(jmp_imm(JEQ, d, 0, 1))
        return out + [ldx(4, d, d, lay.off("net_device.ifindex"))], 4
    if name == "pkt_type":
        return [ldx(1, d, s, lay.off("sk_buff.__pkt_type_offset")),
                alu32_imm(AND, d, PKT_TYPE_MAX)], 1  # fmt: skip
    if name == "queue_mapping":
        off = lay.off("sk_buff.queue_mapping")
        if not write:
            return [ldx(2, d, s, off)], 2
        if si.code & CLASS_MASK == ST and si.imm & 0xFFFFFFFF >= NO_QUEUE_MAPPING:
            return [ja(0)], 2
        out = [jmp_imm(JGE, si.src_reg, NO_QUEUE_MAPPING, 1)] if si.code & CLASS_MASK == STX \
            else []  # fmt: skip
        return out + [_store(si, 2, off)], 2
    if name == "vlan_present":
        return [ldx(4, d, s, lay.off("sk_buff.vlan_all")), jmp_imm(JEQ, d, 0, 1),
                alu32_imm(MOV, d, 1)], 4  # fmt: skip
    if name == "cb":
        off = si.off - SK_BUFF["cb"][0] + lay.off("sk_buff.cb") + lay.off("qdisc_skb_cb.data")
        return [_store(si, size, off) if write else ldx(size, d, s, off)], 0
    if name == "tc_classid":
        off = si.off - SK_BUFF["tc_classid"][0] + lay.off("sk_buff.cb") + \
            lay.off("qdisc_skb_cb.tc_classid")  # fmt: skip
        return [_store(si, 2, off) if write else ldx(2, d, s, off)], 2
    if name == "data":
        return [ldx(lay.size("sk_buff.data"), d, s, lay.off("sk_buff.data"))], 0
    if name == "sk":
        return [ldx(lay.size("sk_buff.sk"), d, s, lay.off("sk_buff.sk"))], 0
    if name in _SKB_SOCK:
        member, width = _SKB_SOCK[name]
        off = lay.off(f"sock_common.{member}") + si.off - SK_BUFF[name][0]
        out = [ldx(lay.size("sk_buff.sk"), d, s, lay.off("sk_buff.sk")), ldx(width, d, d, off)]
        if name == "remote_port":  # the port in network order, in the upper half
            out.append(alu32_imm(LSH, d, 16))
        return out, width if name not in ("remote_ip6", "local_ip6") else 0
    if name == "napi_id":  # ids below MIN_NAPI_ID are CPU numbers, shown as 0
        min_id = lay.address("min_napi_id")
        if min_id is None:
            raise _Unmodelled("napi_id without MIN_NAPI_ID")
        return [ldx(4, d, s, lay.off("sk_buff.napi_id")), jmp_imm(JGE, d, min_id, 1),
                alu64_imm(MOV, d, 0)], 4  # fmt: skip
    if name == "tstamp":
        if stamp_typed:  # the program reads tstamp_type: tstamp is read and written as is
            return [_store(si, 8, lay.off("sk_buff.tstamp")) if write
                    else ldx(8, d, s, lay.off("sk_buff.tstamp"))], 8  # fmt: skip
        return _tstamp(si, write, lay), 8
    if name == "wire_len":
        off = lay.off("sk_buff.cb") + lay.off("qdisc_skb_cb.pkt_len")
        return [ldx(4, d, s, off)], 4
    if name in ("data_meta", "data_end"):
        off = si.off - SK_BUFF[name][0] + lay.off("sk_buff.cb") + \
            lay.off(f"bpf_skb_data_end.{name}")  # fmt: skip
        return [ldx(8, d, s, off)], 0
    raise _Unmodelled(f"__sk_buff offset {si.off}")


def _sk_msg(si: Instruction, write: bool, lay: Layouts) -> tuple[list[Instruction], int]:
    """sk_msg_convert_ctx_access: sk_msg_md's fields are the sk_msg's, its socket's."""
    d, s = si.dst_reg, si.src_reg
    name = _field(SK_MSG_MD, si.off)
    if name in ("data", "data_end", "sk"):
        spec = f"sk_msg.{name}"
        return [ldx(lay.size(spec), d, s, lay.off(spec))], 0
    if name == "size":
        return [ldx(lay.size("sk_msg_sg.size"), d, s, lay.off("sk_msg_sg.size"))], 0
    if name not in _SKB_SOCK:
        raise _Unmodelled(f"sk_msg_md offset {si.off}")
    member, width = _SKB_SOCK[name]
    off = lay.off(f"sock_common.{member}") + si.off - SK_MSG_MD[name][0]
    out = [ldx(lay.size("sk_msg.sk"), d, s, lay.off("sk_msg.sk")), ldx(width, d, d, off)]
    if name == "remote_port":
        out.append(alu32_imm(LSH, d, 16))
    return out, 0


def _sk_lookup(si: Instruction, write: bool, lay: Layouts) -> tuple[list[Instruction], int]:
    """sk_lookup_convert_ctx_access: bpf_sk_lookup's fields are bpf_sk_lookup_kern's; an
    IPv6 address is read through its pointer (0 when there is none)."""
    d, s = si.dst_reg, si.src_reg
    name = _field(BPF_SK_LOOKUP_CTX, si.off)
    plain = {"sk": "selected_sk", "family": "family", "protocol": "protocol",
             "remote_ip4": "v4.saddr", "local_ip4": "v4.daddr", "remote_port": "sport",
             "local_port": "dport", "ingress_ifindex": "ingress_ifindex"}  # fmt: skip
    if name in plain and si.off == BPF_SK_LOOKUP_CTX[name][0]:
        spec = f"bpf_sk_lookup_kern.{plain[name]}"
        return [ldx(lay.size(spec), d, s, lay.off(spec))], lay.size(spec)
    if name in ("remote_ip6", "local_ip6"):
        spec = f"bpf_sk_lookup_kern.v6.{'saddr' if name == 'remote_ip6' else 'daddr'}"
        word = si.off - BPF_SK_LOOKUP_CTX[name][0]  # s6_addr32[i] of struct in6_addr
        return [ldx(lay.size(spec), d, s, lay.off(spec)), jmp_imm(JEQ, d, 0, 1),
                ldx(4, d, d, word)], 4  # fmt: skip
    if name == "_pad":  # the zero padding after remote_port
        return [alu32_imm(MOV, d, 0)], 2
    raise _Unmodelled(f"bpf_sk_lookup offset {si.off}")


def _sk_lookup_field_size(name: str, size: int) -> int:
    """sk_lookup_is_valid_access's ctx_field_size: remote_port and its padding 2 (none
    for a 4-byte remote_port read), sk none, the others 4."""
    if name in ("remote_port", "_pad"):
        return 0 if name == "remote_port" and size == 4 else 2
    return 0 if name == "sk" else 4


#: sk_reuseport_md fields that are a member of the skb or of the socket: (pointer, member)
_REUSEPORT_NESTED = {"data": ("skb", "sk_buff.data"), "len": ("skb", "sk_buff.len"),
                     "eth_protocol": ("skb", "sk_buff.protocol"),
                     "ip_protocol": ("sk", "sock.sk_protocol")}  # fmt: skip


def _sk_reuseport(si: Instruction, write: bool, lay: Layouts) -> tuple[list[Instruction], int]:
    """sk_reuseport_convert_ctx_access: sk_reuseport_md's fields are sk_reuseport_kern's,
    or a member of its skb or its socket (SOCK_ADDR_LOAD_NESTED_FIELD)."""
    d, s = si.dst_reg, si.src_reg
    name = _field(SK_REUSEPORT_MD, si.off)
    if si.off != SK_REUSEPORT_MD.get(name, (None,))[0]:
        raise _Unmodelled(f"sk_reuseport_md offset {si.off}")
    if name in _REUSEPORT_NESTED:
        ptr, spec = _REUSEPORT_NESTED[name]
        outer = f"sk_reuseport_kern.{ptr}"
        return [ldx(lay.size(outer), d, s, lay.off(outer)),
                ldx(lay.size(spec), d, d, lay.off(spec))], lay.size(spec)  # fmt: skip
    spec = f"sk_reuseport_kern.{name}"
    return [ldx(lay.size(spec), d, s, lay.off(spec))], lay.size(spec)


def _sk_reuseport_field_size(name: str, size: int) -> int:
    """sk_reuseport_is_valid_access's ctx_field_size: 4 for the narrowable fields."""
    return 4 if name in ("len", "eth_protocol", "ip_protocol", "bind_inany") else 0


def _whole(name: str, size: int) -> int:
    """No ctx_field_size: loads are never narrowed."""
    return 0


def _skb_field_size(name: str, size: int) -> int:
    """bpf_skb_is_valid_access's ctx_field_size (0: none recorded, the load is not narrowed)."""
    return 0 if name in _WHOLE else SK_BUFF[name][1]


# struct bpf_sock (include/uapi/linux/bpf.h) -> its struct sock / sock_common member
_SOCK_FIELDS = {
    "bound_dev_if": "sock_common.skc_bound_dev_if", "mark": "sock.sk_mark",
    "priority": "sock.sk_priority", "family": "sock_common.skc_family",
    "type": "sock.sk_type", "protocol": "sock.sk_protocol",
    "src_ip4": "sock_common.skc_rcv_saddr", "dst_ip4": "sock_common.skc_daddr",
    "src_ip6": "sock_common.skc_v6_rcv_saddr", "dst_ip6": "sock_common.skc_v6_daddr",
    "src_port": "sock_common.skc_num", "dst_port": "sock_common.skc_dport",
    "state": "sock_common.skc_state",
}  # fmt: skip
_SOCK_AS_LOADED = ("src_ip4", "dst_ip4", "src_ip6", "dst_ip6")  # loaded at the access's size


def _sock_field_size(name: str, size: int) -> int:
    """bpf_sock_is_valid_access's ctx_field_size: 4 for the narrowable fields, dst_port 2
    unless read whole."""
    if name == "dst_port":
        return 4 if size == 4 else 2
    narrowable = ("state", "family", "type", "protocol", "src_port", "rx_queue_mapping")
    return 4 if name in narrowable or name in _SOCK_AS_LOADED else 0


def _sock(si: Instruction, write: bool, lay: Layouts) -> tuple[list[Instruction], int]:
    """bpf_sock_convert_ctx_access: struct bpf_sock's fields are the socket's."""
    d, s = si.dst_reg, si.src_reg
    name = _field(BPF_SOCK, si.off)
    spec = _SOCK_FIELDS.get(name)
    if spec is None:
        raise _Unmodelled(f"bpf_sock offset {si.off}")
    off = lay.off(spec) + si.off - BPF_SOCK[name][0]
    width = BYTES[si.code & 0x18] if name in _SOCK_AS_LOADED else lay.size(spec)
    if write:
        return [_store(si, 4, off)], 4
    return [ldx(width, d, s, off)], 4 if name in _SOCK_AS_LOADED else width


# struct bpf_tcp_sock's fields with a tcp_sock member of the same name
BPF_TCP_SOCK = layout(
    *u32s("snd_cwnd srtt_us rtt_min snd_ssthresh rcv_nxt snd_nxt snd_una mss_cache ecn_flags"
          " rate_delivered rate_interval_us packets_out retrans_out total_retrans segs_in"
          " data_segs_in segs_out data_segs_out lost_out sacked_out"),
    ("bytes_received", 8, 8), ("bytes_acked", 8, 8),
    *u32s("dsack_dups delivered delivered_ce icsk_retransmits"),
)  # fmt: skip
_TCP_SAME = frozenset(BPF_TCP_SOCK) - {"rtt_min", "delivered_ce", "icsk_retransmits"}


def _tcp_sock(si: Instruction, write: bool, lay: Layouts) -> tuple[list[Instruction], int]:
    """bpf_tcp_sock_convert_ctx_access (BPF_TCP_SOCK_GET_COMMON): the tcp_sock member."""
    name = _field(BPF_TCP_SOCK, si.off)
    if name not in _TCP_SAME or write:
        raise _Unmodelled(f"bpf_tcp_sock offset {si.off}")
    spec = f"tcp_sock.{name}"
    return [ldx(lay.size(spec), si.dst_reg, si.src_reg, lay.off(spec))], 0


def _xdp_sock(si: Instruction, write: bool, lay: Layouts) -> tuple[list[Instruction], int]:
    """bpf_xdp_sock_convert_ctx_access: queue_id is the xdp_sock's."""
    spec = "xdp_sock.queue_id"
    return [ldx(lay.size(spec), si.dst_reg, si.src_reg, lay.off(spec))], 0


class _Unmodelled(Exception):
    """A rewrite this module does not know: the instruction is shown as it is."""


def _field(lay: Mapping[str, tuple[int, int]], off: int) -> str:
    for name, (start, size) in lay.items():
        if start <= off < start + size:
            return name
    return ""


_SKB_TYPES = {SOCKET_FILTER: False, SCHED_CLS: True, SCHED_ACT: True, CGROUP_SKB: False,
              LWT_IN: False, LWT_OUT: False, LWT_XMIT: False, SK_SKB: False}  # fmt: skip


def ctx_patch(prog_type: int | str, si: Instruction, lay: Layouts, *,
               stamp_typed: bool = False) -> list[Instruction] | None:  # fmt: skip
    """convert_ctx_accesses for one context access (None: shown unchanged);
    ``stamp_typed``: the program reads __sk_buff's tstamp_type (prog->tstamp_type_access)."""
    cls, mode = si.code & CLASS_MASK, si.code & 0xE0
    write = cls in (ST, STX)
    if cls not in (LDX, ST, STX) or mode not in (MEM, MEMSX):
        return None
    size = BYTES[si.code & 0x18]
    narrowable: Callable[[str, int], int] = _skb_field_size
    if prog_type == XDP:
        ctx, convert = XDP_MD, _xdp
    elif prog_type in ("sock", CGROUP_SOCK):
        ctx, convert, narrowable = BPF_SOCK, _sock, _sock_field_size
    elif prog_type == SK_MSG:
        ctx, convert, narrowable = SK_MSG_MD, _sk_msg, _whole
    elif prog_type == SK_LOOKUP:
        ctx, convert, narrowable = BPF_SK_LOOKUP_CTX, _sk_lookup, _sk_lookup_field_size
    elif prog_type == SK_REUSEPORT:
        ctx, convert, narrowable = SK_REUSEPORT_MD, _sk_reuseport, _sk_reuseport_field_size
    elif prog_type == "tcp_sock":
        ctx, convert, narrowable = BPF_TCP_SOCK, _tcp_sock, _whole
    elif prog_type == "xdp_sock":
        ctx, convert, narrowable = {"queue_id": (0, 4)}, _xdp_sock, _whole
    elif prog_type in _SKB_TYPES:
        tc = _SKB_TYPES[prog_type]
        ctx = SK_BUFF

        def convert(i, w, lay_):
            return _skb(i, w, lay_, tc=tc, sk_skb=prog_type == SK_SKB,
                        stamp_typed=stamp_typed)
    else:
        return None
    name = _field(ctx, si.off)
    if not name:
        return None
    field_size = 0 if prog_type == XDP else narrowable(name, size) or 0
    narrow = not write and size < field_size
    insn = si
    if narrow:  # load the whole field, then shift and mask (is_narrower_load)
        insn = replace(si, code=LDX | MEM | SIZE[field_size], off=si.off & ~(field_size - 1))
    try:
        out, target = convert(insn, write, lay)
    except _Unmodelled:
        return None
    if narrow and size < target:
        shift = (si.off & (field_size - 1)) * 8
        if shift:
            out.append(alu32_imm(RSH, si.dst_reg, shift) if field_size <= 4
                       else alu64_imm(RSH, si.dst_reg, shift))  # fmt: skip
        out.append(alu32_imm(AND, si.dst_reg, (1 << size * 8) - 1))
    if mode == MEMSX:
        out.append(Instruction(ALU64 | MOV | X, si.dst_reg, si.dst_reg, size * 8))
    return out


