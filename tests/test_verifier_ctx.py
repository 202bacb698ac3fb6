"""Context access rules (pybpf.verifier.ctx) against the Linux verifier.

Every program type pybpf models is swept: each offset from 0 to past the end
of its context, each access size, as a load, a sign-extending load and a
store.  Each point is a three-instruction program (``r2 = *(uN *)(r1 + off);
r0 = 0; exit`` or the store of r2) the kernel loaded with log level 2; its
answer (accepted, and the type its log gives R2 after a load) is a recorded kernel
fact, one per sweep (``kernel_facts/verifier_ctx.json``, key ``sweep/<sweep id>``),
as are the return codes the kernel allows (``return/...``).  pybpf's
:func:`ctx_access` and :func:`return_range` are compared with the recording; when
bpf(2) works the running kernel is asked every point too (a few seconds), and an
answer that differs from the recording is drift (reported, the test an xfail), never
a failure.

Re-record with ``pytest tests/test_verifier_ctx.py --record-kernel`` (root).
"""

from __future__ import annotations

import functools
import random

import pytest

import ctx_probe
from pybpf.errors import KernelError
from pybpf.isa import Instruction
from pybpf.kernel import linux
from pybpf.verifier import ctx
from pybpf.verifier.types import Base, Flag

_SIZE_CODE = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
MODES = ("read", "ldsx", "write")


def _sweeps() -> list[dict]:
    """(prog_type, attach_type, offsets) of the sweep."""
    out = []
    for prog_type in sorted(ctx.PROG_TYPES):
        size = ctx.ctx_size(prog_type)
        if prog_type == ctx.TRACEPOINT:  # 8 KiB: the start and the end are what differ
            offsets = [*range(0, 72), *range(size - 16, size + 8)]
        else:
            offsets = list(range(0, size + 8))
        out.append({"prog_type": prog_type, "attach": 0, "offsets": offsets})
    out.append({"prog_type": ctx.XDP, "attach": ctx.BPF_XDP_DEVMAP,
                "offsets": list(range(0, ctx.XDP_MD_SIZE + 8))})  # fmt: skip
    return out


def program(off: int, size: int, mode: str) -> list[Instruction]:
    if mode == "write":
        access = [Instruction(0xB7, 2, 0, 0, 0), Instruction(0x63 | _SIZE_CODE[size], 1, 2, off)]
    else:
        code = (0x81 if mode == "ldsx" else 0x61) | _SIZE_CODE[size]
        access = [Instruction(code, 2, 1, off)]
    return [*access, Instruction(0xB7, 0, 0, 0, 0), Instruction(0x95)]


def kernel_answer(prog_type: int, attach: int, off: int, size: int, mode: str
                  ) -> tuple[bool, str]:  # fmt: skip
    """(accepted, R2's type name after a load or the refusal's last log line)."""
    return ctx_probe.load_answer(
        lambda: linux.prog_load(program(off, size, mode), prog_type=prog_type, log_level=2,
                                expected_attach_type=attach), mode)  # fmt: skip


def _sizes(mode: str) -> tuple[int, ...]:
    return (1, 2, 4) if mode == "ldsx" else (1, 2, 4, 8)


def sweeps() -> list[dict]:
    """Every sweep: program type, attach type, mode, access size and offsets."""
    return [{**sweep, "mode": mode, "size": size}
            for sweep in _sweeps() for mode in MODES for size in _sizes(mode)]  # fmt: skip


@functools.cache
def kernel_sweep(prog_type: int, attach: int, mode: str, size: int, offsets: tuple[int, ...]
                 ) -> dict:  # fmt: skip
    """The running kernel's answers over one sweep (a kernel-facts probe, asked once):
    the offsets, R2's type at each accepted one, and refusals other than the ctx check's."""
    accepted, refused = ctx_probe.sweep(
        lambda off: kernel_answer(prog_type, attach, off, size, mode), size, offsets)
    return {"offsets": list(offsets), "accepted": accepted, "other_refusals": refused}


def _recording(kernel_facts) -> list[dict]:
    """Each sweep with its recorded answers (``accepted``, ``other_refusals``)."""
    out = []
    for sweep in sweeps():
        probe = functools.partial(kernel_sweep, sweep["prog_type"], sweep["attach"],
                                  sweep["mode"], sweep["size"], tuple(sweep["offsets"]))
        fact = kernel_facts.fact(f"sweep/{_sweep_id(sweep)}", probe)
        assert fact["offsets"] == sweep["offsets"], \
            f"{_sweep_id(sweep)}: the recording sweeps other offsets: re-record it"
        out.append({**sweep, **fact})
    return out


def _ours(sweep: dict, off: int) -> ctx.CtxAccess | None:
    return ctx.ctx_access(sweep["prog_type"], off, sweep["size"], write=sweep["mode"] == "write",
                          attach_type=sweep["attach"], ldsx=sweep["mode"] == "ldsx")  # fmt: skip


def _sweep_id(sweep: dict) -> str:
    return f"type{sweep['prog_type']}-attach{sweep['attach']}-{sweep['mode']}{sweep['size']}"


# --- the recording against the table -----------------------------------------------------------
def test_recording_covers_every_modelled_program_type(kernel_facts):
    seen = {s["prog_type"] for s in _recording(kernel_facts)}
    assert seen == set(ctx.PROG_TYPES)


def test_kernel_refuses_only_with_the_context_message(kernel_facts):
    """Every refusal in the sweep is the ctx check's (so the sweep measures ctx rules)."""
    others = {(_sweep_id(s), o): t for s in _recording(kernel_facts)
              for o, t in s["other_refusals"].items()}  # fmt: skip
    assert others == {}


def test_verdicts_match_the_kernel_everywhere(kernel_facts):
    wrong = []
    total = 0
    for sweep in _recording(kernel_facts):
        for off in sweep["offsets"]:
            total += 1
            kernel = str(off) in sweep["accepted"]
            if (_ours(sweep, off) is not None) != kernel:
                wrong.append(f"{_sweep_id(sweep)} off={off}: kernel "
                             f"{'accepts' if kernel else 'refuses'}")  # fmt: skip
    assert total > 10_000
    assert wrong == []


def test_loaded_register_types_match_the_kernel_log(kernel_facts):
    wrong = []
    for sweep in _recording(kernel_facts):
        if sweep["mode"] == "write":
            continue
        for off, kernel_type in sweep["accepted"].items():
            access = _ours(sweep, int(off))
            if access is not None and access.type_name != kernel_type:
                wrong.append(f"{_sweep_id(sweep)} off={off}: {access.type_name} != {kernel_type}")
    assert wrong == []


def test_packet_pointers_come_from_the_data_fields():
    acc = ctx.ctx_access(ctx.XDP, 0, 4, write=False)
    assert (acc.base, acc.field) == (Base.PTR_TO_PACKET, "data")
    assert ctx.ctx_access(ctx.XDP, 4, 4, write=False).base is Base.PTR_TO_PACKET_END
    assert ctx.ctx_access(ctx.XDP, 8, 4, write=False).type_name == "pkt_meta"
    assert ctx.ctx_access(ctx.SCHED_CLS, 76, 4, write=False).type_name == "pkt"
    assert ctx.ctx_access(ctx.SCHED_ACT, 140, 4, write=False).type_name == "pkt_meta"
    assert ctx.ctx_access(ctx.CGROUP_SKB, 80, 4, write=False).type_name == "pkt_end"
    assert ctx.ctx_access(ctx.CGROUP_SKB, 140, 4, write=False) is None  # no data_meta
    assert ctx.ctx_access(ctx.SOCKET_FILTER, 76, 4, write=False) is None
    sk = ctx.ctx_access(ctx.SOCKET_FILTER, 168, 8, write=False)
    assert (sk.base, sk.flags, sk.type_name) == (Base.PTR_TO_SOCK_COMMON, Flag.MAYBE_NULL,
                                                 "sock_common_or_null")  # fmt: skip
    keys = ctx.ctx_access(ctx.FLOW_DISSECTOR, 144, 8, write=False)
    assert (keys.base, keys.type_name) == (Base.PTR_TO_FLOW_KEYS, "flow_keys")
    assert ctx.ctx_access(ctx.SCHED_CLS, 144, 8, write=False) is None


def test_narrow_loads_record_the_field_size():
    assert ctx.ctx_access(ctx.SCHED_CLS, 1, 1, write=False).field_size == 4  # len's 2nd byte
    assert ctx.ctx_access(ctx.SCHED_CLS, 48, 8, write=False).field_size == 0  # cb: as is
    assert ctx.ctx_access(ctx.SCHED_CLS, 0, 8, write=False) is None  # wider than len
    assert ctx.ctx_access(ctx.PERF_EVENT, 172, 4, write=False).field_size == 8  # sample_period
    assert ctx.ctx_access(ctx.PERF_EVENT, 4, 4, write=False) is None  # regs: whole longs
    assert ctx.ctx_access(ctx.SCHED_CLS, 8, 2, write=True) is None  # mark: no narrow store
    assert ctx.ctx_access(ctx.SCHED_CLS, 8, 4, write=True).field == "mark"


def test_writable_fields_per_program_type():
    writable = {}
    for prog_type in (ctx.SOCKET_FILTER, ctx.SCHED_CLS, ctx.CGROUP_SKB):
        writable[prog_type] = {ctx.field_at(ctx.SK_BUFF, off) for off in range(0, 192, 4)
                               for size in (4, 8)
                               if ctx.ctx_access(prog_type, off, size, write=True)}  # fmt: skip
    assert writable[ctx.SOCKET_FILTER] == {"cb"}
    assert writable[ctx.SCHED_CLS] == {"mark", "tc_index", "priority", "tc_classid", "cb",
                                       "tstamp", "queue_mapping"}  # fmt: skip
    assert writable[ctx.CGROUP_SKB] == {"mark", "priority", "cb", "tstamp"}
    assert ctx.ctx_access(ctx.XDP, 16, 4, write=True) is None
    assert ctx.ctx_access(ctx.KPROBE, 0, 8, write=True) is None


def test_unknown_program_types_and_sizes_are_refused():
    assert ctx.ctx_access(ctx.XDP, 0, 3, write=False) is None
    assert ctx.ctx_access(999, 0, 4, write=False) is None
    assert ctx.ctx_size(999) == 0
    assert ctx.ctx_access(ctx.XDP, -4, 4, write=False) is None


def test_any_input_is_answered_within_the_context():
    """Garbage in never raises; an allowed access lies inside [0, ctx_size)."""
    rng = random.Random(7)
    for _ in range(20_000):
        prog_type, off = rng.randrange(-2, 40), rng.randrange(-1000, 9000)
        size, attach = rng.choice((-1, 0, 1, 2, 3, 4, 8, 16)), rng.randrange(0, 60)
        acc = ctx.ctx_access(prog_type, off, size, write=rng.random() < 0.5, attach_type=attach,
                             ldsx=rng.random() < 0.2)  # fmt: skip
        if acc is not None:
            assert size in (1, 2, 4, 8) and off >= 0 and off + size <= ctx.ctx_size(prog_type)
            assert acc.field_size in (0, 4, 8) and (acc.field_size == 0 or size <= acc.field_size)


def test_struct_layouts_are_the_uapi_ones():
    assert ctx.SK_BUFF["cb"] == (48, 20)
    assert ctx.SK_BUFF["data_meta"] == (140, 4)
    assert ctx.SK_BUFF["flow_keys"] == (144, 8)
    assert ctx.SK_BUFF["sk"] == (168, 8)
    assert ctx.SK_BUFF["tstamp_type"] == (180, 1)
    assert ctx.SK_BUFF["hwtstamp"][0] + 8 == ctx.SK_BUFF_SIZE == 192
    assert ctx.XDP_MD["egress_ifindex"] == (20, 4)
    assert ctx.PERF_EVENT_DATA["addr"] == (176, 8)


# --- packet access and return ranges ---------------------------------------------------------
@pytest.mark.parametrize("prog_type, read, write", [
    (ctx.XDP, True, True), (ctx.SCHED_CLS, True, True), (ctx.SCHED_ACT, True, True),
    (ctx.CGROUP_SKB, True, False), (ctx.SOCKET_FILTER, False, False), (ctx.KPROBE, False, False),
    (ctx.TRACEPOINT, False, False), (ctx.PERF_EVENT, False, False),
    (ctx.RAW_TRACEPOINT, False, False),
])  # fmt: skip
def test_direct_packet_access(prog_type, read, write):
    assert ctx.direct_packet_access(prog_type, False) is read
    assert ctx.direct_packet_access(prog_type, True) is write
    if read:  # through a helper, the prototype's pkt_access decides
        assert ctx.direct_packet_access(prog_type, False, helper_pkt_access=False) is False


@pytest.mark.parametrize("prog_type, attach, expected", [
    (ctx.XDP, 0, None), (ctx.SCHED_CLS, 0, None), (ctx.SOCKET_FILTER, 0, None),
    (ctx.CGROUP_SKB, 0, (0, 1)), (ctx.CGROUP_SKB, ctx.BPF_CGROUP_INET_EGRESS, (0, 3)),
    (ctx.KPROBE, 0, None), (ctx.KPROBE, ctx.BPF_TRACE_KPROBE_SESSION, (0, 1)),
    (ctx.TRACEPOINT, 0, None), (ctx.RAW_TRACEPOINT, 0, None), (ctx.PERF_EVENT, 0, None),
])  # fmt: skip
def test_return_range(prog_type, attach, expected):
    assert ctx.return_range(prog_type, attach) == expected


def _exit_with(value: int) -> list[Instruction]:
    return [Instruction(0xB7, 0, 0, 0, value), Instruction(0x95)]


def kernel_exit_with(prog_type: int, attach: int, value: int) -> bool | str:
    """True when the running kernel loads ``r0 = value; exit``, else the line of its log
    that names the allowed range (the last line when none does)."""
    try:
        linux.prog_load(_exit_with(value), prog_type=prog_type, expected_attach_type=attach).close()
    except KernelError as err:
        lines = [ln for ln in err.log.splitlines() if ln.strip()]
        return next((ln for ln in lines if "should have been in" in ln),
                    lines[-1] if lines else str(err))  # fmt: skip
    return True


@pytest.mark.parametrize("prog_type, attach, value", [
    (ctx.CGROUP_SKB, 0, 1), (ctx.CGROUP_SKB, 0, 2), (ctx.CGROUP_SKB, 1, 3), (ctx.CGROUP_SKB, 1, 4),
    (ctx.XDP, 0, 7), (ctx.SCHED_CLS, 0, -1), (ctx.SOCKET_FILTER, 0, -5), (ctx.KPROBE, 0, 9),
    (ctx.TRACEPOINT, 0, 9), (ctx.PERF_EVENT, 0, 9), (ctx.RAW_TRACEPOINT, 0, 9),
])  # fmt: skip
def test_return_range_against_the_kernel(kernel_facts, prog_type, attach, value):
    rng = ctx.return_range(prog_type, attach)
    ours = rng is None or rng[0] <= value <= rng[1]
    kernel = kernel_facts.fact(f"return/type{prog_type}-attach{attach}/{value}",
                               lambda: kernel_exit_with(prog_type, attach, value))
    assert ours == (kernel is True), kernel
    if not ours:
        assert f"should have been in [{rng[0]}, {rng[1]}]" in kernel
