"""The tracing program types with a fixed context (kernel/trace/bpf_trace.c, syscall.c).

* **kprobe** — ``struct pt_regs`` (x86-64: 21 registers), read-only,
  aligned; R0 [0, 1] for kprobe / uprobe sessions.
* **tracepoint** — the trace record after its 8-byte common header, up to
  PERF_MAX_TRACE_SIZE (the record's real size is only known at attach).
* **raw_tracepoint** — 12 u64 arguments, read-only, aligned, any size.
* **raw_tracepoint_writable** — the same, except that ``args[0]`` must be
  read whole and is a PTR_TO_TP_BUFFER (the tracepoint's writable buffer,
  sized at attach).
* **perf_event** — ``struct bpf_perf_event_data``: whole-long reads of the
  registers, narrow reads of sample_period and addr.
* **syscall** — the caller's buffer: any aligned read or write below
  U16_MAX; the program must be sleepable ("Syscall programs can only be
  sleepable") and loaded without an attach type.

Only raw_tracepoint has a test run pybpf models; the kernel has none for
kprobe, tracepoint, perf_event and raw_tracepoint_writable (ENOTSUPP) and
one for syscall that pybpf does not model.
"""

from __future__ import annotations

from pybpf.verifier.ctx_base import (
    CtxAccess,
    HelperSet,
    ProgTypeOps,
    field_at,
    layout,
)
from pybpf.verifier.types import Base

KPROBE, TRACEPOINT, PERF_EVENT, RAW_TRACEPOINT, RAW_TRACEPOINT_WRITABLE, SYSCALL = \
    2, 5, 7, 17, 24, 31  # fmt: skip
BPF_TRACE_KPROBE_SESSION, BPF_TRACE_UPROBE_SESSION = 56, 57

PT_REGS_SIZE = 168  # struct pt_regs on x86-64: 21 registers
PERF_MAX_TRACE_SIZE = 8192
MAX_BPF_FUNC_ARGS = 12
U16_MAX = 0xFFFF
PERF_EVENT_DATA = layout(("regs", PT_REGS_SIZE, 8), ("sample_period", 8, 8), ("addr", 8, 8))
PERF_EVENT_DATA_SIZE = 184


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


def _raw_tracepoint_writable(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """args[0] is the writable buffer, read whole; the rest as raw_tracepoint."""
    if off == 0:
        if size != 8 or write:
            return None
        return CtxAccess(Base.PTR_TO_TP_BUFFER, field="args[0]")
    return _raw_tracepoint(off, size, write, attach, ldsx)


def _perf_event(off: int, size: int, write: bool, attach: int, ldsx: bool):
    if off < 0 or off >= PERF_EVENT_DATA_SIZE or write or off % size:
        return None
    name = field_at(PERF_EVENT_DATA, off)
    if name in ("sample_period", "addr"):
        return CtxAccess(field_size=8, field=name)
    return CtxAccess(field=f"regs+{off}") if size == 8 else None


def _syscall(off: int, size: int, write: bool, attach: int, ldsx: bool):
    """syscall_prog_is_valid_access: any aligned access below U16_MAX."""
    if off < 0 or off >= U16_MAX or off % size:
        return None
    return CtxAccess(field=f"+{off}")


def _kprobe_ret(attach: int) -> tuple[int, int] | None:
    return (0, 1) if attach in (BPF_TRACE_KPROBE_SESSION, BPF_TRACE_UPROBE_SESSION) else None


_STACK = "perf_event_output get_stackid get_stack get_attach_cookie"
_SYSCALL = """
    sys_bpf btf_find_by_name_kind sys_close kallsyms_lookup_name get_stackid get_stack
    skb_output xdp_output xdp_get_buff_len get_socket_cookie sk_storage_get sk_storage_delete
    sock_from_file d_path skc_to_tcp6_sock skc_to_tcp_sock skc_to_tcp_timewait_sock
    skc_to_tcp_request_sock skc_to_udp6_sock skc_to_unix_sock skc_to_mptcp_sock
"""

TYPES = (
    ProgTypeOps(KPROBE, "kprobe", _kprobe, PT_REGS_SIZE,
                HelperSet("tracing", f"{_STACK} get_func_ip"), ret=_kprobe_ret,
                sleepable="allowed"),
    ProgTypeOps(TRACEPOINT, "tracepoint", _tracepoint, PERF_MAX_TRACE_SIZE,
                HelperSet("tracing", _STACK)),
    ProgTypeOps(PERF_EVENT, "perf_event", _perf_event, PERF_EVENT_DATA_SIZE,
                HelperSet("tracing", f"{_STACK} perf_prog_read_value read_branch_records",
                          variants={"get_stackid": "bpf_get_stackid_proto_pe",
                                    "get_stack": "bpf_get_stack_proto_pe"})),
    ProgTypeOps(RAW_TRACEPOINT, "raw_tracepoint", _raw_tracepoint, 8 * MAX_BPF_FUNC_ARGS,
                HelperSet("tracing", _STACK), test_run="raw_tp"),
    ProgTypeOps(RAW_TRACEPOINT_WRITABLE, "raw_tracepoint_writable", _raw_tracepoint_writable,
                8 * MAX_BPF_FUNC_ARGS, HelperSet("tracing", _STACK)),
    ProgTypeOps(SYSCALL, "syscall", _syscall, U16_MAX + 1,
                HelperSet("tracing", _SYSCALL, variants={
                    "get_socket_cookie": "bpf_get_socket_ptr_cookie_proto",
                    "sk_storage_get": "bpf_sk_storage_get_tracing_proto",
                    "sk_storage_delete": "bpf_sk_storage_delete_tracing_proto"}),
                attach_types=frozenset({0}), test_run="syscall", sleepable="required",
                sweep_attach=()),
)
