"""Register types as the kernel's verifier names them (``enum bpf_reg_type``).

A register's type is a base (:class:`Base`) plus modifier flags
(:class:`Flag`), as in the kernel where ``PTR_TO_MAP_VALUE | PTR_MAYBE_NULL``
is "map_value_or_null".  :func:`type_str` spells a type the way the kernel's
log does (``reg_type_str``): prefixes for memory flags, ``_or_null`` last.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Base(IntEnum):
    """The base register types the verifier tracks."""

    NOT_INIT = 0
    SCALAR = 1
    PTR_TO_CTX = 2
    CONST_PTR_TO_MAP = 3
    PTR_TO_MAP_VALUE = 4
    PTR_TO_MAP_KEY = 5
    PTR_TO_STACK = 6
    PTR_TO_PACKET_META = 7
    PTR_TO_PACKET = 8
    PTR_TO_PACKET_END = 9
    PTR_TO_FLOW_KEYS = 10
    PTR_TO_SOCKET = 11
    PTR_TO_SOCK_COMMON = 12
    PTR_TO_TCP_SOCK = 13
    PTR_TO_TP_BUFFER = 14
    PTR_TO_XDP_SOCK = 15
    PTR_TO_BTF_ID = 16
    PTR_TO_MEM = 17
    PTR_TO_BUF = 18
    PTR_TO_FUNC = 19
    CONST_PTR_TO_DYNPTR = 20


class Flag(IntFlag):
    """Modifiers on a base type (``enum bpf_type_flag``, the ones pybpf uses)."""

    NONE = 0
    MAYBE_NULL = 1 << 0
    MEM_RDONLY = 1 << 1
    MEM_RINGBUF = 1 << 2
    MEM_USER = 1 << 3
    MEM_PERCPU = 1 << 4
    MEM_ALLOC = 1 << 5
    PTR_UNTRUSTED = 1 << 6
    PTR_TRUSTED = 1 << 7
    MEM_RCU = 1 << 8


_NAMES = {
    Base.NOT_INIT: "?",
    Base.SCALAR: "scalar",
    Base.PTR_TO_CTX: "ctx",
    Base.CONST_PTR_TO_MAP: "map_ptr",
    Base.PTR_TO_MAP_VALUE: "map_value",
    Base.PTR_TO_MAP_KEY: "map_key",
    Base.PTR_TO_STACK: "fp",
    Base.PTR_TO_PACKET_META: "pkt_meta",
    Base.PTR_TO_PACKET: "pkt",
    Base.PTR_TO_PACKET_END: "pkt_end",
    Base.PTR_TO_FLOW_KEYS: "flow_keys",
    Base.PTR_TO_SOCKET: "sock",
    Base.PTR_TO_SOCK_COMMON: "sock_common",
    Base.PTR_TO_TCP_SOCK: "tcp_sock",
    Base.PTR_TO_TP_BUFFER: "tp_buffer",
    Base.PTR_TO_XDP_SOCK: "xdp_sock",
    Base.PTR_TO_BTF_ID: "ptr_",
    Base.PTR_TO_MEM: "mem",
    Base.PTR_TO_BUF: "buf",
    Base.PTR_TO_FUNC: "func",
    Base.CONST_PTR_TO_DYNPTR: "dynptr_ptr",
}

# prefix order as reg_type_str() builds it
_PREFIXES = (
    (Flag.MEM_RDONLY, "rdonly_"),
    (Flag.MEM_RINGBUF, "ringbuf_"),
    (Flag.MEM_USER, "user_"),
    (Flag.MEM_PERCPU, "percpu_"),
    (Flag.MEM_RCU, "rcu_"),
    (Flag.PTR_UNTRUSTED, "untrusted_"),
    (Flag.PTR_TRUSTED, "trusted_"),
)


def type_str(base: Base, flags: Flag = Flag.NONE) -> str:
    """The kernel log's name of a type: ``map_value_or_null``, ``ringbuf_mem_or_null``;
    a BTF pointer's null suffix comes before the struct name the log adds after it
    (``ptr_or_null_``)."""
    prefix = "".join(text for flag, text in _PREFIXES if flags & flag)
    suffix = ""
    if flags & Flag.MAYBE_NULL and base is not Base.SCALAR:
        suffix = "or_null_" if base is Base.PTR_TO_BTF_ID else "_or_null"
    return f"{prefix}{_NAMES[base]}{suffix}"


class BtfRef:
    """The kernel struct a PTR_TO_BTF_ID register points to (its ``btf_id``), by name.

    Kept in the register's ``map`` slot; one object per name (:func:`btf_ref`),
    so registers compare by identity as map pointers do.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"BtfRef({self.name!r})"


_BTF_REFS: dict[str, BtfRef] = {}


def btf_ref(name: str) -> BtfRef:
    """The one :class:`BtfRef` of struct ``name``."""
    ref = _BTF_REFS.get(name)
    if ref is None:
        ref = _BTF_REFS[name] = BtfRef(name)
    return ref
