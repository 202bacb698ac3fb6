"""BPF_PROG_TEST_RUN as Linux 6.18 does it (net/bpf/test_run.c).

:func:`test_run` runs a loaded program on a packet (or a context) the way
``bpf_prog_test_run_xdp`` / ``_skb`` / ``_raw_tp`` do, with their argument
checks and errno values (:class:`~pybpf.errors.KernelError`):

* **XDP**: the packet is copied into a page after ``XDP_PACKET_HEADROOM``
  (256) bytes, minus the meta data a ``ctx_in`` (``struct xdp_md``) asks for
  (``data`` = meta length, ``data_end`` = linear length; the rest of
  ``data_in`` becomes fragments); the tailroom is the page's last 320 bytes
  (``skb_shared_info``).  ``data_out`` is ``data_meta .. data_end`` (meta data
  included) plus the fragments; ``ctx_out`` has ``data`` / ``data_end``
  relative to ``data_meta``.  EINVAL for a packet shorter than ETH_HLEN
  (after the meta), a bad ``xdp_md``, flags other than LIVE_FRAMES, a
  devmap / cpumap program; ENODEV for an unknown ``ingress_ifindex``.
* **skb types** (socket_filter, sched_cls, sched_act, cgroup_skb): the
  packet is an Ethernet frame put in an skb on the loopback device;
  ``eth_type_trans`` sets ``protocol`` and ``pkt_type`` and pulls the header,
  which sched_cls / sched_act get pushed back (their ``data`` is the MAC
  header, the others' the network header and ``len`` 14 shorter).  After
  the run the others get 14 zero bytes pushed in front: their ``data_out``
  starts with a zeroed Ethernet header.  ``ctx_in`` may set only the fields
  ``convert___skb_to_skb`` accepts (EINVAL otherwise).
* **raw_tracepoint**: ``ctx_in`` is the u64 args (at most 12); no data, no
  repeat, duration 0.
* kprobe, tracepoint and perf_event have no test run (ENOTSUPP, 524, as the
  kernel answers); :func:`run_context` runs them on a synthetic context.

``retval`` is the u32 the kernel reports; ``duration_ns`` the average time of
one repetition (``repeat`` 0 runs once, as the kernel does); repetitions run
on the same buffer, so changes accumulate as in the kernel.  When
``data_size_out`` is given and too small the kernel copies that much and
fails with ENOSPC: the KernelError then carries ``result`` (the truncated
data and the full ``data_size_out``).  Faults of a program the verifier
would have refused propagate as :class:`~pybpf.errors.VmError`.
``BPF_F_TEST_XDP_LIVE_FRAMES`` and ``BPF_F_TEST_SKB_CHECKSUM_COMPLETE`` are
not modelled (EOPNOTSUPP).  Network devices are ``kernel.netdevs`` when the
kernel defines it (ifindex -> number of rx queues), else loopback only.
"""

from __future__ import annotations

import errno
import struct
import time
from dataclasses import dataclass

from pybpf.errors import KernelError
from pybpf.runtime.context import (
    ETH_HLEN,
    LOOPBACK_IFINDEX,
    META_MAX,
    NET_SKB_PAD,
    PAGE_SIZE,
    SK_BUFF_SIZE,
    SKB_SHARED_INFO,
    XDP_FRAME_SIZE,
    XDP_PACKET_HEADROOM,
    CtxRegion,
    RawCtx,
    SkBuff,
    SkBuffCtx,
    XdpBuff,
    XdpMd,
    raw_tracepoint_ctx,
)
from pybpf.runtime.env import ExecEnv
from pybpf.runtime.maps.base import fail
from pybpf.runtime.progtypes import PROG_TYPES, AttachType
from pybpf.vm.memory import Region

ENOTSUPP = 524  # the kernel-internal errno BPF_PROG_TEST_RUN answers for types without runs
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2
MAX_SKB_FRAGS = 17
MAX_BPF_FUNC_ARGS = 12
GSO_MAX_SEGS = 65535
GSO_LEGACY_MAX_SIZE = 65536
ETH_P_802_3, ETH_P_802_2, ETH_P_IP, ETH_P_IPV6 = 0x0001, 0x0004, 0x0800, 0x86DD
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN reports (see the module docstring)."""

    __test__ = False  # not a pytest class

    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration_ns: int
    data_size_out: int = 0


def test_run(prog, data_in: bytes = b"", ctx_in: bytes | None = None, repeat: int = 1,
             data_size_out: int | None = None, flags: int = 0,
             cpu: int = 0) -> TestRunResult:  # fmt: skip
    """BPF_PROG_TEST_RUN of ``prog`` (a loaded :class:`~pybpf.runtime.program.Program`)."""
    spec = PROG_TYPES[prog.prog_type]
    if spec.make_run is None:
        raise fail(ENOTSUPP, f"program type {spec.name} has no test run")
    if not 0 <= repeat <= 0xFFFFFFFF:
        raise fail(errno.EINVAL, f"repeat {repeat} does not fit u32")
    return spec.make_run(prog, data_in=bytes(data_in), ctx_in=ctx_in, repeat=repeat,
                         data_size_out=data_size_out, flags=flags, cpu=cpu)  # fmt: skip


test_run.__test__ = False  # not a pytest test function


# --- common ---------------------------------------------------------------------------------------
def _ctx_init(ctx_in: bytes | None, size: int) -> bytearray | None:
    """bpf_ctx_init: the context buffer, E2BIG when bytes beyond ``size`` are not zero."""
    if ctx_in is None:
        return None
    ctx = bytes(ctx_in)
    if len(ctx) > size and any(ctx[size:]):
        raise fail(errno.E2BIG, f"ctx_in has non-zero bytes beyond {size}")
    return bytearray(ctx[:size].ljust(size, b"\0"))


def _finish(data: bytes, data_size_out: int | None, retval: int, duration: int,
            ctx_out: bytes | None) -> TestRunResult:  # fmt: skip
    """bpf_test_finish: clamp to the caller's data_size_out (ENOSPC, with the result)."""
    result = TestRunResult(retval, data, ctx_out, duration, len(data))
    if data_size_out and len(data) > data_size_out:
        err = fail(errno.ENOSPC, f"data_out needs {len(data)} bytes, "
                                 f"data_size_out is {data_size_out}")  # fmt: skip
        err.result = TestRunResult(retval, data[:data_size_out], None, duration, len(data))
        raise err
    return result


def _execute(prog, ctx: CtxRegion, state, repeat: int, cpu: int, packet=None) -> tuple[int, int]:
    """Run ``prog`` ``repeat`` times on ``ctx``; (u32 retval, average ns)."""
    kernel, engine = prog.kernel, prog.engine
    memory = kernel.space.memory
    env = ExecEnv(memory=memory, kernel=kernel, program=prog, ctx=state, cpu=cpu)
    memory.add(ctx)
    if getattr(prog, "native_hooks", None) is not None:
        prog.native_hooks.cpu.value = cpu  # what native per-CPU lookups and smp_processor_id read
    frame = state if hasattr(state, "attach") else None
    if frame is not None:
        frame.attach(memory, engine)
    try:
        runs = max(repeat, 1)
        if runs > 1 and _natively_repeatable(prog):
            if frame is not None and packet:
                env.packet = frame.region or _EMPTY
            return _native_runs(engine, env, ctx, frame.region if frame else None, runs)
        r0 = 0
        start = time.perf_counter_ns()
        for _ in range(runs):
            if frame is not None:
                engine.set_hot(frame.region)
                if packet:  # LD_ABS / LD_IND read skb->data..; an empty packet reads nothing
                    env.packet = frame.region or _EMPTY
                    env.packet_headers = frame.headers()
            env.scratch.clear()
            r0 = engine.run(args=[ctx.base], env=env).r0
        duration = (time.perf_counter_ns() - start) // runs
    finally:
        if frame is not None:
            frame.detach()
        memory.remove(ctx)
    return r0 & 0xFFFFFFFF, min(duration, 0xFFFFFFFF)


_EMPTY = Region("empty packet", bytearray(1), False)
_EMPTY.size = 0

# helpers whose state lives in env.scratch across a run (cleared between repetitions)
_PER_RUN_STATE = frozenset({"spin_lock", "spin_unlock", "ringbuf_reserve", "ringbuf_submit",
                            "ringbuf_discard", "ringbuf_reserve_dynptr", "ringbuf_submit_dynptr",
                            "ringbuf_discard_dynptr"})  # fmt: skip


def _natively_repeatable(prog) -> bool:
    """Whether the engine's native repeat loop computes what the Python loop does.

    It needs a JIT engine (``activation``), and a program whose repetitions
    share nothing through Python between runs: no tail calls (their count is
    per run) or callx, no kfuncs, no helper keeping per-run state, and no
    helper that moves the packet (the loop keeps one hot window).
    """
    from pybpf.isa import Kind, lookup
    from pybpf.runtime.helpers import HELPERS

    if not hasattr(prog.engine, "activation"):
        return False
    for insn in prog.xlated:
        kind = lookup(insn).kind
        if kind in (Kind.CALLX, Kind.KFUNC):
            return False
        if kind is Kind.CALL:
            helper = HELPERS.get(insn.imm)
            if helper is None or insn.imm == 12 or helper.name in _PER_RUN_STATE \
                    or helper.proto.changes_pkt_data:  # fmt: skip
                return False
    return True


def _native_runs(engine, env, ctx: CtxRegion, hot, runs: int) -> tuple[int, int]:
    """``runs`` repetitions in the JIT's native loop, timed natively (thread CPU time,
    as the kernel's bpf_test_timer leaves out time spent rescheduled)."""
    from pybpf.jit.abi import Slot, Status
    from pybpf.jit.maps_ir import RepeatDriver

    with engine.activation([ctx.base], env=env, hot=hot) as act:
        result = RepeatDriver.shared().run(engine.entry_address, act.address, runs)
        if result.status == Status.ABORT:
            act.check()
        r0 = act.words[Slot.R0]
    return r0 & 0xFFFFFFFF, min(result.duration_ns // max(result.calls, 1), 0xFFFFFFFF)


def _netdevs(kernel) -> dict[int, int]:
    return getattr(kernel, "netdevs", None) or {LOOPBACK_IFINDEX: 1}


# --- XDP --------------------------------------------------------------------------------------
def run_xdp(prog, *, data_in: bytes, ctx_in, repeat: int, data_size_out, flags: int,
            cpu: int) -> TestRunResult:  # fmt: skip
    """bpf_prog_test_run_xdp (see the module docstring)."""
    if prog.expected_attach_type in (AttachType.XDP_DEVMAP, AttachType.XDP_CPUMAP):
        raise fail(errno.EINVAL, "devmap and cpumap XDP programs cannot be test-run")
    if flags & ~BPF_F_TEST_XDP_LIVE_FRAMES:
        raise fail(errno.EINVAL, f"flags {flags:#x} not allowed for XDP")
    if flags:
        raise fail(errno.EOPNOTSUPP, "BPF_F_TEST_XDP_LIVE_FRAMES is not modelled")
    ctx = _ctx_init(ctx_in, 24)
    headroom, linear, meta = XDP_PACKET_HEADROOM, len(data_in), 0
    fields = struct.unpack("<6I", ctx) if ctx is not None else (0,) * 6
    data, data_end, data_meta, ingress, rxq, egress = fields
    if ctx is not None:
        if data_meta or data_end > len(data_in) or data > data_end:
            raise fail(errno.EINVAL, "xdp_md: data_meta must be 0, data <= data_end <= "
                                     "data_size_in")  # fmt: skip
        meta = data
        if meta % 4 or meta > META_MAX or meta > headroom - XDP_FRAME_SIZE:
            raise fail(errno.EINVAL, f"meta data of {meta} bytes (multiple of 4, at most "
                                     f"{headroom - XDP_FRAME_SIZE})")  # fmt: skip
        headroom -= meta
        linear = data_end
    linear = min(linear, PAGE_SIZE - headroom - SKB_SHARED_INFO)
    if len(data_in) - meta < ETH_HLEN:
        raise fail(errno.EINVAL, f"packet of {len(data_in) - meta} bytes is shorter than "
                                 f"ETH_HLEN ({ETH_HLEN})")  # fmt: skip
    if ctx is not None:  # xdp_convert_md_to_buff
        if egress:
            raise fail(errno.EINVAL, "xdp_md.egress_ifindex must be 0")
        if not ingress and rxq:
            raise fail(errno.EINVAL, "xdp_md.rx_queue_index without ingress_ifindex")
        if ingress:
            queues = _netdevs(prog.kernel).get(ingress)
            if queues is None:
                raise fail(errno.ENODEV, f"no device with ifindex {ingress}")
            if rxq >= queues:
                raise fail(errno.EINVAL, f"device {ingress} has {queues} rx queues")
    frags = data_in[linear:]
    if -(-len(frags) // PAGE_SIZE) > MAX_SKB_FRAGS:
        raise fail(errno.ENOMEM, f"more than {MAX_SKB_FRAGS} fragments")
    xdp = XdpBuff(headroom=headroom, linear=data_in[:linear], meta_len=meta,
                  ingress_ifindex=ingress or LOOPBACK_IFINDEX, rx_queue_index=rxq,
                  frags=frags)  # fmt: skip
    md = XdpMd(xdp, devmap=prog.expected_attach_type == AttachType.XDP_DEVMAP)
    retval, duration = _execute(prog, md, xdp, repeat, cpu)
    ctx_out = None
    if ctx is not None:
        struct.pack_into("<II", ctx, 0, xdp.data - xdp.data_meta, xdp.data_end - xdp.data_meta)
        ctx_out = bytes(ctx)
    return _finish(xdp.packet(), data_size_out, retval, duration, ctx_out)


# --- skb --------------------------------------------------------------------------------------
# __sk_buff byte ranges convert___skb_to_skb accepts in ctx_in
_SKB_CTX_ALLOWED = ((8, 12), (32, 44), (48, 68), (152, 168), (176, 180), (184, 192))


def _skb_from_ctx(skb: SkBuff, ctx: bytearray) -> None:
    """convert___skb_to_skb: only the allowed fields may be non-zero."""
    allowed = set()
    for lo, hi in _SKB_CTX_ALLOWED:
        allowed.update(range(lo, hi))
    bad = [i for i, b in enumerate(ctx) if b and i not in allowed]
    if bad:
        raise fail(errno.EINVAL, f"__sk_buff byte {bad[0]} of ctx_in may not be set")
    (skb.mark,) = struct.unpack_from("<I", ctx, 8)
    skb.priority, skb.skb_iif = struct.unpack_from("<II", ctx, 32)
    (skb.tstamp,) = struct.unpack_from("<Q", ctx, 152)
    skb.cb[:] = ctx[48:68]
    wire_len, gso_segs = struct.unpack_from("<II", ctx, 160)
    if wire_len == 0:
        skb.wire_len = skb.len
    elif wire_len < skb.len or wire_len > GSO_LEGACY_MAX_SIZE:
        raise fail(errno.EINVAL, f"wire_len {wire_len} outside [len, {GSO_LEGACY_MAX_SIZE}]")
    else:
        skb.wire_len = wire_len
    if gso_segs > GSO_MAX_SEGS:
        raise fail(errno.EINVAL, f"gso_segs {gso_segs} above {GSO_MAX_SEGS}")
    skb.gso_segs = gso_segs
    (skb.gso_size,) = struct.unpack_from("<I", ctx, 176)
    (skb.hwtstamp,) = struct.unpack_from("<Q", ctx, 184)


def _eth_type_trans(skb: SkBuff, dev_addr: bytes = bytes(6), broadcast: bytes = bytes(6)) -> None:
    """eth_type_trans on a device: pkt_type, protocol, pull ETH_HLEN.

    The loopback device's address and broadcast address are both all zeros,
    so ff:ff:ff:ff:ff:ff is PACKET_MULTICAST there (as the kernel reports).
    """
    frame = skb.frame
    dest = bytes(frame[skb.data : skb.data + 6])
    if dest != dev_addr:
        if dest[0] & 1:
            skb.pkt_type = PACKET_BROADCAST if dest == broadcast else PACKET_MULTICAST
        else:
            skb.pkt_type = PACKET_OTHERHOST
    proto = int.from_bytes(frame[skb.data + 12 : skb.data + 14], "big")
    skb.data += ETH_HLEN
    skb.len -= ETH_HLEN
    if proto < 0x0600:
        raw = skb.len >= 2 and frame[skb.data : skb.data + 2] == b"\xff\xff"
        proto = ETH_P_802_3 if raw else ETH_P_802_2
    skb.protocol = int.from_bytes(proto.to_bytes(2, "big"), "little")


def run_skb(prog, *, data_in: bytes, ctx_in, repeat: int, data_size_out, flags: int,
            cpu: int) -> TestRunResult:  # fmt: skip
    """bpf_prog_test_run_skb (see the module docstring)."""
    kind = PROG_TYPES[prog.prog_type].name
    if flags & ~BPF_F_TEST_SKB_CHECKSUM_COMPLETE or cpu:
        raise fail(errno.EINVAL, "skb test runs take no cpu and no flags but "
                                 "CHECKSUM_COMPLETE")  # fmt: skip
    if flags:
        raise fail(errno.EOPNOTSUPP, "BPF_F_TEST_SKB_CHECKSUM_COMPLETE is not modelled")
    size = len(data_in)
    if size < ETH_HLEN:
        raise fail(errno.EINVAL, f"packet of {size} bytes is shorter than ETH_HLEN")
    if size > PAGE_SIZE - NET_SKB_PAD - SKB_SHARED_INFO:
        raise fail(errno.EINVAL, f"packet of {size} bytes does not fit a page")
    ctx = _ctx_init(ctx_in, SK_BUFF_SIZE)
    is_l2 = kind in ("sched_cls", "sched_act")
    aligned = -(-size // 64) * 64  # SKB_DATA_ALIGN
    skb = SkBuff(frame_size=NET_SKB_PAD + aligned + SKB_SHARED_INFO, data=NET_SKB_PAD, len=size,
                 writable=is_l2)  # fmt: skip
    skb.frame[NET_SKB_PAD : NET_SKB_PAD + size] = data_in
    if ctx is not None:
        (ifindex,) = struct.unpack_from("<I", ctx, 40)
        if ifindex > 1:
            if ifindex not in _netdevs(prog.kernel):
                raise fail(errno.ENODEV, f"no device with ifindex {ifindex}")
            skb.ifindex = ifindex
    skb.mac_header = skb.data
    _eth_type_trans(skb)
    skb.network_header = skb.data
    net = bytes(skb.frame[skb.data : skb.data + skb.len])
    # the dummy socket's family and addresses; Linux 6.18.44 (not yet 6.18.19) refuses an
    # IPv4 / IPv6 packet too short for its header
    for proto, family, hdr, saddr, daddr in ((0x0008, 2, 20, 12, 16), (0xDD86, 10, 40, 8, 24)):
        if skb.protocol == proto:
            if len(net) < hdr:
                raise fail(errno.EINVAL, f"network header of {len(net)} bytes (needs {hdr})")
            width = 4 if family == 2 else 16
            skb.sk_family = family
            skb.sk_saddr, skb.sk_daddr = net[saddr : saddr + width], net[daddr : daddr + width]
    if is_l2:
        skb.data -= ETH_HLEN
        skb.len += ETH_HLEN
    skb.wire_len = skb.len
    if ctx is not None:
        _skb_from_ctx(skb, ctx)
    sk_ctx = SkBuffCtx(skb, kind)
    retval, duration = _execute(prog, sk_ctx, skb, repeat, cpu, packet=True)
    if not is_l2:  # push a zeroed Ethernet header back in front
        skb.data -= ETH_HLEN
        skb.len += ETH_HLEN
        skb.frame[skb.data : skb.data + ETH_HLEN] = bytes(ETH_HLEN)
    ctx_out = None
    if ctx is not None:  # convert_skb_to___skb
        struct.pack_into("<I", ctx, 8, skb.mark)
        struct.pack_into("<III", ctx, 32, skb.priority, skb.skb_iif, skb.ifindex)
        struct.pack_into("<Q", ctx, 152, skb.tstamp)
        ctx[48:68] = skb.cb
        struct.pack_into("<II", ctx, 160, skb.wire_len, skb.gso_segs)
        struct.pack_into("<Q", ctx, 184, skb.hwtstamp)
        ctx_out = bytes(ctx)
    return _finish(skb.payload(), data_size_out, retval, duration, ctx_out)


# --- raw tracepoints and the types without test runs ---------------------------------------------
def run_raw_tp(prog, *, data_in: bytes, ctx_in, repeat: int, data_size_out, flags: int,
               cpu: int) -> TestRunResult:  # fmt: skip
    """bpf_prog_test_run_raw_tp: ctx_in is the args; repeat 0 or 1 counts as unset."""
    if data_in or data_size_out or repeat > 1:
        raise fail(errno.EINVAL, "raw_tracepoint test runs take no data and no repeat")
    args = bytes(ctx_in or b"")
    if len(args) > MAX_BPF_FUNC_ARGS * 8:
        raise fail(errno.EINVAL, f"ctx_in of {len(args)} bytes (at most "
                                 f"{MAX_BPF_FUNC_ARGS * 8})")  # fmt: skip
    if not flags & BPF_F_TEST_RUN_ON_CPU and cpu:
        raise fail(errno.EINVAL, "cpu without BPF_F_TEST_RUN_ON_CPU")
    if flags & BPF_F_TEST_RUN_ON_CPU and cpu >= prog.kernel.ncpus:
        raise fail(errno.ENXIO, f"cpu {cpu} is not online")
    retval, _ = _execute(prog, raw_tracepoint_ctx(args), None, 1, cpu)
    return TestRunResult(retval, b"", None, 0, 0)


def run_syscall(prog, *, data_in: bytes, ctx_in, repeat: int, data_size_out, flags: int,
                cpu: int) -> TestRunResult:  # fmt: skip
    """bpf_prog_test_run_syscall: the context is ctx_in (at most U16_MAX bytes, written back
    as ctx_out); no data, no flags, and no repeat (0 or 1, as the default here, is none)."""
    if data_in or data_size_out or repeat > 1 or flags or cpu:
        raise fail(errno.EINVAL, "syscall test runs take no data, repeat or flags")
    args = bytes(ctx_in or b"")
    if len(args) > SYSCALL_CTX_MAX:
        raise fail(errno.EINVAL, f"ctx_in of {len(args)} bytes (at most {SYSCALL_CTX_MAX})")
    ctx = RawCtx("ctx:syscall", "syscall args", args, writable=True)
    retval, _ = _execute(prog, ctx, None, 1, 0)
    return TestRunResult(retval, b"", bytes(ctx.buf) if args else None, 0, 0)


def run_context(prog, ctx: CtxRegion, *, cpu: int = 0, state=None) -> int:
    """pybpf's own run of any program on a synthetic context; returns the u32 retval.

    For the types the kernel cannot test-run: ``ctx`` is e.g.
    :func:`~pybpf.runtime.context.kprobe_ctx`,
    :func:`~pybpf.runtime.context.tracepoint_ctx` or a
    :class:`~pybpf.runtime.context.PerfEventData`; ``state`` becomes
    ``env.ctx``.
    """
    if not isinstance(ctx, CtxRegion):
        raise KernelError("run_context needs a context region", errno=errno.EINVAL)
    retval, _ = _execute(prog, ctx, state, 1, cpu)
    return retval


SYSCALL_CTX_MAX = 0xFFFF  # U16_MAX
RUNNERS = {"xdp": run_xdp, "skb": run_skb, "raw_tp": run_raw_tp, "syscall": run_syscall}
__all__ = ["RUNNERS", "RawCtx", "TestRunResult", "run_context", "test_run"]
