"""Native context loads: the converted image the JIT reads instead of calling Python.

The image of a context (:class:`pybpf.runtime.context.CtxImage`) must hold
exactly what :meth:`CtxRegion.load` returns for every load it answers, stay
so whatever changes the state it mirrors, and let the JIT run context loads
without a Python call; loads it does not answer (refused, narrow where the
kernel refuses, sign-extending) keep the interpreter's result or fault.
The XDP and skb test runs of ``test_testrun_kernel`` run here under the JIT
and must agree with the interpreter and with the kernel's answers recorded for
that module (``kernel_facts/testrun_kernel.json``: the same runs, one recording;
the live kernel is asked too, for drift).
"""

from __future__ import annotations

import functools
import struct

import pytest

from pybpf.asm import ubpf
from pybpf.errors import KernelError, MemoryFault
from pybpf.jit.abi import IMAGE_WIDTHS, ctx_image_layout
from pybpf.jit.engine import JitProgram
from pybpf.runtime.context import (
    NET_SKB_PAD,
    CtxRegion,
    SkBuff,
    SkBuffCtx,
    XdpBuff,
    XdpMd,
)
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.testrun import test_run as run_test
from pybpf.testing import kernel_plugin
from pybpf.vm.interpreter import Interpreter
from pybpf.vm.memory import Memory
from test_testrun_kernel import (
    PACKETS,
    SCHED_CLS,
    SKB_CTX_CASES,
    SOCKET_FILTER,
    SOCKET_PROGRAM,
    TC_PROGRAM,
    XDP,
    XDP_CTX_CASES,
    XDP_PROGRAMS,
    kernel_outcome,
    udp_packet,
)

SKB_KINDS = ("socket_filter", "sched_cls", "sched_act", "cgroup_skb")


def xdp_md(devmap: bool = False) -> XdpMd:
    return XdpMd(XdpBuff(headroom=256, linear=udp_packet(), meta_len=0,
                         ingress_ifindex=1, rx_queue_index=0), devmap=devmap)  # fmt: skip


def sk_buff(kind: str) -> SkBuffCtx:
    skb = SkBuff(frame_size=1024, data=NET_SKB_PAD, len=60, writable=True)
    skb.protocol, skb.pkt_type, skb.mark, skb.vlan_all, skb.napi_id = 0x0008, 3, 7, 1, 9000
    skb.sk_family, skb.sk_saddr, skb.sk_daddr = 10, bytes(range(16)), bytes(range(16, 32))
    skb.cb[:] = bytes(range(100, 120))
    return SkBuffCtx(skb, kind)


def image_disagreements(ctx: CtxRegion) -> list[tuple[int, int, int | None, object]]:
    """Every (off, width) whose image answer is not what load() gives."""
    bad = []
    for off in range(ctx.size):
        for width in IMAGE_WIDTHS:
            answer = ctx.image.value(off, width)
            if answer is None:
                continue
            try:
                expected: object = ctx.load(0, off, width)
            except MemoryFault as err:
                expected = err
            if answer != expected:
                bad.append((off, width, answer, expected))
    return bad


def answered(ctx: CtxRegion) -> set[tuple[int, int]]:
    return {(o, w) for o in range(ctx.size) for w in IMAGE_WIDTHS
            if ctx.image.value(o, w) is not None}  # fmt: skip


# --- the image --------------------------------------------------------------------------------
@pytest.mark.parametrize("devmap", [False, True])
def test_xdp_image_answers_every_valid_load(devmap):
    md = xdp_md(devmap)
    assert not image_disagreements(md)
    fields = 6 if devmap else 5
    assert answered(md) == {(4 * i, 4) for i in range(fields)}
    assert md.image.value(0, 4) == md.xdp.address(md.xdp.data)


@pytest.mark.parametrize("kind", SKB_KINDS)
def test_skb_image_answers_exactly_the_loads_that_do_not_fault(kind):
    ctx = sk_buff(kind)
    assert not image_disagreements(ctx)
    for off in range(ctx.size):
        for width in IMAGE_WIDTHS:
            try:
                ctx.load(0, off, width)
                valid = True
            except MemoryFault:
                valid = False
            assert (ctx.image.value(off, width) is not None) == valid, (kind, off, width)


XDP_CHANGES = [("data", 250), ("data_end", 300), ("data_meta", 240), ("ingress_ifindex", 5),
               ("rx_queue_index", 3), ("egress_ifindex", 9)]  # fmt: skip
SKB_CHANGES = [
    ("data", 80), ("len", 33), ("meta_len", 8), ("protocol", 0xDD86), ("pkt_type", 9),
    ("mark", 0xFFFFFFFF), ("priority", 12), ("queue_mapping", 4), ("vlan_all", 0),
    ("vlan_tci", 0x1234), ("vlan_proto", 0xA888), ("skb_iif", 3), ("ifindex", 4), ("hash", 77),
    ("tc_index", 0xFFFF), ("tc_classid", 6), ("napi_id", 100), ("tstamp", 1 << 40),
    ("wire_len", 99), ("gso_segs", 2), ("gso_size", 1400), ("hwtstamp", 5 << 33),
    ("sk_family", 2), ("sk_saddr", bytes(range(50, 66))), ("sk_daddr", bytes(range(70, 86))),
    ("cb", bytearray(range(1, 21))),
]  # fmt: skip


@pytest.mark.parametrize("attr, value", XDP_CHANGES)
def test_xdp_image_follows_the_buffer(attr, value):
    md = xdp_md(devmap=True)
    setattr(md.xdp, attr, value)
    assert not image_disagreements(md)


@pytest.mark.parametrize("kind", ["sched_cls", "cgroup_skb"])
@pytest.mark.parametrize("attr, value", SKB_CHANGES)
def test_skb_image_follows_the_sk_buff(kind, attr, value):
    ctx = sk_buff(kind)
    before = answered(ctx)
    setattr(ctx.skb, attr, value)
    assert not image_disagreements(ctx) and answered(ctx) == before


@pytest.mark.parametrize("off, size, value", [(48, 4, 0xDEADBEEF), (50, 1, 0x7F), (56, 8, -1),
                                              (8, 4, 0x12345678), (44, 4, 0x10002),
                                              (12, 4, 3), (152, 8, 1 << 50)])  # fmt: skip
def test_skb_image_follows_program_stores(off, size, value):
    ctx = sk_buff("sched_cls")
    ctx.store(0, off, size, value & ((1 << 64) - 1))
    assert not image_disagreements(ctx)


# --- the JIT reads it ---------------------------------------------------------------------------
class Counting(XdpMd):
    """An xdp_md counting the loads that reach Python."""

    calls = 0

    def __init__(self) -> None:
        super().__init__(xdp_md().xdp)

    def load(self, pc: int, off: int, size: int) -> int:
        self.calls += 1
        return super().load(pc, off, size)


FIELD_SUM = """
    ldxw %r2, [%r1+0]
    ldxw %r3, [%r1+4]
    sub %r3, %r2
    ldxw %r4, [%r1+12]
    ldxw %r5, [%r1+16]
    mov %r0, %r3
    lsh %r0, 16
    add %r0, %r4
    add %r0, %r5
    exit
"""


@pytest.mark.parametrize("checked", [True, False])
def test_jit_context_loads_stay_native(checked):
    md = Counting()
    calls_at_build = md.calls
    memory = Memory()
    memory.add(md)
    want = (len(udp_packet()) << 16) + 1
    vm = Interpreter(ubpf.assemble(FIELD_SUM), memory=memory)
    assert vm.run(args=[md.base]).r0 == want
    assert md.calls - calls_at_build == 4  # the interpreter converts in Python
    prog = JitProgram(ubpf.assemble(FIELD_SUM), memory=memory, checked=checked)
    try:
        before = md.calls
        assert prog.run(args=[md.base]).r0 == want
        assert md.calls == before  # the JIT read the image
    finally:
        prog.close()


LOADS = [
    ("xdp", "ldxw %r0, [%r1+0]"), ("xdp", "ldxdw %r0, [%r1+0]"), ("xdp", "ldxb %r0, [%r1+4]"),
    ("xdp", "ldxh %r0, [%r1+2]"), ("xdp", "ldxw %r0, [%r1+20]"), ("xdp", "ldxw %r0, [%r1+24]"),
    ("xdp", "ldxw %r0, [%r1-4]"), ("xdp", "ldxw %r0, [%r1+2]"), ("xdp", "ldxsw %r0, [%r1+12]"),
    ("xdp", "stw [%r1+0], 1\nmov %r0, 0"),
    ("skb", "ldxw %r0, [%r1+0]"), ("skb", "ldxb %r0, [%r1+17]"), ("skb", "ldxh %r0, [%r1+18]"),
    ("skb", "ldxb %r0, [%r1+4]"), ("skb", "ldxdw %r0, [%r1+48]"), ("skb", "ldxdw %r0, [%r1+64]"),
    ("skb", "ldxdw %r0, [%r1+152]"), ("skb", "ldxw %r0, [%r1+152]"),
    ("skb", "ldxw %r0, [%r1+76]"), ("skb", "ldxh %r0, [%r1+76]"), ("skb", "ldxw %r0, [%r1+92]"),
    ("skb", "ldxw %r0, [%r1+144]"), ("skb", "ldxsb %r0, [%r1+50]"), ("skb", "ldxsh %r0, [%r1+8]"),
    ("skb", "ldxw %r0, [%r1+192]"), ("skb", "ldxw %r0, [%r1+181]"), ("skb", "ldxb %r0, [%r1+180]"),
    ("skb", "stw [%r1+8], -3\nldxw %r0, [%r1+8]"),
    ("skb", "stb [%r1+49], 200\nldxdw %r0, [%r1+48]"),
    ("skb", "stw [%r1+0], 1\nmov %r0, 0"),
]  # fmt: skip


OUTSIDE = {("xdp", "ldxw %r0, [%r1-4]"), ("xdp", "ldxw %r0, [%r1+24]"),
           ("skb", "ldxw %r0, [%r1+192]")}  # fmt: skip


def outcome(engine, ctx: CtxRegion):
    try:
        return engine.run(args=[ctx.base]).r0
    except MemoryFault as err:
        return (type(err).__name__, str(err))


@pytest.mark.parametrize("checked", [True, False])
@pytest.mark.parametrize("which, src", LOADS)
def test_jit_context_access_matches_the_interpreter(which, src, checked):
    make = (lambda: xdp_md()) if which == "xdp" else (lambda: sk_buff("sched_cls"))
    if not checked and (which, src) in OUTSIDE:
        pytest.skip("outside the context: trusting mode leaves it to the verifier")
    insns = ubpf.assemble(src + "\nexit")
    ctx_a, ctx_b = make(), make()
    mem_a, mem_b = Memory(), Memory()
    mem_a.add(ctx_a), mem_b.add(ctx_b)
    want = outcome(Interpreter(insns, memory=mem_a), ctx_a)
    prog = JitProgram(insns, memory=mem_b, checked=checked)
    try:
        got = outcome(prog, ctx_b)
    finally:
        prog.close()
    if isinstance(want, tuple):  # same fault, at the same pc; addresses differ per region
        assert isinstance(got, tuple) and got[0] == want[0]
        assert got[1].replace(hex(ctx_b.base), "@").split(" at ")[0] == \
            want[1].replace(hex(ctx_a.base), "@").split(" at ")[0]  # fmt: skip
    elif which == "xdp" and src.startswith("ldxw %r0, [%r1+0]"):  # an address: relative
        assert got - ctx_b.xdp.base == want - ctx_a.xdp.base
    elif "[%r1+76]" in src and src.startswith("ldxw"):
        assert got - ctx_b.skb.base == want - ctx_a.skb.base
    else:
        assert got == want
    assert not image_disagreements(ctx_b)


# --- test runs under the JIT: against the interpreter and the kernel -----------------------------
def run_both(insns, prog_type, packet: bytes, ctx_in: bytes | None = None, repeat: int = 1):
    """(interpreter outcome, JIT outcome) of one test run of an unverified program."""
    outs = []
    for engine in ("interp", "jit"):
        prog = Kernel(verify=False).prog_load(insns, prog_type, engine=engine)
        try:
            r = run_test(prog, data_in=packet, ctx_in=ctx_in, repeat=repeat)
            outs.append((r.retval, r.data_out, r.ctx_out or b""))
        except KernelError as err:
            outs.append(("errno", err.errno))
        finally:
            prog.release()
    return outs


@pytest.fixture
def testrun_facts(kernel_facts, request):
    """The kernel's answers recorded by ``test_testrun_kernel`` for the same test runs;
    their drift is this test's (it shares the ``kernel_facts`` fixture's drift list)."""
    facts = kernel_plugin.oracle(request.config, request.path, name="testrun_kernel")
    facts.drifts = kernel_facts.drifts
    return facts


def check_jit(facts, key: str, insns, prog_type, packet: bytes, ctx_in: bytes | None = None):
    """The JIT's run equals the interpreter's and the kernel's recorded one."""
    interp, jit = run_both(insns, prog_type, packet, ctx_in)
    assert jit == interp, key
    facts.check(key, jit, functools.partial(kernel_outcome, insns, prog_type, packet, ctx_in))


@pytest.mark.parametrize("name", sorted(XDP_PROGRAMS))
def test_xdp_programs_agree_under_the_jit(testrun_facts, name):
    insns = ubpf.assemble(XDP_PROGRAMS[name])
    for label, packet in dict(PACKETS, too_short=bytes(13)).items():
        check_jit(testrun_facts, f"xdp/{name}/{label}", insns, XDP, packet)


@pytest.mark.parametrize("case", sorted(XDP_CTX_CASES))
@pytest.mark.parametrize("name", ["meta", "ctx_fields", "push_tag", "tail_grow", "pop_eth"])
def test_xdp_ctx_in_agrees_under_the_jit(testrun_facts, name, case):
    check_jit(testrun_facts, f"xdp_ctx/{name}/{case}", ubpf.assemble(XDP_PROGRAMS[name]), XDP,
              udp_packet(bytes(60 - 42)), XDP_CTX_CASES[case])


@pytest.mark.parametrize("case", sorted(SKB_CTX_CASES))
@pytest.mark.parametrize("prog_type, src", [(SOCKET_FILTER, SOCKET_PROGRAM),
                                            (SCHED_CLS, TC_PROGRAM)], ids=["socket", "tc"])
def test_skb_runs_agree_under_the_jit(testrun_facts, prog_type, src, case):
    insns = ubpf.assemble(src)
    for label, packet in dict(PACKETS, too_short=bytes(13)).items():
        check_jit(testrun_facts, f"skb/{prog_type.name.lower()}/{case}/{label}", insns,
                  prog_type, packet, SKB_CTX_CASES[case])


def test_repeated_runs_keep_the_image_current():
    """push_tag moves data on each repetition: the image must follow every move."""
    insns = ubpf.assemble(XDP_PROGRAMS["push_tag"])
    interp, jit = run_both(insns, XDP, PACKETS["udp"], repeat=50)
    assert jit == interp and jit[1] != PACKETS["udp"]


def test_the_image_layout_is_the_abi_one():
    md = xdp_md()
    flags, total = ctx_image_layout(md.size)
    assert (flags, total) == (8 * 4 * 24, 8 * 4 * 24 + 24)
    word = struct.unpack_from("<Q", md.image.buf, 8 * (2 * 24 + 4))[0]  # class 2: 4 bytes
    assert word == md.load(0, 4, 4) and md.image.buf[flags + 4] == 1 << 2


def fixup(op: str, value: int) -> int:
    return ((value ^ 1 << 31) - (1 << 31)) & ((1 << 64) - 1) if op == "ldxsw" else value


def contexts() -> dict[str, CtxRegion]:
    out: dict[str, CtxRegion] = {"xdp": xdp_md(), "xdp_devmap": xdp_md(devmap=True)}
    out.update({kind: sk_buff(kind) for kind in SKB_KINDS})
    return out


@pytest.mark.parametrize("name", ["xdp", "xdp_devmap", *SKB_KINDS])
@pytest.mark.parametrize("op", ["ldxb", "ldxh", "ldxw", "ldxdw", "ldxsb", "ldxsh", "ldxsw"])
def test_every_context_offset_agrees_with_the_interpreter(name, op):
    """r1 + r2 for every r2 around the context: value or fault, as the interpreter."""
    insns = ubpf.assemble(f"add %r1, %r2\n{op} %r0, [%r1+0]\nexit")
    ctx_a, ctx_b = contexts()[name], contexts()[name]
    mem_a, mem_b = Memory(), Memory()
    mem_a.add(ctx_a), mem_b.add(ctx_b)
    vm = Interpreter(insns, memory=mem_a)
    prog = JitProgram(insns, memory=mem_b, checked=True)
    pointers = {76, 80, 140} if name not in ("xdp", "xdp_devmap") else {0, 4, 8}
    try:
        for off in range(-8, ctx_a.size + 8):
            def run(engine, ctx, off=off):
                try:
                    return engine.run(args=[ctx.base, off & ((1 << 64) - 1)]).r0
                except MemoryFault as err:
                    return str(err).replace(hex(ctx.base + off), "@")

            want, got = run(vm, ctx_a), run(prog, ctx_b)
            if isinstance(want, int) and off in pointers and op in ("ldxw", "ldxsw"):
                # addresses differ per context: each engine loads its own context's pointer
                # (ldxsw: the interpreter's sign fix-up, which does not truncate the pointer)
                assert want == fixup(op, ctx_a.load(0, off, 4)), (name, op, off)
                want, got = "pointer", "pointer" if got == fixup(op, ctx_b.load(0, off, 4)) else got
            assert got == want, (name, op, off)
    finally:
        prog.close()


LOOP_READS_CTX = """
    stxdw [%r10-16], %r1
    stdw [%r10-8], 0
    mov %r1, 3
    lddw %r2, func(body)
    mov %r3, %r10
    add %r3, -16
    mov %r4, 0
    call 181
    ldxdw %r0, [%r10-8]
    exit
body:
    ldxdw %r3, [%r2+0]
    ldxw %r4, [%r3+4]
    ldxw %r5, [%r3+0]
    sub %r4, %r5
    ldxdw %r5, [%r2+8]
    add %r5, %r4
    stxdw [%r2+8], %r5
    mov %r0, 0
    exit
"""


@pytest.mark.parametrize("checked", [True, False])
def test_a_callback_reads_the_runs_context(checked, monkeypatch):
    """bpf_loop's callback reaches the context through a spilled pointer: same fields."""
    from pybpf.runtime import engines

    build = engines.build  # trusting mode as for a verified program (subprograms need BTF)
    monkeypatch.setattr(engines, "JIT_CHECKED_DEFAULT", checked)
    monkeypatch.setattr(engines, "build", lambda name, insns, verified=False, **kw:
                        build(name, insns, verified=True, **kw))  # fmt: skip
    packet = PACKETS["udp"]
    interp, jit = run_both(ubpf.assemble(LOOP_READS_CTX), XDP, packet)
    assert jit == interp and jit[0] == 3 * len(packet)
