"""The cgroup-attached socket and sysctl program types.

* **cgroup_sock** — ``struct bpf_sock`` (net/core/filter.c
  ``sock_filter_is_valid_access``): ``bpf_sock_is_valid_access`` (narrow
  loads of family, type, protocol, the addresses, src_port, dst_port, state
  and rx_queue_mapping; 4-byte access to the rest) narrowed by the attach
  type: bound_dev_if, mark and priority exist (read and write) only at socket
  creation and release; src_ip4 only after an IPv4 bind, src_ip6 after an
  IPv6 one, src_port after either, read-only; everything else read-only.
  A zero expected_attach_type is INET_SOCK_CREATE
  (``bpf_prog_load_fixup_attach_type``).
* **cgroup_sock_addr** — ``struct bpf_sock_addr`` (``sock_addr_is_valid_access``):
  user_ip4 exists for the IPv4 hooks, user_ip6 for the IPv6 ones,
  msg_src_ip4 / msg_src_ip6 for UDP sendmsg only; the addresses and the
  port load narrow (1, 2, 4 bytes, 8 within the IPv6 arrays) and store 4
  bytes (8 within the arrays); user_family, family, type and protocol are
  4-byte reads; ``sk`` a PTR_TO_SOCKET.  R0 is [1, 1] for recvmsg,
  getpeername and getsockname, [0, 3] for bind, [0, 1] for the others.
* **cgroup_sysctl** — ``struct bpf_sysctl`` (kernel/bpf/cgroup.c
  ``sysctl_is_valid_access``): ``write`` read-only, ``file_pos`` narrow
  reads and 4-byte stores.
* **cgroup_sockopt** — ``struct bpf_sockopt`` (``cg_sockopt_is_valid_access``):
  sk (PTR_TO_SOCKET), optval / optval_end (packet pointers, readable and
  writable even through helpers); level and optname writable by setsockopt
  programs, retval readable and writable by getsockopt ones, optlen by
  both.

Helpers: ``cgroup_common_func_proto`` (get_local_storage; get_retval and
set_retval except for the attach types whose hook has no return value to
set: INET_INGRESS/EGRESS, SOCK_OPS, recvmsg, getpeername, getsockname), then
each type's own switch.  None of these types has a test run in the kernel.
"""

from __future__ import annotations

from pybpf.verifier.ctx_base import (
    CtxAccess,
    HelperSet,
    ProgTypeOps,
    field_at,
    layout,
    narrow_ok,
    ptr,
    u32s,
    wide_ok,
    zero_one,
)
from pybpf.verifier.types import Base

CGROUP_SOCK, CGROUP_SOCK_ADDR, CGROUP_SYSCTL, CGROUP_SOCKOPT = 9, 18, 23, 25

# enum bpf_attach_type
INET_SOCK_CREATE, INET_SOCK_RELEASE, INET4_POST_BIND, INET6_POST_BIND = 2, 34, 12, 13
INET4_BIND, INET6_BIND, INET4_CONNECT, INET6_CONNECT, UNIX_CONNECT = 8, 9, 10, 11, 49
UDP4_SENDMSG, UDP6_SENDMSG, UNIX_SENDMSG = 14, 15, 50
UDP4_RECVMSG, UDP6_RECVMSG, UNIX_RECVMSG = 19, 20, 51
INET4_GETPEERNAME, INET6_GETPEERNAME, UNIX_GETPEERNAME = 29, 30, 52
INET4_GETSOCKNAME, INET6_GETSOCKNAME, UNIX_GETSOCKNAME = 31, 32, 53
CGROUP_SYSCTL_ATTACH, GETSOCKOPT, SETSOCKOPT = 18, 21, 22

_SIZE_DEFAULT = 4


# --- bpf_sock (cgroup_sock) -------------------------------------------------------------------
BPF_SOCK = layout(
    *u32s("bound_dev_if family type protocol mark priority src_ip4"),
    ("src_ip6", 16, 4), *u32s("src_port"), ("dst_port", 2, 2), ("_pad", 2, 2),
    *u32s("dst_ip4"), ("dst_ip6", 16, 4), *u32s("state rx_queue_mapping"),
)  # fmt: skip
BPF_SOCK_SIZE = 80
_SOCK_EXACT_NARROW = ("family", "type", "protocol", "src_port", "state", "rx_queue_mapping")
_SOCK_RANGE_NARROW = ("src_ip4", "src_ip6", "dst_ip4", "dst_ip6")


def bpf_sock_access(off: int, size: int) -> CtxAccess | None:
    """bpf_sock_is_valid_access: whether ``struct bpf_sock`` allows the access at all."""
    if off < 0 or off >= BPF_SOCK_SIZE or off % size:
        return None
    name = field_at(BPF_SOCK, off)
    start = BPF_SOCK[name][0]
    if (name in _SOCK_EXACT_NARROW and off == start) or name in _SOCK_RANGE_NARROW:
        return CtxAccess(field_size=_SIZE_DEFAULT, field=name) if narrow_ok(size, 4) else None
    if name == "dst_port":  # a 4-byte load reads the padding too; narrower ones the be16
        field_size = _SIZE_DEFAULT if size == _SIZE_DEFAULT else 2
        return CtxAccess(field_size=field_size, field=name) if narrow_ok(size, field_size) \
            else None  # fmt: skip
    if name == "_pad":
        return None
    return CtxAccess(field=name) if size == _SIZE_DEFAULT else None


_CREATE_RELEASE = (INET_SOCK_CREATE, INET_SOCK_RELEASE)


def _cgroup_sock(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sock_filter_is_valid_access: bpf_sock, then what the attach type exposes (``attach``
    is fixed up already: a 0 is INET_SOCK_CREATE)."""
    acc = bpf_sock_access(off, size)
    if acc is None:
        return None
    name = acc.field
    if name in ("bound_dev_if", "mark", "priority") and off == BPF_SOCK[name][0]:
        return acc if attach in _CREATE_RELEASE else None  # read and write
    if name == "src_ip4" and attach != INET4_POST_BIND:
        return None
    if name == "src_ip6" and attach != INET6_POST_BIND:
        return None
    if name == "src_port" and attach not in (INET4_POST_BIND, INET6_POST_BIND):
        return None
    return None if write else acc


# --- bpf_sock_addr (cgroup_sock_addr) ---------------------------------------------------------
BPF_SOCK_ADDR = layout(
    *u32s("user_family user_ip4"), ("user_ip6", 16, 4),
    *u32s("user_port family type protocol msg_src_ip4"), ("msg_src_ip6", 16, 4), ptr("sk"),
)  # fmt: skip
BPF_SOCK_ADDR_SIZE = 72
_INET4 = frozenset({INET4_BIND, INET4_CONNECT, INET4_GETPEERNAME, INET4_GETSOCKNAME,
                    UDP4_SENDMSG, UDP4_RECVMSG})  # fmt: skip
_INET6 = frozenset({INET6_BIND, INET6_CONNECT, INET6_GETPEERNAME, INET6_GETSOCKNAME,
                    UDP6_SENDMSG, UDP6_RECVMSG})  # fmt: skip
SOCK_ADDR_ATTACH = _INET4 | _INET6 | frozenset({
    UNIX_CONNECT, UNIX_SENDMSG, UNIX_RECVMSG, UNIX_GETPEERNAME, UNIX_GETSOCKNAME})  # fmt: skip
_ADDR_FAMILY = {"user_ip4": _INET4, "user_ip6": _INET6,
                "msg_src_ip4": frozenset({UDP4_SENDMSG}),
                "msg_src_ip6": frozenset({UDP6_SENDMSG})}  # fmt: skip
_ADDR_FIELDS = ("user_ip4", "user_ip6", "msg_src_ip4", "msg_src_ip6", "user_port")


def _sock_addr(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sock_addr_is_valid_access (see the module docstring)."""
    lay = BPF_SOCK_ADDR
    if off < 0 or off >= BPF_SOCK_ADDR_SIZE or off % size:
        return None
    name = field_at(lay, off)
    if name in _ADDR_FAMILY and attach not in _ADDR_FAMILY[name]:
        return None
    if name in _ADDR_FIELDS:
        if wide_ok(lay, off, size, "user_ip6") or wide_ok(lay, off, size, "msg_src_ip6"):
            return CtxAccess(field=name)
        if write:
            return CtxAccess(field=name) if size == _SIZE_DEFAULT else None
        return CtxAccess(field_size=_SIZE_DEFAULT, field=name) if narrow_ok(size, 4) else None
    if name == "sk":
        return CtxAccess(Base.PTR_TO_SOCKET, field=name) if not write and size == 8 else None
    if name in ("user_family", "family", "type", "protocol"):
        return CtxAccess(field=name) if not write and size == _SIZE_DEFAULT else None
    return None


_RET_ONE = frozenset({UDP4_RECVMSG, UDP6_RECVMSG, UNIX_RECVMSG, INET4_GETPEERNAME,
                      INET6_GETPEERNAME, UNIX_GETPEERNAME, INET4_GETSOCKNAME,
                      INET6_GETSOCKNAME, UNIX_GETSOCKNAME})  # fmt: skip


def _sock_addr_ret(attach: int) -> tuple[int, int]:
    if attach in _RET_ONE:
        return (1, 1)
    return (0, 3) if attach in (INET4_BIND, INET6_BIND) else (0, 1)


# --- bpf_sysctl --------------------------------------------------------------------------------
BPF_SYSCTL = layout(*u32s("write file_pos"))
BPF_SYSCTL_SIZE = 8


def _sysctl(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """sysctl_is_valid_access: ``write`` read-only, ``file_pos`` narrow reads, 4-byte stores."""
    if off < 0 or off + size > BPF_SYSCTL_SIZE or off % size:
        return None
    name = field_at(BPF_SYSCTL, off)
    if write:
        return CtxAccess(field=name) if name == "file_pos" and size == _SIZE_DEFAULT else None
    return CtxAccess(field_size=_SIZE_DEFAULT, field=name) if narrow_ok(size, 4) else None


# --- bpf_sockopt ---------------------------------------------------------------------------------
BPF_SOCKOPT = layout(ptr("sk"), ptr("optval"), ptr("optval_end"),
                     *u32s("level optname optlen retval"))  # fmt: skip
BPF_SOCKOPT_SIZE = 40
_SOCKOPT_PTRS = {"sk": Base.PTR_TO_SOCKET, "optval": Base.PTR_TO_PACKET,
                 "optval_end": Base.PTR_TO_PACKET_END}  # fmt: skip


def _sockopt(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """cg_sockopt_is_valid_access (see the module docstring)."""
    if off < 0 or off >= BPF_SOCKOPT_SIZE or off % size:
        return None
    name = field_at(BPF_SOCKOPT, off)
    word = CtxAccess(field=name) if size == _SIZE_DEFAULT else None
    if write:
        if off != BPF_SOCKOPT[name][0]:
            return None
        if name == "retval":
            return word if attach == GETSOCKOPT else None
        if name in ("level", "optname"):
            return word if attach == SETSOCKOPT else None
        return word if name == "optlen" else None
    if name in _SOCKOPT_PTRS:
        return CtxAccess(_SOCKOPT_PTRS[name], field=name) if size == 8 else None
    if name == "retval":
        return word if attach == GETSOCKOPT else None
    return word


# --- helper sets ----------------------------------------------------------------------------------
_NO_RETVAL = frozenset({0, 1, 3, UDP4_RECVMSG, UDP6_RECVMSG, UNIX_RECVMSG, INET4_GETPEERNAME,
                        INET6_GETPEERNAME, UNIX_GETPEERNAME, INET4_GETSOCKNAME,
                        INET6_GETSOCKNAME, UNIX_GETSOCKNAME})  # fmt: skip


def cgroup_common(attach: int) -> str:
    """cgroup_common_func_proto's helpers for one attach type."""
    return "get_local_storage" + ("" if attach in _NO_RETVAL else " get_retval set_retval")


def _sock_addr_helpers(attach: int) -> str:
    bind = " bind" if attach in (INET4_CONNECT, INET6_CONNECT) else ""
    return cgroup_common(attach) + bind


def _sockopt_helpers(attach: int) -> str:
    sk_opts = " setsockopt getsockopt" if attach == SETSOCKOPT else ""
    return cgroup_common(attach) + sk_opts


_OUTPUT_DATA = {"perf_event_output": "bpf_event_output_data_proto"}

TYPES = (
    ProgTypeOps(
        CGROUP_SOCK, "cgroup_sock", _cgroup_sock, BPF_SOCK_SIZE,
        HelperSet("base", "get_socket_cookie get_netns_cookie perf_event_output sk_storage_get"
                  " ktime_get_coarse_ns", by_attach=cgroup_common, variants={
                      **_OUTPUT_DATA, "sk_storage_get": "bpf_sk_storage_get_cg_sock_proto",
                      "get_socket_cookie": "bpf_get_socket_cookie_sock_proto",
                      "get_netns_cookie": "bpf_get_netns_cookie_sock_proto"}),
        attach_types=frozenset({INET_SOCK_CREATE, INET_SOCK_RELEASE, INET4_POST_BIND,
                                INET6_POST_BIND}),
        default_attach=INET_SOCK_CREATE, ret=zero_one,
        sweep_attach=(0, INET_SOCK_CREATE, INET_SOCK_RELEASE, INET4_POST_BIND, INET6_POST_BIND)),
    ProgTypeOps(
        CGROUP_SOCK_ADDR, "cgroup_sock_addr", _sock_addr, BPF_SOCK_ADDR_SIZE,
        HelperSet("net", "get_socket_cookie get_netns_cookie perf_event_output sk_lookup_tcp"
                  " sk_lookup_udp sk_release skc_lookup_tcp sk_storage_get sk_storage_delete"
                  " setsockopt getsockopt", by_attach=_sock_addr_helpers, variants={
                      **_OUTPUT_DATA, "setsockopt": "bpf_sock_addr_setsockopt_proto",
                      "getsockopt": "bpf_sock_addr_getsockopt_proto",
                      "sk_lookup_tcp": "bpf_sock_addr_sk_lookup_tcp_proto",
                      "sk_lookup_udp": "bpf_sock_addr_sk_lookup_udp_proto",
                      "skc_lookup_tcp": "bpf_sock_addr_skc_lookup_tcp_proto",
                      "get_socket_cookie": "bpf_get_socket_cookie_sock_addr_proto",
                      "get_netns_cookie": "bpf_get_netns_cookie_sock_addr_proto"}),
        attach_types=SOCK_ADDR_ATTACH, ret=_sock_addr_ret,
        sweep_attach=tuple(sorted(SOCK_ADDR_ATTACH))),
    ProgTypeOps(
        CGROUP_SYSCTL, "cgroup_sysctl", _sysctl, BPF_SYSCTL_SIZE,
        HelperSet("base", "sysctl_get_name sysctl_get_current_value sysctl_get_new_value"
                  " sysctl_set_new_value ktime_get_coarse_ns perf_event_output",
                  by_attach=cgroup_common, variants=_OUTPUT_DATA),
        ret=zero_one, sweep_attach=(0, CGROUP_SYSCTL_ATTACH)),
    ProgTypeOps(
        CGROUP_SOCKOPT, "cgroup_sockopt", _sockopt, BPF_SOCKOPT_SIZE,
        HelperSet("base", "get_netns_cookie sk_storage_get sk_storage_delete tcp_sock"
                  " perf_event_output", by_attach=_sockopt_helpers, variants={
                      **_OUTPUT_DATA, "setsockopt": "bpf_sk_setsockopt_proto",
                      "getsockopt": "bpf_sk_getsockopt_proto",
                      "get_netns_cookie": "bpf_get_netns_cookie_sockopt_proto"}),
        attach_types=frozenset({GETSOCKOPT, SETSOCKOPT}), ret=zero_one, packet="ctx",
        sweep_attach=(GETSOCKOPT, SETSOCKOPT)),
)
