"""BPF_PROG_TEST_RUN: pybpf's XDP and skb test runs against the kernel's.

Each program (uBPF assembly) runs on the same packets — well-formed, short
and malformed — through :func:`pybpf.runtime.testrun.test_run`; retval, data_out
and ctx_out (or the errno) must equal the kernel's BPF_PROG_TEST_RUN as recorded
in ``kernel_facts/testrun_kernel.json`` (the live kernel is asked too, for drift).
"""

from __future__ import annotations

import errno
import functools
import random
import struct

import pytest

from pybpf.asm import ubpf
from pybpf.errors import KernelError
from pybpf.kernel import linux
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapType
from pybpf.runtime.progtypes import ProgType
from pybpf.runtime.testrun import test_run as run_test

XDP, SOCKET_FILTER, SCHED_CLS = ProgType.XDP, ProgType.SOCKET_FILTER, ProgType.SCHED_CLS


def ipv4_csum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(payload: bytes = b"hello", *, ttl: int = 64, proto: int = 17,
               dst_mac: bytes = bytes.fromhex("020000000002"), ethertype: int = 0x0800,
               daddr: bytes = bytes([10, 0, 0, 2])) -> bytes:  # fmt: skip
    udp = struct.pack("!HHHH", 1234, 53, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, ttl, proto, 0,
                     bytes([10, 0, 0, 1]), daddr)  # fmt: skip
    ip = ip[:10] + struct.pack("!H", ipv4_csum(ip)) + ip[12:]
    eth = dst_mac + bytes.fromhex("020000000001") + struct.pack("!H", ethertype)
    return eth + ip + udp


rng = random.Random(7)
PACKETS = {
    "udp": udp_packet(),
    "udp_ttl1": udp_packet(ttl=1, daddr=bytes([255, 255, 0, 0])),
    "udp_big": udp_packet(bytes(rng.randrange(256) for _ in range(1400))),
    "tcp_proto": udp_packet(proto=6),
    "arp": udp_packet(ethertype=0x0806),
    "broadcast": udp_packet(dst_mac=b"\xff" * 6),
    "multicast": udp_packet(dst_mac=bytes.fromhex("01005e000001")),
    "host": udp_packet(dst_mac=bytes(6)),
    "eth_only": bytes(range(14)),
    "short_ip": udp_packet()[:30],
    "no_udp": udp_packet()[:41],
    "llc": bytes(12) + b"\x00\x40" + b"\xff\xff" + bytes(30),
    "random": bytes(rng.randrange(256) for _ in range(97)),
}

# --- programs -----------------------------------------------------------------------------------
PARSE = """
    ldxw %r2, [%r1+0]
    ldxw %r3, [%r1+4]
    mov %r4, %r2
    add %r4, 42
    jgt %r4, %r3, pass
    ldxh %r5, [%r2+12]
    jne %r5, 0x0008, pass
    ldxb %r5, [%r2+14]
    and %r5, 0xf
    jne %r5, 5, pass
    ldxb %r5, [%r2+23]
    jne %r5, 17, pass
"""
SWAP_MACS = (
    PARSE
    + """
    ldxw %r6, [%r2+0]
    ldxh %r7, [%r2+4]
    ldxw %r8, [%r2+6]
    ldxh %r9, [%r2+10]
    stxw [%r2+0], %r8
    stxh [%r2+4], %r9
    stxw [%r2+6], %r6
    stxh [%r2+10], %r7
    mov %r0, 3
    exit
pass:
    mov %r0, 2
    exit
"""
)
# rewrite the IPv4 destination to 10.0.0.99 and fix the header checksum with bpf_csum_diff
REWRITE_DADDR = (
    PARSE
    + """
    mov %r7, %r2
    ldxw %r6, [%r7+30]
    stxw [%r10-8], %r6
    stw [%r10-4], 0x6300000a
    ldxh %r5, [%r7+24]
    xor %r5, 0xffff
    mov %r1, %r10
    add %r1, -8
    mov %r2, 4
    mov %r3, %r10
    add %r3, -4
    mov %r4, 4
    call 28
    xor %r0, 0xffff
    stxh [%r7+24], %r0
    ldxw %r6, [%r10-4]
    stxw [%r7+30], %r6
    mov %r0, 3
    exit
pass:
    mov %r0, 2
    exit
"""
)
# TTL decrement with a hand-written incremental checksum update (RFC 1624)
DEC_TTL = (
    PARSE
    + """
    ldxb %r5, [%r2+22]
    jle %r5, 1, drop
    ldxh %r6, [%r2+24]
    add %r6, 1
    mov %r7, %r6
    rsh %r7, 16
    add %r6, %r7
    and %r6, 0xffff
    stxh [%r2+24], %r6
    sub %r5, 1
    stxb [%r2+22], %r5
    mov %r0, 2
    exit
drop:
    mov %r0, 1
    exit
pass:
    mov %r0, 2
    exit
"""
)


def adjust(helper: int, offset: int, tail: str = "") -> str:
    """Call an adjust helper with ``offset``; on failure return its error as retval."""
    return f"""
    mov %r6, %r1
    mov %r2, {offset}
    call {helper}
    jne %r0, 0, fail
    ldxw %r2, [%r6+0]
    ldxw %r3, [%r6+4]
    ldxw %r4, [%r6+8]
    {tail}
    mov %r0, 3
    exit
fail:
    exit
"""


PUSH_TAG = adjust(
    44,
    -4,
    """
    mov %r5, %r2
    add %r5, 4
    jgt %r5, %r3, fail
    stw [%r2+0], 0x11223344
""",
)
POP_ETH = adjust(44, 14)
META = adjust(
    54,
    -8,
    """
    mov %r5, %r4
    add %r5, 8
    jgt %r5, %r2, fail
    stdw [%r4+0], 0x55667788
""",
)
XDP_PROGRAMS = {
    "swap_macs": SWAP_MACS,
    "rewrite_daddr": REWRITE_DADDR,
    "dec_ttl": DEC_TTL,
    "push_tag": PUSH_TAG,
    "pop_eth": POP_ETH,
    "head_too_far": adjust(44, -300),
    "tail_shrink": adjust(65, -10),
    "tail_grow": adjust(65, 20),
    "tail_too_short": adjust(65, -1000),
    "tail_too_long": adjust(65, 4000),
    "meta": META,
    "meta_bad_len": adjust(54, -6),
    "redirect": "mov %r1, 5\nmov %r2, 0\ncall 23\nexit",
    "redirect_flags": "mov %r1, 5\nmov %r2, 1\ncall 23\nexit",
    "ctx_fields": """
        ldxw %r2, [%r1+12]
        ldxw %r3, [%r1+16]
        lsh %r2, 8
        or %r2, %r3
        ldxw %r3, [%r1+0]
        ldxw %r4, [%r1+4]
        sub %r4, %r3
        lsh %r4, 16
        or %r2, %r4
        mov %r0, %r2
        exit
    """,
}


def pybpf_outcome(insns, prog_type, packet: bytes, ctx_in: bytes | None = None):
    """(retval, data_out, ctx_out) of pybpf's test run, or ('errno', n)."""
    prog = Kernel().prog_load(insns, prog_type)
    try:
        r = run_test(prog, data_in=packet, ctx_in=ctx_in)
        return (r.retval, r.data_out, r.ctx_out or b"")
    except KernelError as err:
        return ("errno", err.errno)


def kernel_outcome(insns, prog_type, packet: bytes, ctx_in: bytes | None = None):
    """The same through the live kernel's BPF_PROG_TEST_RUN (a probe for kernel_facts)."""
    with linux.prog_load(insns, prog_type=int(prog_type)) as kprog:
        try:
            k = kprog.test_run(packet, ctx_in=ctx_in)
            return (k.retval, k.data_out, k.ctx_out)
        except KernelError as err:
            return ("errno", err.errno)


def check_run(facts, key: str, insns, prog_type, packet: bytes, ctx_in: bytes | None = None):
    ours = pybpf_outcome(insns, prog_type, packet, ctx_in)
    facts.check(key, ours, lambda: kernel_outcome(insns, prog_type, packet, ctx_in))


# --- pybpf alone -------------------------------------------------------------------------------
def test_xdp_programs_do_what_they_say():
    kernel = Kernel()
    load = lambda name: kernel.prog_load(ubpf.assemble(XDP_PROGRAMS[name]), XDP)  # noqa: E731
    pkt = PACKETS["udp"]
    out = run_test(load("swap_macs"), pkt)
    assert out.retval == 3 and out.data_out == pkt[6:12] + pkt[0:6] + pkt[12:]
    out = run_test(load("rewrite_daddr"), pkt)
    assert out.data_out[30:34] == bytes([10, 0, 0, 99]) and ipv4_csum(out.data_out[14:34]) == 0
    out = run_test(load("dec_ttl"), pkt)
    assert out.data_out[22] == 63 and ipv4_csum(out.data_out[14:34]) == 0
    assert run_test(load("push_tag"), pkt).data_out == struct.pack("<I", 0x11223344) + pkt
    assert run_test(load("pop_eth"), pkt).data_out == pkt[14:]
    assert run_test(load("head_too_far"), pkt).retval == (-errno.EINVAL) & 0xFFFFFFFF
    assert run_test(load("tail_grow"), pkt).data_out == pkt + bytes(20)
    assert run_test(load("tail_shrink"), pkt).data_out == pkt[:-10]
    out = run_test(load("meta"), pkt)
    assert out.data_out == struct.pack("<Q", 0x55667788) + pkt
    assert run_test(load("meta_bad_len"), pkt).retval == (-errno.EACCES) & 0xFFFFFFFF
    assert run_test(load("redirect"), pkt).retval == 4
    assert run_test(load("redirect_flags"), pkt).retval == 0
    assert run_test(load("ctx_fields"), pkt).retval == (len(pkt) << 16) | (1 << 8)


def test_xdp_test_run_checks():
    prog = Kernel().prog_load(ubpf.assemble("mov %r0, 2\nexit"), XDP)
    for kwargs in (
        dict(data_in=bytes(13)),
        dict(data_in=bytes(20), flags=4),
        dict(data_in=bytes(20), ctx_in=struct.pack("<6I", 0, 20, 4, 0, 0, 0)),
        dict(data_in=bytes(20), ctx_in=struct.pack("<6I", 2, 20, 0, 0, 0, 0)),
        dict(data_in=bytes(20), ctx_in=struct.pack("<6I", 0, 21, 0, 0, 0, 0)),
        dict(data_in=bytes(20), ctx_in=struct.pack("<6I", 0, 20, 0, 0, 1, 0)),
    ):
        with pytest.raises(KernelError) as info:
            run_test(prog, **kwargs)
        assert info.value.errno == errno.EINVAL, kwargs
    with pytest.raises(KernelError) as info:
        run_test(prog, data_in=bytes(20), ctx_in=struct.pack("<6I", 0, 20, 0, 99, 0, 0))
    assert info.value.errno == errno.ENODEV
    with pytest.raises(KernelError) as info:
        run_test(prog, data_in=bytes(64), data_size_out=10)
    assert info.value.errno == errno.ENOSPC and info.value.result.data_out == bytes(10)
    assert info.value.result.data_size_out == 64
    out = run_test(prog, data_in=bytes(range(24)), ctx_in=struct.pack("<6I", 8, 24, 0, 1, 0, 0))
    assert out.data_out == bytes(range(24))  # the meta data is part of data_out
    assert out.ctx_out == struct.pack("<6I", 8, 24, 0, 1, 0, 0)
    assert run_test(prog, data_in=bytes(20), repeat=100).duration_ns >= 0


def test_skb_test_run_builds_the_skb():
    kernel = Kernel()
    # cb[0] = len, cb[1] = protocol, cb[2] = pkt_type, cb[3] = ifindex, cb[4] = protocol byte 1
    src = """
        ldxw %r2, [%r1+0]
        stxw [%r1+48], %r2
        ldxw %r2, [%r1+16]
        stxw [%r1+52], %r2
        ldxw %r2, [%r1+4]
        stxw [%r1+56], %r2
        ldxw %r2, [%r1+40]
        stxw [%r1+60], %r2
        ldxb %r2, [%r1+17]
        stxw [%r1+64], %r2
        ldxw %r0, [%r1+8]
        exit
    """
    prog = kernel.prog_load(ubpf.assemble(src), SOCKET_FILTER)
    pkt = PACKETS["broadcast"]
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 8, 77)
    out = run_test(prog, data_in=pkt, ctx_in=bytes(ctx))
    cb = struct.unpack_from("<5I", out.ctx_out, 48)
    assert out.retval == 77 and cb == (len(pkt) - 14, 0x0008, 2, 1, 0)  # lo: multicast
    assert out.data_out == bytes(14) + pkt[14:]  # socket filters get a zeroed MAC header
    tc = kernel.prog_load(ubpf.assemble(src), SCHED_CLS)
    out = run_test(tc, data_in=pkt, ctx_in=bytes(ctx))
    assert struct.unpack_from("<I", out.ctx_out, 48)[0] == len(pkt) and out.data_out == pkt


def test_skb_ctx_in_refuses_fields_the_kernel_refuses():
    prog = Kernel().prog_load(ubpf.assemble("mov %r0, 0\nexit"), SOCKET_FILTER)
    ctx = bytearray(192)
    ctx[0] = 1  # len may not be set
    with pytest.raises(KernelError) as info:
        run_test(prog, data_in=bytes(20), ctx_in=bytes(ctx))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as info:
        run_test(prog, data_in=bytes(13))
    assert info.value.errno == errno.EINVAL


# --- against the kernel ------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(XDP_PROGRAMS))
def test_xdp_matches_kernel(kernel_facts, name):
    insns = ubpf.assemble(XDP_PROGRAMS[name])
    packets = dict(PACKETS, too_short=bytes(13), empty=b"")
    for label, packet in packets.items():
        check_run(kernel_facts, f"xdp/{name}/{label}", insns, XDP, packet)


XDP_CTX_CASES = {
    "meta8": struct.pack("<6I", 8, 60, 0, 0, 0, 0),
    "meta_lo": struct.pack("<6I", 4, 50, 0, 1, 0, 0),
    "linear_part": struct.pack("<6I", 0, 30, 0, 0, 0, 0),
    "meta_unaligned": struct.pack("<6I", 6, 60, 0, 0, 0, 0),
    "data_meta_set": struct.pack("<6I", 0, 60, 4, 0, 0, 0),
    "egress": struct.pack("<6I", 0, 60, 0, 0, 0, 1),
    "queue_without_dev": struct.pack("<6I", 0, 60, 0, 0, 1, 0),
    "queue_too_big": struct.pack("<6I", 0, 60, 0, 1, 5, 0),
    "end_beyond": struct.pack("<6I", 0, 61, 0, 0, 0, 0),
}


@pytest.mark.parametrize("case", sorted(XDP_CTX_CASES))
@pytest.mark.parametrize("name", ["meta", "ctx_fields", "push_tag", "tail_grow", "pop_eth"])
def test_xdp_ctx_in_matches_kernel(kernel_facts, name, case):
    packet = udp_packet(bytes(60 - 42))
    check_run(kernel_facts, f"xdp_ctx/{name}/{case}", ubpf.assemble(XDP_PROGRAMS[name]), XDP,
              packet, XDP_CTX_CASES[case])


SKB_FIELDS = """
    ldxw %r2, [%r1+0]
    stxw [%r1+48], %r2
    ldxw %r2, [%r1+16]
    stxw [%r1+52], %r2
    ldxw %r2, [%r1+4]
    stxw [%r1+56], %r2
    ldxh %r2, [%r1+18]
    ldxb %r3, [%r1+17]
    lsh %r3, 8
    or %r2, %r3
    ldxw %r3, [%r1+40]
    lsh %r3, 16
    or %r2, %r3
    stxw [%r1+60], %r2
    ldxw %r2, [%r1+36]
    ldxw %r3, [%r1+20]
    lsh %r3, 4
    or %r2, %r3
    ldxw %r3, [%r1+12]
    or %r2, %r3
    stxw [%r1+64], %r2
    ldxw %r0, [%r1+8]
    ldxw %r2, [%r1+32]
    add %r0, %r2
    exit
"""
TC_PROGRAM = (
    SKB_FIELDS.replace("    exit\n", "")
    + """
    ldxw %r2, [%r1+160]
    stxw [%r1+48], %r2
    stw [%r1+8], 99
    stw [%r1+32], 5
    ldxw %r2, [%r1+76]
    ldxw %r3, [%r1+80]
    mov %r4, %r2
    add %r4, 34
    jgt %r4, %r3, out
    ldxh %r5, [%r2+12]
    jne %r5, 0x0008, out
    mov %r6, %r1
    ldxb %r7, [%r2+22]
    mov %r8, %r7
    sub %r8, 1
    stxb [%r10-1], %r8
    lsh %r7, 8
    lsh %r8, 8
    mov %r1, %r6
    mov %r2, 24
    mov %r3, %r7
    mov %r4, %r8
    mov %r5, 2
    call 10
    mov %r1, %r6
    mov %r2, 22
    mov %r3, %r10
    add %r3, -1
    mov %r4, 1
    mov %r5, 0
    call 9
    mov %r1, %r6
    mov %r2, 26
    mov %r3, %r10
    add %r3, -8
    mov %r4, 4
    call 26
    ldxw %r0, [%r10-8]
out:
    exit
"""
)
SOCKET_PROGRAM = (
    SKB_FIELDS.replace("    exit\n", "")
    + """
    mov %r6, %r1
    mov %r7, %r0
    ldabsb 9
    add %r0, %r7
    lsh %r0, 8
    mov %r1, %r6
    mov %r2, 12
    mov %r3, %r10
    add %r3, -4
    mov %r4, 4
    call 26
    ldxw %r1, [%r10-4]
    add %r0, %r1
    exit
"""
)


def skb_ctx(**fields) -> bytes:
    ctx = bytearray(192)
    offsets = {"mark": 8, "priority": 32, "ingress_ifindex": 36, "ifindex": 40, "wire_len": 160,
               "cb0": 48, "gso_segs": 164, "len": 0, "tc_index": 44}  # fmt: skip
    for name, value in fields.items():
        struct.pack_into("<I", ctx, offsets[name], value)
    return bytes(ctx)


SKB_CTX_CASES = {
    "none": None,
    "zero": skb_ctx(),
    "fields": skb_ctx(mark=3, priority=4, ingress_ifindex=1, cb0=0xABCD),
    "wire_len": skb_ctx(wire_len=2000),
    "wire_len_short": skb_ctx(wire_len=10),
    "gso_segs": skb_ctx(gso_segs=70000),
    "len_set": skb_ctx(len=5),
    "tc_index_set": skb_ctx(tc_index=5),
    "no_device": skb_ctx(ifindex=4242),
}


@pytest.mark.parametrize("case", sorted(SKB_CTX_CASES))
@pytest.mark.parametrize(
    "prog_type, src",
    [(SOCKET_FILTER, SOCKET_PROGRAM), (SCHED_CLS, TC_PROGRAM)],
    ids=["socket", "tc"],
)
def test_skb_matches_kernel(kernel_facts, prog_type, src, case):
    insns = ubpf.assemble(src)
    for label, packet in dict(PACKETS, too_short=bytes(13)).items():
        check_run(kernel_facts, f"skb/{prog_type.name.lower()}/{case}/{label}", insns, prog_type,
                  packet, SKB_CTX_CASES[case])


def test_helper_availability_matches_kernel(kernel_facts):
    cases = [(SOCKET_FILTER, 23), (SOCKET_FILTER, 26), (XDP, 9), (XDP, 44), (SCHED_CLS, 44),
             (SCHED_CLS, 10), (XDP, 28), (SOCKET_FILTER, 28)]  # fmt: skip
    for prog_type, helper in cases:
        insns = ubpf.assemble(f"mov %r1, 0\nmov %r2, 0\ncall {helper}\nmov %r0, 0\nexit")
        try:
            Kernel(verify=False).prog_load(insns, prog_type)  # availability only
            ours = True
        except KernelError:
            ours = False
        kernel_facts.check(f"helper/{prog_type.name.lower()}/{helper}", ours,
                           functools.partial(kernel_has_helper, insns, prog_type))


def kernel_has_helper(insns, prog_type) -> bool:
    """Refused for availability: False; loaded, or refused for other reasons: True."""
    try:
        linux.prog_load(insns, prog_type=int(prog_type), log_level=1).close()
    except KernelError as err:
        return "cannot use helper" not in err.log and "unknown func" not in err.log
    return True


REDIRECT_MAP_CASES = [(0, 2), (3, 2), (3, 1), (0, 64), (3, 1 << 3), (0, 5)]


def redirect_map_src(fd: int, key: int, flags: int) -> str:
    return f"lddw %r1, map_fd({fd})\nmov %r2, {key}\nmov %r3, {flags}\ncall 51\nexit"


@pytest.mark.parametrize("key, flags", REDIRECT_MAP_CASES)
def test_redirect_map_matches_kernel(kernel_facts, key, flags):
    """devmap key 0 -> loopback; a miss returns the low flag bits; bad flags abort."""
    kernel = Kernel()
    dm = kernel.map_create(MapAttr(MapType.DEVMAP, 4, 4, 4, 0, "dm"))
    dm.update((0).to_bytes(4, "little"), (1).to_bytes(4, "little"))
    ours_prog = kernel.prog_load(ubpf.assemble(redirect_map_src(3, key, flags)), XDP,
                                 maps={3: dm})  # fmt: skip
    ours = run_test(ours_prog, PACKETS["udp"]).retval
    expected = {(0, 2): 4, (3, 2): 2, (3, 1): 1, (0, 64): 0, (3, 8): 4, (0, 5): 0}
    assert ours == expected[key, flags]
    kernel_facts.check(f"redirect_map/{key}/{flags}", ours, lambda: kernel_redirect(key, flags))


def kernel_redirect(key: int, flags: int) -> int:
    with linux.map_create(int(MapType.DEVMAP), 4, 4, 4) as kmap:
        kmap.update((0).to_bytes(4, "little"), (1).to_bytes(4, "little"))
        insns = ubpf.assemble(redirect_map_src(kmap.fd, key, flags))
        with linux.prog_load(insns, prog_type=int(XDP)) as kprog:
            return kprog.test_run(PACKETS["udp"]).retval
