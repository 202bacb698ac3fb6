"""The kernel's last rewrites of a verified program, as ``bpftool prog dump xlated`` shows them.

After ``do_check`` and the dead-code passes (:mod:`.xlate`), ``bpf_check`` rewrites
the image once more before it is kept, and ``bpf_prog_info.xlated_prog_insns`` (so
``prog dump xlated`` and ``bytes_xlated``) shows the result:

* ``convert_ctx_accesses``: a load or store through the context pointer becomes
  accesses of the kernel's own struct (``xdp_md->data_end`` is ``xdp_buff->data_end``,
  an 8-byte load at another offset; ``__sk_buff->ifindex`` is ``skb->dev->ifindex``,
  three instructions), a narrower load of a field loads it whole and then shifts and
  masks (``xdp_convert_ctx_access``, ``bpf_convert_ctx_access``,
  ``tc_cls_act_convert_ctx_access`` in net/core/filter.c);
* ``do_misc_fixups``: division and modulo by a register get their zero guards,
  LD_ABS / LD_IND become calls of the skb load helpers (``bpf_gen_ld_abs``), a map
  lookup is inlined by the map's ``map_gen_lookup`` (array, hash, LRU hash), the
  other map helpers call the map's own operation (``htab_map_update_elem``) and every
  helper call names the kernel function that implements it.

pybpf's engines keep executing the image before these rewrites (with the uapi
context layouts): this module only builds the *shown* image, a pure function of the
kept image, the verifier's per-instruction facts (which accesses go through the
context, which map a helper call was given) and the kernel's struct layouts
(:mod:`pybpf.uapi.klayout`).  Branches, subprogram starts and line info move as
``bpf_patch_insn_data`` moves them: a jump to a rewritten instruction lands on the
first instruction of its replacement.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pybpf.isa import Instruction, slot_offsets
from pybpf.isa.helper_ids import helper_id, helper_name
from pybpf.isa.opcodes import CLASS_MASK, OP_MASK
from pybpf.uapi.klayout import Layouts, snapshot
from pybpf.verifier import ctx as ctxrules
from pybpf.verifier import mapcompat as M
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
from pybpf.verifier.ctx_sock import SK_MSG_MD
from pybpf.verifier.ctx_xdp import XDP_MD
from pybpf.verifier.helper_protos import kernel_symbols
from pybpf.verifier.slots import Slot, branch_field, to_instructions, to_slots
from pybpf.verifier.types import Base

XDP, CGROUP_SOCK, SK_SKB, SK_MSG = 6, 9, 14, 16
AX = 11  # BPF_REG_AX, the kernel's scratch register
# opcode pieces (include/uapi/linux/bpf.h)
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
MEM, MEMSX, ABS, IND = 0x60, 0x80, 0x20, 0x40
SIZE = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}  # BPF_B, BPF_H, BPF_W, BPF_DW
BYTES = {v: k for k, v in SIZE.items()}
ADD, SUB, MUL, DIV, AND, LSH, RSH, NEG, MOD, XOR, MOV = (
    0x00, 0x10, 0x20, 0x30, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0)  # fmt: skip
JA, JEQ, JGT, JGE, JSET, JNE, JSGE, JLE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x70, 0xB0
PSEUDO_CALL = 1
K, X = 0x00, 0x08
CALL, EXIT = 0x85, 0x95


# --- instruction builders (the kernel's BPF_* macros) ------------------------------------
def ldx(size: int, dst: int, src: int, off: int) -> Instruction:
    return Instruction(LDX | MEM | SIZE[size], dst, src, off)


def alu64_imm(op: int, dst: int, imm: int) -> Instruction:
    return Instruction(ALU64 | op | K, dst, 0, 0, imm)


def alu32_imm(op: int, dst: int, imm: int) -> Instruction:
    return Instruction(ALU | op | K, dst, 0, 0, imm)


def alu64_reg(op: int, dst: int, src: int) -> Instruction:
    return Instruction(ALU64 | op | X, dst, src)


def jmp_imm(op: int, dst: int, imm: int, off: int, cls: int = JMP) -> Instruction:
    return Instruction(cls | op | K, dst, 0, off, imm)


def ja(off: int) -> Instruction:
    return Instruction(JMP | JA, 0, 0, off)


def call(imm: int = 0) -> Instruction:
    return Instruction(CALL, 0, 0, 0, imm)


@dataclass(frozen=True)
class Site:
    """What the verifier knew of one instruction of the kept image.

    ``ptr``: the load or store goes through the context pointer or a socket
    (insn_aux_data's ``ptr_type``: PTR_TO_CTX, PTR_TO_SOCKET / SOCK_COMMON, TCP_SOCK,
    XDP_SOCK); ``map``: the one map a helper call was given
    (``map_ptr_state``; None when none or when paths gave different maps); ``loop``:
    the callback of a bpf_loop call every path made with the same callback and zero
    flags (``loop_inline_state.fit_for_inline``), with the ``stack_depth`` of the
    subprogram making it.
    """

    ptr: str | None = None  # "ctx", "sock", "tcp_sock" or "xdp_sock": what a load goes through
    map: object | None = None
    loop: int | None = None  # a bpf_loop call fit to inline: its callback's pc
    stack_depth: int = 0  # the stack bytes of the subprogram holding a bpf_loop call


@dataclass(frozen=True)
class View:
    """The image ``prog dump xlated`` shows.

    ``symbols`` names, by pc, the kernel function each helper call reaches
    (``__htab_map_lookup_elem``, ``bpf_trace_printk``); ``pc_map`` maps every pc of
    the kept image to the pc of its replacement's first instruction.
    """

    insns: tuple[Instruction, ...]
    symbols: Mapping[int, str] = field(default_factory=dict)
    pc_map: Mapping[int, int] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        return sum(i.slots for i in self.insns)


# A patch: the replacement instructions, each with the kernel function a call reaches.
# An instruction may instead carry a ``Target``: a branch aimed at a pc of the kept image.
Patch = list[tuple[Instruction, "str | Target | None"]]


@dataclass(frozen=True)
class Target:
    """The pc of the kept image a branch of a patch goes to (moved with the image)."""

    pc: int


# --- convert_ctx_accesses ------------------------------------------------------------------
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


def _ctx_patch(prog_type: int | str, si: Instruction, lay: Layouts, *,
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


# --- do_misc_fixups ------------------------------------------------------------------------
def _div_guard(si: Instruction) -> list[Instruction] | None:
    """Division and modulo by a register: the zero (and signed -1) guards."""
    cls, op = si.code & CLASS_MASK, si.code & OP_MASK
    if cls not in (ALU, ALU64) or op not in (DIV, MOD):
        return None
    is64, isdiv, signed = cls == ALU64, op == DIV, si.off == 1
    jcls, acls = (JMP, ALU64) if is64 else (JMP32, ALU)
    d = si.dst_reg
    if si.code & X == K:
        if signed and si.imm == -1:  # x s/ -1 is -x, x s% -1 is 0
            return [Instruction(acls | NEG | K, d)] if isdiv else [Instruction(ALU | MOV | K, d)]
        return None
    s = si.src_reg
    if signed and isdiv:
        return [alu64_reg(MOV, AX, s), Instruction(acls | ADD | K, AX, 0, 0, 1),
                jmp_imm(JGT, AX, 1, 4, jcls), jmp_imm(JEQ, AX, 0, 1, jcls),
                Instruction(acls | MOV | K, d), Instruction(acls | NEG | K, d), ja(1), si]
    if signed:
        out = [alu64_reg(MOV, AX, s), Instruction(acls | ADD | K, AX, 0, 0, 1),
               jmp_imm(JGT, AX, 1, 3, jcls), jmp_imm(JEQ, AX, 1, 3 + (0 if is64 else 1), jcls),
               Instruction(ALU | MOV | K, d), ja(1), si, ja(1),
               Instruction(ALU | MOV | X, d, d)]  # fmt: skip
        return out[:-2] if is64 else out
    if isdiv:
        return [jmp_imm(JNE, s, 0, 2, jcls), Instruction(ALU | XOR | X, d, d), ja(1), si]
    out = [jmp_imm(JEQ, s, 0, 1 + (0 if is64 else 1), jcls), si, ja(1),
           Instruction(ALU | MOV | X, d, d)]  # fmt: skip
    return out[:-2] if is64 else out


def _ld_abs(si: Instruction) -> Patch:
    """bpf_gen_ld_abs: LD_ABS / LD_IND call bpf_skb_load_helper_*_no_cache on R6."""
    out: Patch = []
    if si.code & 0xE0 == ABS:
        out.append((alu64_imm(MOV, 2, si.imm), None))
    else:
        out.append((alu64_reg(MOV, 2, si.src_reg), None))
        if si.imm:
            out.append((alu64_imm(ADD, 2, si.imm), None))
    out.append((alu64_reg(MOV, 1, 6), None))
    bits = 8 * BYTES[si.code & 0x18]
    out.append((call(), f"bpf_skb_load_helper_{bits}_no_cache"))
    out += [(jmp_imm(JSGE, 0, 0, 2), None), (Instruction(ALU | XOR | X, 0, 0), None),
            (Instruction(EXIT), None)]
    return out


MAX_LOOPS = 8 * 1024 * 1024  # BPF_MAX_LOOPS
E2BIG = 7


def _inline_loop(callback: int, stack_depth: int) -> Patch:
    """inline_bpf_loop (optimize_bpf_loop): the loop in place, R6-R8 spilled below the
    subprogram's stack for the bound, the counter and the context."""
    base = -(stack_depth + 24 + _round8(stack_depth) - stack_depth)
    r6, r7, r8 = base, base + 8, base + 16
    out: Patch = [(jmp_imm(JLE, 1, MAX_LOOPS, 2), None), (alu32_imm(MOV, 0, -E2BIG), None),
                  (ja(16), None)]
    out += [(Instruction(STX | MEM | SIZE[8], 10, r, off), None)
            for r, off in ((6, r6), (7, r7), (8, r8))]
    out += [(alu64_reg(MOV, 6, 1), None), (alu32_imm(MOV, 7, 0), None),
            (alu64_reg(MOV, 8, 3), None), (Instruction(JMP | JGE | X, 7, 6, 5), None),
            (alu64_reg(MOV, 1, 7), None), (alu64_reg(MOV, 2, 8), None),
            (Instruction(CALL, 0, PSEUDO_CALL), Target(callback)),
            (alu64_imm(ADD, 7, 1), None), (jmp_imm(JEQ, 0, 0, -6), None),
            (alu64_reg(MOV, 0, 7), None)]
    out += [(ldx(8, r, 10, off), None) for r, off in ((6, r6), (7, r7), (8, r8))]
    return out


def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


def _array_lookup(m, lay: Layouts) -> Patch | None:
    """array_map_gen_lookup (a privileged loader: no Spectre index masking)."""
    if getattr(m, "map_flags", 0) & INNER_MAP:
        return None
    elem = _round8(m.value_size)
    scale = alu64_imm(LSH, 0, elem.bit_length() - 1) if elem & (elem - 1) == 0 \
        else alu64_imm(MUL, 0, elem)  # fmt: skip
    out = [alu64_imm(ADD, 1, lay.off("bpf_array.value")), ldx(4, 0, 2, 0),
           jmp_imm(JGE, 0, m.max_entries, 3), scale, alu64_reg(ADD, 0, 1), ja(1),
           alu64_imm(MOV, 0, 0)]  # fmt: skip
    return [(i, None) for i in out]


def _htab_lookup(m, lay: Layouts) -> Patch:
    """htab_map_gen_lookup."""
    value = lay.off("htab_elem.key") + _round8(m.key_size)
    return [(call(LOOKUP), "__htab_map_lookup_elem"), (jmp_imm(JEQ, 0, 0, 1), None),
            (alu64_imm(ADD, 0, value), None)]


def _lru_lookup(m, lay: Layouts) -> Patch:
    """htab_lru_map_gen_lookup: the element's LRU ref bit is set on the way."""
    ref = lay.off("htab_elem.lru_node") + lay.off("bpf_lru_node.ref")
    value = lay.off("htab_elem.key") + _round8(m.key_size)
    return [(call(LOOKUP), "__htab_map_lookup_elem"), (jmp_imm(JEQ, 0, 0, 4), None),
            (ldx(1, 1, 0, ref), None), (jmp_imm(JNE, 1, 0, 1), None),
            (Instruction(ST | MEM | SIZE[1], 0, 0, ref, 1), None),
            (alu64_imm(ADD, 0, value), None)]


def _array_of_maps_lookup(m, lay: Layouts) -> Patch:
    """array_of_map_gen_lookup: the array's slot, then the inner map it holds (or NULL)."""
    out = [alu64_imm(ADD, 1, lay.off("bpf_array.value")), ldx(4, 0, 2, 0),
           jmp_imm(JGE, 0, m.max_entries, 5), alu64_imm(LSH, 0, 3), alu64_reg(ADD, 0, 1),
           ldx(8, 0, 0, 0), jmp_imm(JEQ, 0, 0, 1), ja(1), alu64_imm(MOV, 0, 0)]  # fmt: skip
    return [(i, None) for i in out]


def _xsk_lookup(m, lay: Layouts) -> Patch:
    """xsk_map_gen_lookup: the socket in the map's slot."""
    out = [ldx(4, 0, 2, 0), jmp_imm(JGE, 0, m.max_entries, 5, JMP32), alu64_imm(LSH, 0, 3),
           alu64_imm(ADD, 1, lay.off("xsk_map.xsk_map")), alu64_reg(ADD, 0, 1),
           ldx(8, 0, 0, 0), ja(1), alu64_imm(MOV, 0, 0)]  # fmt: skip
    return [(i, None) for i in out]


INNER_MAP = 1 << 12  # BPF_F_INNER_MAP
LOOKUP = helper_id("map_lookup_elem") or 1
_GEN_LOOKUP: dict[int, Callable[[object, Layouts], Patch | None]] = {
    M.ARRAY: _array_lookup, M.HASH: _htab_lookup, M.LRU_HASH: _lru_lookup,
    M.ARRAY_OF_MAPS: _array_of_maps_lookup, M.XSKMAP: _xsk_lookup,
}  # fmt: skip

# The map operations a map helper reaches (struct bpf_map_ops, kernel/bpf/*.c):
# map type -> (lookup, update, delete) function names.
_OPS: dict[int, tuple[str | None, str | None, str | None]] = {
    M.HASH: ("htab_map_lookup_elem", "htab_map_update_elem", "htab_map_delete_elem"),
    M.ARRAY: ("array_map_lookup_elem", "array_map_update_elem", "array_map_delete_elem"),
    M.PROG_ARRAY: ("fd_array_map_lookup_elem", None, "fd_array_map_delete_elem"),
    M.PERF_EVENT_ARRAY: ("fd_array_map_lookup_elem", None, "fd_array_map_delete_elem"),
    M.PERCPU_HASH: ("htab_percpu_map_lookup_elem", "htab_percpu_map_update_elem",
                    "htab_map_delete_elem"),
    M.PERCPU_ARRAY: ("percpu_array_map_lookup_elem", "array_map_update_elem",
                     "array_map_delete_elem"),
    M.LRU_HASH: ("htab_lru_map_lookup_elem", "htab_lru_map_update_elem",
                 "htab_lru_map_delete_elem"),
    M.LRU_PERCPU_HASH: ("htab_lru_percpu_map_lookup_elem", "htab_lru_percpu_map_update_elem",
                        "htab_lru_map_delete_elem"),
    M.LPM_TRIE: ("trie_lookup_elem", "trie_update_elem", "trie_delete_elem"),
    M.ARRAY_OF_MAPS: ("array_of_map_lookup_elem", None, "fd_array_map_delete_elem"),
    M.HASH_OF_MAPS: ("htab_of_map_lookup_elem", None, "htab_map_delete_elem"),
    M.QUEUE: ("queue_stack_map_lookup_elem", "queue_stack_map_update_elem",
              "queue_stack_map_delete_elem"),
    M.STACK: ("queue_stack_map_lookup_elem", "queue_stack_map_update_elem",
              "queue_stack_map_delete_elem"),
    M.RINGBUF: ("ringbuf_map_lookup_elem", "ringbuf_map_update_elem",
                "ringbuf_map_delete_elem"),
    M.DEVMAP: ("dev_map_lookup_elem", "dev_map_update_elem", "dev_map_delete_elem"),
    M.CPUMAP: ("cpu_map_lookup_elem", "cpu_map_update_elem", "cpu_map_delete_elem"),
    M.XSKMAP: ("xsk_map_lookup_elem", "xsk_map_update_elem", "xsk_map_delete_elem"),
    M.SOCKMAP: ("sock_map_lookup", "sock_map_update_elem", "sock_map_delete_elem"),
    M.SOCKHASH: ("sock_hash_lookup", "sock_map_update_elem", "sock_hash_delete_elem"),
    M.BLOOM_FILTER: ("bloom_map_lookup_elem", "bloom_map_update_elem", "bloom_map_delete_elem"),
}  # fmt: skip
_OTHER_OPS = {  # helper name -> {map type: function}
    "map_push_elem": {M.QUEUE: "queue_stack_map_push_elem", M.STACK: "queue_stack_map_push_elem",
                      M.BLOOM_FILTER: "bloom_map_push_elem"},
    "map_pop_elem": {M.QUEUE: "queue_map_pop_elem", M.STACK: "stack_map_pop_elem"},
    "map_peek_elem": {M.QUEUE: "queue_map_peek_elem", M.STACK: "stack_map_peek_elem",
                      M.BLOOM_FILTER: "bloom_map_peek_elem"},
    "redirect_map": {M.DEVMAP: "dev_map_redirect", M.DEVMAP_HASH: "dev_hash_map_redirect",
                     M.CPUMAP: "cpu_map_redirect", M.XSKMAP: "xsk_map_redirect"},
    "for_each_map_elem": {M.ARRAY: "bpf_for_each_array_elem",
                          M.PERCPU_ARRAY: "bpf_for_each_array_elem",
                          M.HASH: "bpf_for_each_hash_elem", M.LRU_HASH: "bpf_for_each_hash_elem",
                          M.PERCPU_HASH: "bpf_for_each_hash_elem",
                          M.LRU_PERCPU_HASH: "bpf_for_each_hash_elem"},
}  # fmt: skip
_OPS_INDEX = {"map_lookup_elem": 0, "map_update_elem": 1, "map_delete_elem": 2}

# Helper protos whose ``.func`` is not the proto's name without ``_proto`` (the kernel's
# bpf_func_proto definitions, kernel/bpf/helpers.c, kernel/trace/bpf_trace.c, net/core/filter.c)
_FUNCS = {
    "bpf_get_prandom_u32_proto": "bpf_user_rnd_u32",
    "bpf_get_raw_smp_processor_id_proto": "bpf_get_raw_cpu_id",
    "bpf_get_func_arg_proto": "get_func_arg", "bpf_get_func_ret_proto": "get_func_ret",
    "bpf_get_func_arg_cnt_proto": "get_func_arg_cnt",
    "bpf_get_attach_cookie_proto_kmulti": "bpf_get_attach_cookie_kprobe_multi",
    "bpf_get_attach_cookie_proto_umulti": "bpf_get_attach_cookie_uprobe_multi",
    "bpf_sk_storage_get_cg_sock_proto": "bpf_sk_storage_get",
    "bpf_skb_output_proto": "bpf_skb_event_output", "bpf_xdp_output_proto": "bpf_xdp_event_output",
    "bpf_xdp_get_buff_len_trace_proto": "bpf_xdp_get_buff_len",
    "rc_keydown_proto": "bpf_rc_keydown", "rc_pointer_rel_proto": "bpf_rc_pointer_rel",
    "rc_repeat_proto": "bpf_rc_repeat",
}  # fmt: skip


_SKB_OUT = {"perf_event_output": "bpf_skb_event_output_proto"}
_TC = {**_SKB_OUT, "fib_lookup": "bpf_skb_fib_lookup_proto",
       "check_mtu": "bpf_skb_check_mtu_proto", "sk_lookup_tcp": "bpf_tc_sk_lookup_tcp_proto",
       "sk_lookup_udp": "bpf_tc_sk_lookup_udp_proto",
       "skc_lookup_tcp": "bpf_tc_skc_lookup_tcp_proto"}  # fmt: skip
_RAW_TP = {"perf_event_output": "bpf_perf_event_output_proto_raw_tp",
           "get_stackid": "bpf_get_stackid_proto_raw_tp",
           "get_stack": "bpf_get_stack_proto_raw_tp"}  # fmt: skip
# The protos program types get that have the common prototype but another function
# (the verifier's tables list only the protos that differ in shape).
_SAME_SHAPE = {
    XDP: {"perf_event_output": "bpf_xdp_event_output_proto", "redirect": "bpf_xdp_redirect_proto",
          "redirect_map": "bpf_xdp_redirect_map_proto", "fib_lookup": "bpf_xdp_fib_lookup_proto",
          "check_mtu": "bpf_xdp_check_mtu_proto", "sk_lookup_tcp": "bpf_xdp_sk_lookup_tcp_proto",
          "sk_lookup_udp": "bpf_xdp_sk_lookup_udp_proto",
          "skc_lookup_tcp": "bpf_xdp_skc_lookup_tcp_proto"},
    SCHED_CLS: _TC, SCHED_ACT: _TC, SOCKET_FILTER: _SKB_OUT, CGROUP_SKB: _SKB_OUT,
    LWT_IN: _SKB_OUT, LWT_OUT: _SKB_OUT, LWT_XMIT: _SKB_OUT,
    5: {"perf_event_output": "bpf_perf_event_output_proto_tp",
        "get_stackid": "bpf_get_stackid_proto_tp", "get_stack": "bpf_get_stack_proto_tp"},
    17: _RAW_TP, 24: _RAW_TP,
}  # fmt: skip


def function_of(proto: str) -> str:
    """The kernel function a helper proto object calls (``bpf_x_proto_tp``: ``bpf_x_tp``)."""
    return _FUNCS.get(proto) or proto.replace("_proto_", "_").removesuffix("_proto")


def helper_symbol(func_id: int, prog_type: int) -> str | None:
    """The kernel function a helper call of ``prog_type`` reaches (None: unknown id):
    that of the proto the program type's ``get_func_proto`` returns for it."""
    name = helper_name(func_id)
    if name is None:
        return None
    type_ops = ctxrules.ops(prog_type)
    variants = {**_SAME_SHAPE.get(prog_type, {}),
                **(type_ops.helpers.variants if type_ops is not None else {})}
    protos = kernel_symbols(f"bpf_{name}")  # a helper with one proto everywhere has it
    return function_of(variants.get(name, protos[0] if len(protos) == 1 else f"bpf_{name}_proto"))


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _cpu_id(address: int) -> list[Instruction]:
    """bpf_get_smp_processor_id inlined: this CPU's ``cpu_number`` (a per-CPU load)."""
    return [alu64_imm(MOV, 0, _s32(address)), Instruction(ALU64 | MOV | X, 0, 0, PERCPU),
            ldx(4, 0, 0, 0)]  # fmt: skip


def _jiffies(address: int) -> list[Instruction]:
    """bpf_jiffies64 inlined: a load of ``jiffies``."""
    return [Instruction(LDDW, 0, 0, 0, _s32(address), _s32(address >> 32)), ldx(8, 0, 0, 0)]


GFP_ATOMIC = 0x820  # __GFP_HIGH | __GFP_KSWAPD_RECLAIM
_STORAGE_GET = frozenset({"sk_storage_get", "inode_storage_get", "task_storage_get",
                          "cgrp_storage_get"})
PERCPU = -1  # BPF_ADDR_PERCPU
LDDW = 0x18
#: helpers do_misc_fixups inlines on x86-64: (the address they load, the instructions)
_INLINED = {"get_smp_processor_id": ("cpu_number", _cpu_id), "jiffies64": ("jiffies", _jiffies)}


def _call_patch(si: Instruction, site: Site, prog_type: int, lay: Layouts) -> Patch | None:
    """A helper call: inlined map lookup, the map's own operation, or the helper's function."""
    if si.code != CALL or si.src_reg != 0:
        return None
    name = helper_name(si.imm)
    if name is None:
        return None
    m = site.map
    if m is not None:
        mtype = getattr(m, "map_type", None)
        mtype = int(mtype) if mtype is not None else None
        if name == "map_lookup_elem" and mtype in _GEN_LOOKUP:
            patch = _GEN_LOOKUP[mtype](m, lay)
            if patch is not None:
                return patch
        if name in _OPS_INDEX and mtype in _OPS:
            fn = _OPS[mtype][_OPS_INDEX[name]]
            if fn is not None:
                return [(si, fn)]
        if name in _OTHER_OPS and mtype in _OTHER_OPS[name]:
            return [(si, _OTHER_OPS[name][mtype])]
    if name in _STORAGE_GET:  # the hidden fifth argument: GFP_ATOMIC (not sleepable)
        return [(alu64_imm(MOV, 5, GFP_ATOMIC), None), (si, helper_symbol(si.imm, prog_type))]
    inline = _INLINED.get(name)
    if inline is not None:
        address = lay.address(inline[0])
        if address is not None:
            return [(i, None) for i in inline[1](address)]
    if name == "tail_call":  # bpf_insn_prepare_dump shows BPF_TAIL_CALL as this call again
        return [(si, None)]
    return [(si, helper_symbol(si.imm, prog_type))]


_PTRS = {Base.PTR_TO_CTX: "ctx", Base.PTR_TO_SOCKET: "sock", Base.PTR_TO_SOCK_COMMON: "sock",
         Base.PTR_TO_TCP_SOCK: "tcp_sock", Base.PTR_TO_XDP_SOCK: "xdp_sock"}  # fmt: skip


def sites(checker, pc_map: Mapping[int, int]) -> dict[int, Site]:
    """The verifier's per-instruction facts (``aux_ptr``, ``aux_map`` of a finished
    :class:`~pybpf.verifier.check.Checker`), by pc of the kept image (``pc_map``)."""
    ctx = {pc: _PTRS[base] for pc, (base, _) in checker.aux_ptr.items() if base in _PTRS}
    loops = {pc: start for pc, (start, fit) in checker.aux_loop.items() if fit}
    out: dict[int, Site] = {}
    for pc in set(ctx) | set(checker.aux_map) | set(loops):
        if pc not in pc_map:
            continue
        loop, depth = loops.get(pc), 0
        if loop is not None:
            loop = pc_map.get(loop)
            subs = checker.structure.subprogs
            index = next(i for i, s in enumerate(subs) if s.start <= pc < s.end)
            depth = checker.depths.get(index, 0)
        out[pc_map[pc]] = Site(ptr=ctx.get(pc), map=checker.aux_map.get(pc), loop=loop,
                               stack_depth=depth)  # fmt: skip
    return out


def subprog_depths(checker, pc_map: Mapping[int, int]) -> dict[int, int]:
    """Each kept subprogram's start (pc of the kept image) -> the stack bytes it uses."""
    out = {}
    for i, sub in enumerate(checker.structure.subprogs):
        if sub.start in pc_map:
            out[pc_map[sub.start]] = checker.depths.get(i, 0)
    return out


MAY_GOTO = 0xE5
MAX_TIMED_LOOPS = 0xFFFF  # BPF_MAX_TIMED_LOOPS


def _may_goto(si: Instruction, pc: int, depth: int) -> Patch:
    """A may_goto with the x86-64 JIT's timed loop budget: a count in the two stack slots
    below the subprogram's, refilled by arch_bpf_timed_may_goto until time runs out."""
    cnt = -_round8(depth) - 16
    out_of_budget = Target(pc + 1 + si.off)
    return [(ldx(8, AX, 10, cnt), None), (jmp_imm(JEQ, AX, 0, 0), out_of_budget),
            (alu64_imm(SUB, AX, 1), None), (jmp_imm(JNE, AX, 0, 2), None),
            (alu64_imm(MOV, AX, cnt), None), (call(), "arch_bpf_timed_may_goto"),
            (Instruction(STX | MEM | SIZE[8], 10, AX, cnt), None)]  # fmt: skip


def _budget_init(depth: int) -> Patch:
    """The may_goto budget's initial values, stored at the subprogram's start."""
    cnt = -_round8(depth) - 16
    return [(Instruction(ST | MEM | SIZE[8], 10, 0, cnt, MAX_TIMED_LOOPS), None),
            (Instruction(ST | MEM | SIZE[8], 10, 0, cnt + 8, 0), None)]


CALLER_SAVED = (0, 1, 2, 3, 4, 5)
#: bpf_fastcall helpers of Linux 6.18: the caller-saved registers each clobbers
#: (helper_fastcall_clobber_mask) and whether x86-64 inlines it (then the spills and fills
#: around its calls go; around the others they stay, and so does the stack).
_FASTCALL = {"get_smp_processor_id": (frozenset({0}), True),
             "get_prandom_u32": (frozenset({0}), False)}  # fmt: skip
STX_DW, LDX_DW = STX | MEM | SIZE[8], LDX | MEM | SIZE[8]


def _fastcall(insns: Sequence[Instruction], depths: dict[int, int],
              lay: Layouts) -> set[int]:  # fmt: skip
    """mark_fastcall_patterns and remove_fastcall_spills_fills: around a call of an inlined
    bpf_fastcall helper, the spills and fills of the registers it keeps are dropped, and
    the subprogram's stack ends above them (``depths`` is updated).  The pcs dropped."""
    pcs = slot_offsets(insns)
    at = dict(zip(pcs, insns, strict=True))
    order = {pc: i for i, pc in enumerate(pcs)}
    targets = set()
    for pc, insn in at.items():
        fld = branch_field(to_slots([insn])[0])
        if fld is not None and not (insn.code == CALL and insn.src_reg == 1):
            targets.add(pc + 1 + getattr(insn, fld))
    starts = sorted(depths)
    bounds = [*starts, pcs[-1] + at[pcs[-1]].slots if pcs else 0]
    removed: set[int] = set()
    for start, end in itertools.pairwise(bounds):
        body = [pc for pc in pcs if start <= pc < end]
        lowest = min([at[pc].off for pc in body if at[pc].code == STX_DW
                      and at[pc].dst_reg == 10] + [0])  # fmt: skip
        pattern: set[int] = set()
        drop: set[int] = set()
        area, keep = None, False
        for pc in body:
            call_insn = at[pc]
            if call_insn.code != CALL or call_insn.src_reg != 0:
                continue
            clobbered, inlined = _FASTCALL.get(helper_name(call_insn.imm) or "", (None, False))
            if clobbered is None:
                continue
            inlined = inlined and lay.address("cpu_number") is not None
            expected = set(CALLER_SAVED) - clobbered
            i, off, k = 1, lowest, order[pc]
            pairs = []
            while i <= len(CALLER_SAVED) and k - i >= 0 and k + i < len(pcs):
                before, after = pcs[k - i], pcs[k + i]
                if pcs[k - i + 1] in targets or after in targets:
                    break
                stx, ldx_ = at[before], at[after]
                spill = stx.code == STX_DW and stx.dst_reg == 10 and stx.off == off
                fill = ldx_.code == LDX_DW and ldx_.src_reg == 10 and ldx_.off == off
                if not (spill and fill and stx.src_reg == ldx_.dst_reg in expected):
                    break
                expected.discard(stx.src_reg)
                pairs += [before, after]
                i, off = i + 1, off + 8
            if i == 1:
                continue
            pattern.update(pairs)
            if inlined:
                drop.update(pairs)
            keep = keep or not inlined
            area = off if area is None else min(area, off)
        if area is None or not drop:
            continue
        touched = any(at[pc].off < area and 10 in (at[pc].dst_reg, at[pc].src_reg)
                      and pc not in pattern and at[pc].code & 7 in (LDX, ST, STX)
                      for pc in body)  # check_fastcall_stack_contract, for r10 accesses
        if touched or any(at[pc].code == ALU64 | MOV | X and at[pc].src_reg == 10
                          for pc in body):  # a stack pointer escapes: assume it reaches
            continue
        removed |= drop
        if not keep:
            depths[start] = -area
    return removed


# --- patching --------------------------------------------------------------------------------
TC_ACT_SHOT, SK_DROP = 2, 0
#: the program types whose gen_prologue unclones the skb before a direct packet write,
#: with the verdict the prologue returns when it cannot
_UNCLONE = {SCHED_CLS: TC_ACT_SHOT, SCHED_ACT: TC_ACT_SHOT, LWT_XMIT: TC_ACT_SHOT,
            SK_SKB: SK_DROP}  # fmt: skip
CLONED_MASK = 1  # the cloned bit of sk_buff's __cloned_offset byte (little endian)


def _unclone_prologue(prog_type: int, lay: Layouts) -> Patch:
    """bpf_unclone_prologue: a cloned skb is pulled (made private) before the program."""
    pull = helper_id("skb_pull_data") or 39
    return [(ldx(1, 6, 1, lay.off("sk_buff.__cloned_offset")), None),
            (alu32_imm(AND, 6, CLONED_MASK), None), (jmp_imm(JEQ, 6, 0, 7), None),
            (alu64_reg(MOV, 6, 1), None), (alu64_reg(XOR, 2, 2), None),
            (call(pull), helper_symbol(pull, prog_type)), (jmp_imm(JEQ, 0, 0, 2), None),
            (alu32_imm(MOV, 0, _UNCLONE[prog_type]), None), (Instruction(EXIT), None),
            (alu64_reg(MOV, 1, 6), None)]  # fmt: skip


def kernel_view(insns: Sequence[Instruction], prog_type: int,
                sites: Mapping[int, Site] | None = None, *, direct_write: bool = False,
                depths: Mapping[int, int] | None = None,
                layouts: Layouts | None = None) -> View:  # fmt: skip
    """The shown image of the kept image ``insns`` (see the module docstring).

    ``sites`` holds, by pc of ``insns``, what the verifier knew of an instruction
    (:class:`Site`); ``direct_write`` whether it allowed a direct packet write
    (``seen_direct_write``: tc and sk_skb programs then start with the unclone
    prologue); ``depths`` the stack bytes of each subprogram, by start pc; ``layouts``
    the kernel's struct layouts (default: the snapshot).
    """
    lay = layouts or snapshot()
    sites = sites or {}
    depths = dict(depths or {0: 0})
    starts = sorted(depths)
    dropped = _fastcall(insns, depths, lay)
    typed_at = SK_BUFF["tstamp_type"][0]
    stamp_typed = any(site.ptr == "ctx" and insn.off == typed_at and insn.code & 7 == LDX
                      for insn, site in ((i, sites.get(pc)) for pc, i in
                                         zip(slot_offsets(insns), insns, strict=True))
                      if site is not None)  # fmt: skip
    budgets: set[int] = set()  # subprograms with a may_goto
    patches: list[Patch] = []
    pc = 0
    for insn in insns:
        site = sites.get(pc, Site())
        patch: Patch | None = [] if pc in dropped else None
        if patch is None and insn.code == MAY_GOTO:
            sub = max((s for s in starts if s <= pc), default=0)
            budgets.add(sub)
            patch = _may_goto(insn, pc, depths.get(sub, 0))
        if site.loop is not None and insn.code == CALL and insn.src_reg == 0 \
                and helper_name(insn.imm) == "loop":  # fmt: skip
            sub = max((s for s in starts if s <= pc), default=0)
            patch = _inline_loop(site.loop, depths.get(sub, site.stack_depth))
        if patch is None and site.ptr is not None:
            ctx = _ctx_patch(prog_type if site.ptr == "ctx" else site.ptr, insn, lay,
                             stamp_typed=stamp_typed)
            if ctx is not None:
                patch = [(i, None) for i in ctx]
        if patch is None:
            guard = _div_guard(insn)
            if guard is not None:
                patch = [(i, None) for i in guard]
        if patch is None and insn.code & CLASS_MASK == LD and insn.code & 0xE0 in (ABS, IND):
            patch = _ld_abs(insn)
        if patch is None:
            patch = _call_patch(insn, site, prog_type, lay)
        patches.append(patch if patch is not None else [(insn, None)])
        pc += insn.slots
    index = {p: i for i, p in enumerate(slot_offsets(insns))}
    entry: dict[int, int] = {}  # adjust_jmp_off: jumps to a start skip what was put there
    for sub in sorted(budgets):
        init = _budget_init(depths.get(sub, 0))
        entry[sub] = len(init)
        patches[index[sub]] = init + patches[index[sub]]
    if direct_write and prog_type in _UNCLONE and patches:
        prologue = _unclone_prologue(prog_type, lay)
        entry[0] = entry.get(0, 0) + len(prologue)
        patches[0] = prologue + patches[0]
    return _assemble(insns, patches, entry)


def _assemble(insns: Sequence[Instruction], patches: list[Patch],
              entry: Mapping[int, int] | None = None) -> View:  # fmt: skip
    """Lay the patches out and move every outside branch as bpf_adj_branches does
    (a jump, not a call, to a pc in ``entry`` lands that many slots into its patch)."""
    entry = entry or {}
    old_slots = to_slots(insns)
    starts: dict[int, int] = {}  # old slot -> new slot of its patch's first slot
    new_slots: list[Slot] = []
    aims: dict[int, int] = {}  # new slot of a branch -> the old slot it goes to
    symbols: dict[int, str] = {}
    old = 0
    for insn, patch in zip(insns, patches, strict=True):
        starts[old] = len(new_slots)
        if insn.slots == 2:
            starts[old + 1] = len(new_slots) + 1
        for new_insn, note in patch:
            here = len(new_slots)
            if isinstance(note, str):
                symbols[here] = note
            fld = branch_field(to_slots([new_insn])[0])
            if isinstance(note, Target):
                aims[here] = note.pc
            elif new_insn is insn and fld is not None:
                aims[here] = old + 1 + getattr(old_slots[old], fld)
            new_slots += to_slots([new_insn])
        old += insn.slots
    starts[old] = len(new_slots)
    for i, target in aims.items():
        slot = new_slots[i]
        fld = branch_field(slot)
        if fld is None or target not in starts:
            continue
        land = starts[target]
        if target in entry and slot.code != CALL and slot.code != 0x18 and \
                not land <= i < land + entry[target]:  # fmt: skip
            land += entry[target]
        new_slots[i] = slot._replace(**{fld: land - i - 1})
    return View(to_instructions(new_slots), symbols,
                {o: n for o, n in starts.items() if o < old})


def subprog_starts(view: View, starts: Sequence[int]) -> tuple[int, ...]:
    """Subprogram starts of the kept image moved into the view (adjust_subprog_starts)."""
    return tuple(view.pc_map.get(s, s) for s in starts)


__all__ = ["Site", "View", "helper_symbol", "kernel_view", "subprog_starts"]
