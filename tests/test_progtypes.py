"""Program types: SEC names, helper availability, contexts converted as the kernel does."""

from __future__ import annotations

import errno
import struct

import pytest

from pybpf.asm import ubpf
from pybpf.errors import KernelError, MemoryFault
from pybpf.isa.helper_ids import helper_id
from pybpf.runtime.context import (
    PerfEventData,
    SkBuff,
    SkBuffCtx,
    XdpBuff,
    XdpMd,
    kprobe_ctx,
    tracepoint_ctx,
)
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.progtypes import (
    PROG_TYPES,
    SEC_TABLE,
    AttachType,
    ProgType,
    by_name,
    sec_to_prog_type,
)
from pybpf.runtime.testrun import ENOTSUPP, run_context
from pybpf.runtime.testrun import test_run as run_test
from pybpf.vm.memory import Memory

P, A = ProgType, AttachType


@pytest.mark.parametrize("sec, expected", [
    ("xdp", (P.XDP, A.XDP)), ("xdp.frags", (P.XDP, A.XDP)),
    ("xdp/devmap", (P.XDP, A.XDP_DEVMAP)), ("xdp.frags/cpumap", (P.XDP, A.XDP_CPUMAP)),
    ("tc", (P.SCHED_CLS, 0)), ("tc/ingress", (P.SCHED_CLS, A.TCX_INGRESS)),
    ("tc/egress", (P.SCHED_CLS, A.TCX_EGRESS)), ("classifier", (P.SCHED_CLS, 0)),
    ("action", (P.SCHED_ACT, 0)), ("socket", (P.SOCKET_FILTER, 0)),
    ("kprobe/do_exit", (P.KPROBE, 0)), ("kprobe", (P.KPROBE, 0)),
    ("kretprobe/do_exit", (P.KPROBE, 0)), ("kprobe.multi/x*", (P.KPROBE, A.TRACE_KPROBE_MULTI)),
    ("tracepoint/syscalls/sys_enter_open", (P.TRACEPOINT, 0)), ("tp/sched/x", (P.TRACEPOINT, 0)),
    ("raw_tracepoint/sched_switch", (P.RAW_TRACEPOINT, 0)), ("raw_tp/x", (P.RAW_TRACEPOINT, 0)),
    ("raw_tp.w/x", (P.RAW_TRACEPOINT_WRITABLE, 0)), ("perf_event", (P.PERF_EVENT, 0)),
    ("cgroup_skb/ingress", (P.CGROUP_SKB, A.CGROUP_INET_INGRESS)),
    ("cgroup_skb/egress", (P.CGROUP_SKB, A.CGROUP_INET_EGRESS)),
    ("cgroup/skb", (P.CGROUP_SKB, 0)), ("fentry/do_exit", (P.TRACING, A.TRACE_FENTRY)),
    ("cgroup/connect4", (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT)),
    ("sk_lookup", (P.SK_LOOKUP, A.SK_LOOKUP)),
])  # fmt: skip
def test_sec_names_as_libbpf(sec, expected):
    assert sec_to_prog_type(sec) == expected


@pytest.mark.parametrize("sec", ["xdp/foo", "kprobefoo", "socket/x", "tcx", "perf_event/x", ""])
def test_sec_names_libbpf_does_not_know(sec):
    with pytest.raises(KeyError):
        sec_to_prog_type(sec)


def test_sec_table_flags():
    by_sec = {d.sec: d for d in SEC_TABLE}
    assert by_sec["xdp.frags"].flags & 16 and by_sec["tp.s+"].flags & 8
    assert len(by_sec) == len(SEC_TABLE)


def test_prog_type_names_and_helpers():
    names = {spec.name for spec in PROG_TYPES.values()}
    assert names == {"xdp", "socket_filter", "sched_cls", "sched_act", "cgroup_skb", "kprobe",
                     "tracepoint", "raw_tracepoint", "perf_event", "cgroup_sock",
                     "cgroup_sock_addr", "cgroup_sysctl", "cgroup_sockopt", "sock_ops", "sk_skb",
                     "sk_msg", "lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local",
                     "flow_dissector", "raw_tracepoint_writable", "syscall", "netfilter",
                     "sk_reuseport", "sk_lookup"}  # fmt: skip
    h = {name: by_name(name).helpers for name in names}
    ids = lambda *n: {helper_id(x) for x in n}  # noqa: E731
    assert ids("xdp_adjust_head", "redirect_map", "csum_diff", "map_lookup_elem") <= h["xdp"]
    assert not ids("skb_store_bytes", "l3_csum_replace", "redirect") & h["socket_filter"]
    assert ids("skb_store_bytes", "l4_csum_replace", "redirect") <= h["sched_cls"]
    assert ids("get_local_storage", "sk_fullsock") <= h["cgroup_skb"]
    assert not ids("xdp_adjust_head", "probe_read") & h["sched_cls"]
    assert ids("probe_read", "get_stackid", "get_func_ip", "trace_printk") <= h["kprobe"]
    assert ids("perf_prog_read_value") <= h["perf_event"] - h["tracepoint"]
    assert not ids("override_return", "skb_load_bytes") & h["kprobe"]


def test_unavailable_helper_refused_at_load():
    with pytest.raises(KernelError) as info:
        Kernel().prog_load(ubpf.assemble("call 23\nexit"), ProgType.SOCKET_FILTER)
    assert info.value.errno == errno.EINVAL and "redirect" in str(info.value)


# --- contexts -----------------------------------------------------------------------------------
def xdp_md(**kw):
    xdp = XdpBuff(headroom=256, linear=bytes(range(64)), **kw)
    md = XdpMd(xdp)
    memory = Memory([md])
    xdp.attach(memory)
    return xdp, md, memory


def test_xdp_md_loads_yield_host_pointers():
    xdp, md, memory = xdp_md()
    data = memory.load(0, md.base, 4)
    assert data == xdp.base + 256 and data > 0xFFFFFFFF
    assert memory.load(0, md.base + 4, 4) - data == 64
    assert memory.load(0, md.base + 8, 4) == data  # no meta data: data_meta == data
    assert memory.load(0, data + 3, 1) == 3  # the packet is reachable through the pointer
    assert memory.load(0, md.base + 12, 4) == 1  # loopback


@pytest.mark.parametrize("off, size, write, words", [
    (0, 4, True, "read-only"), (0, 8, False, "4-byte"), (2, 2, False, "4-byte"),
    (20, 4, False, "egress_ifindex"), (24, 4, False, "outside"), (1, 1, True, "read-only"),
])  # fmt: skip
def test_xdp_md_refusals(off, size, write, words):
    _xdp, md, memory = xdp_md()
    with pytest.raises(MemoryFault) as info:
        if write:
            memory.store(7, md.base + off, size, 0)
        else:
            memory.load(7, md.base + off, size)
    assert words in str(info.value) and "xdp_md" in str(info.value) and info.value.pc == 7


def test_xdp_packet_bounds_fault():
    xdp, _md, memory = xdp_md()
    with pytest.raises(MemoryFault):
        memory.load(0, xdp.base + 256 + 64, 1)  # data_end
    with pytest.raises(MemoryFault):
        memory.load(0, xdp.base + 255, 1)  # headroom


def skb_ctx(kind: str) -> tuple[SkBuff, SkBuffCtx, Memory]:
    skb = SkBuff(frame_size=512, data=64, len=60, writable=kind == "sched_cls",
                 protocol=0x0008, mark=0x11223344)  # fmt: skip
    ctx = SkBuffCtx(skb, kind)
    memory = Memory([ctx])
    skb.attach(memory)
    return skb, ctx, memory


def test_sk_buff_conversions():
    skb, ctx, memory = skb_ctx("sched_cls")
    assert memory.load(0, ctx.base + 76, 4) == skb.base + 64  # data: 64-bit pointer
    assert memory.load(0, ctx.base + 80, 4) == skb.base + 124
    assert memory.load(0, ctx.base + 9, 1) == 0x33  # narrow load of mark
    assert memory.load(0, ctx.base + 10, 2) == 0x1122
    assert memory.load(0, ctx.base + 16, 2) == 0x0008
    assert memory.load(0, ctx.base + 18, 2) == 0x0008  # the kernel's u16-field quirk
    assert memory.load(0, ctx.base + 18, 1) == 0  # narrower than the field: shifted
    memory.store(0, ctx.base + 8, 4, 5)
    memory.store(0, ctx.base + 50, 2, 0xBEEF)  # cb[0] bytes 2..3
    memory.store(0, ctx.base + 12, 4, 0xFFFF)  # queue_mapping: NO_QUEUE_MAPPING is ignored
    assert skb.mark == 5 and skb.cb[2:4] == b"\xef\xbe" and skb.queue_mapping == 0


@pytest.mark.parametrize("kind, off, size, write, words", [
    ("socket_filter", 8, 4, True, "read-only"), ("socket_filter", 76, 4, False, "not accessible"),
    ("sched_cls", 0, 4, True, "read-only"), ("sched_cls", 8, 2, True, "4-byte store"),
    ("sched_cls", 76, 8, False, "misaligned"), ("sched_cls", 88, 4, False, "not accessible"),
    ("sched_cls", 0, 8, False, "1, 2 or 4"), ("cgroup_skb", 72, 4, False, "not accessible"),
    ("cgroup_skb", 44, 4, True, "read-only"), ("sched_cls", 144, 8, False, "not accessible"),
    ("sched_cls", 168, 8, True, "read-only"), ("sched_cls", 152, 4, False, "8-byte"),
    ("sched_cls", 64, 8, False, "crosses"),
])  # fmt: skip
def test_sk_buff_refusals(kind, off, size, write, words):
    _skb, ctx, memory = skb_ctx(kind)
    with pytest.raises(MemoryFault) as info:
        if write:
            memory.store(3, ctx.base + off, size, 1)
        else:
            memory.load(3, ctx.base + off, size)
    assert words in str(info.value), str(info.value)


def test_program_writing_xdp_md_faults_naming_the_field():
    src = "stw [%r1+4], 0\nmov %r0, 2\nexit"  # the verifier refuses it; the context's guard too
    prog = Kernel(verify=False).prog_load(ubpf.assemble(src), ProgType.XDP)
    with pytest.raises(MemoryFault) as info:
        run_test(prog, bytes(64))
    assert "xdp_md.data_end is read-only" in str(info.value) and info.value.pc == 0


def test_tracing_types_have_no_test_run_but_run_on_synthetic_contexts():
    kernel = Kernel(verify=False)  # the contexts' own guards, without the verifier
    kp = kernel.prog_load(ubpf.assemble("ldxdw %r0, [%r1+112]\nexit"), ProgType.KPROBE)
    with pytest.raises(KernelError) as info:
        run_test(kp, bytes(64))
    assert info.value.errno == ENOTSUPP
    assert run_context(kp, kprobe_ctx({"di": 42})) == 42  # di is pt_regs+112
    tp = kernel.prog_load(ubpf.assemble("ldxw %r0, [%r1+8]\nexit"), ProgType.TRACEPOINT)
    assert run_context(tp, tracepoint_ctx(bytes(8) + struct.pack("<I", 7))) == 7
    bad = kernel.prog_load(ubpf.assemble("ldxw %r0, [%r1+0]\nexit"), ProgType.TRACEPOINT)
    with pytest.raises(MemoryFault):
        run_context(bad, tracepoint_ctx(bytes(16)))
    pe = kernel.prog_load(ubpf.assemble("ldxw %r0, [%r1+172]\nexit"), ProgType.PERF_EVENT)
    assert run_context(pe, PerfEventData(sample_period=0x1234_0000_0000)) == 0x1234
    pe_bad = kernel.prog_load(ubpf.assemble("ldxw %r0, [%r1+0]\nexit"), ProgType.PERF_EVENT)
    with pytest.raises(MemoryFault):
        run_context(pe_bad, PerfEventData())


def test_raw_tracepoint_test_run():
    prog = Kernel(verify=False).prog_load(ubpf.assemble("ldxdw %r0, [%r1+8]\nexit"),
                                          ProgType.RAW_TRACEPOINT)
    out = run_test(prog, ctx_in=struct.pack("<QQ", 1, 0x1_0000_0005))
    assert out.retval == 5 and out.data_out == b"" and out.duration_ns == 0
    for kwargs in (
        dict(data_in=b"x", ctx_in=bytes(16)),
        dict(ctx_in=bytes(104)),
        dict(ctx_in=bytes(16), cpu=1),
        dict(ctx_in=bytes(16), repeat=5),
    ):
        with pytest.raises(KernelError) as info:
            run_test(prog, **kwargs)
        assert info.value.errno == errno.EINVAL
