"""Every modelled program type against the kernel: context rules per attach type, helper
sets, return ranges, the load-time checks and which types have a test run.

``tests/test_verifier_ctx.py`` sweeps the types whose rules the kernel answers at
expected_attach_type 0; this file sweeps the rest of ``pybpf.verifier.ctx.OPS``: each
type at each attach type its declaration names (``sweep_attach``) that the other sweep
does not cover — cgroup_sock per hook, cgroup_sock_addr for all 17 hooks (user_ip4 and
user_ip6 depend on the hook), cgroup_sockopt get / set, netfilter, sk_lookup,
sk_reuseport, sk_skb, xdp devmap... — and a sample of the syscall type's 64 KiB
context (a sleepable load).  Each sweep's answer (the accepted offsets, R2's type after
each accepted load) is a recorded kernel fact (``kernel_facts/progtypes_more.json``), as
are the helper ids each (type, attach type) may call, the R0 values its exit takes, the
errno of a load with an attach type or flags the type does not take, and the errno of a
test run.  Re-record with ``pytest tests/test_progtypes_more.py --record-kernel``
(root).
"""

from __future__ import annotations

import errno
import functools
import re

import pytest

import ctx_probe
from pybpf.asm import ubpf
from pybpf.errors import KernelError, PybpfError
from pybpf.isa import Instruction
from pybpf.isa.helper_ids import helper_id
from pybpf.kernel import linux
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.progtypes import PROG_TYPES, AttachType, ProgType, sec_to_prog_type
from pybpf.runtime.testrun import ENOTSUPP
from pybpf.runtime.testrun import test_run as run_test
from pybpf.uapi import ProgFlag
from pybpf.verifier import ctx
from pybpf.verifier.types import Base, Flag

P, A = ProgType, AttachType
_SIZE_CODE = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
MODES = (("read", 1), ("read", 2), ("read", 4), ("read", 8), ("ldsx", 1), ("ldsx", 2),
         ("ldsx", 4), ("write", 1), ("write", 2), ("write", 4), ("write", 8))  # fmt: skip
_HELPER_REFUSED = re.compile(r"cannot use helper|unknown func|not supported|does not support")


def _flags(prog_type: int) -> int:
    return int(ProgFlag.SLEEPABLE) if ctx.OPS[prog_type].sleepable == "required" else 0


def _exit_value(prog_type: int, attach: int) -> int:
    """A return value the type's exit accepts (the sweep must test the context alone)."""
    found = ctx.return_range(prog_type, attach)
    return found[0] if found else 0


def _access(off: int, size: int, mode: str) -> list[Instruction]:
    if mode == "write":
        return [Instruction(0xB7, 2, 0, 0, 0), Instruction(0x63 | _SIZE_CODE[size], 1, 2, off)]
    return [Instruction((0x81 if mode == "ldsx" else 0x61) | _SIZE_CODE[size], 2, 1, off)]


def _load(insns, prog_type: int, attach: int, log_level: int = 1) -> linux.Prog:
    return linux.prog_load(insns, prog_type=prog_type, expected_attach_type=attach,
                           prog_flags=_flags(prog_type), log_level=log_level)  # fmt: skip


def kernel_ctx_answer(prog_type: int, attach: int, off: int, size: int, mode: str
                      ) -> tuple[bool, str]:  # fmt: skip
    """(accepted, R2's type after a load, or the refusal's line)."""
    insns = [*_access(off, size, mode), Instruction(0xB7, 0, 0, 0, _exit_value(prog_type, attach)),
             Instruction(0x95)]  # fmt: skip
    return ctx_probe.load_answer(lambda: _load(insns, prog_type, attach, log_level=2), mode)


@functools.cache
def kernel_sweep(prog_type: int, attach: int, mode: str, size: int, offsets: tuple[int, ...]
                 ) -> dict:  # fmt: skip
    """The kernel's answers over one sweep (a kernel-facts probe)."""
    accepted, refused = ctx_probe.sweep(
        lambda off: kernel_ctx_answer(prog_type, attach, off, size, mode), size, offsets)
    return {"offsets": _spans(offsets), "accepted": accepted, "other_refusals": refused}


def _spans(offsets: tuple[int, ...]) -> list[list[int]]:
    """The offsets as [first, last] runs (what the recording keeps of them)."""
    out: list[list[int]] = []
    for off in offsets:
        if out and out[-1][1] == off - 1:
            out[-1][1] = off
        else:
            out.append([off, off])
    return out


def _sweeps() -> list[tuple[int, int, tuple[int, ...]]]:
    """(type, attach type, offsets) this file sweeps: what test_verifier_ctx does not."""
    out = []
    for prog_type, found in sorted(ctx.OPS.items()):
        for attach in found.sweep_attach:
            if attach == 0 and prog_type in ctx.PROG_TYPES:
                continue  # test_verifier_ctx's sweep
            out.append((prog_type, attach, tuple(range(0, found.ctx_size + 8))))
    # syscall: the start of its context and the end of what an insn's s16 offset reaches
    out.append((ctx.SYSCALL, 0, (*range(0, 72), *range(32744, 32768))))
    return out


def _recorded_sweeps(kernel_facts) -> list[tuple[int, int, str, int, dict]]:
    out = []
    for prog_type, attach, offsets in _sweeps():
        for mode, size in MODES:
            probe = functools.partial(kernel_sweep, prog_type, attach, mode, size, offsets)
            fact = kernel_facts.fact(f"sweep/type{prog_type}-attach{attach}-{mode}{size}", probe)
            assert fact["offsets"] == _spans(offsets), "the recording sweeps other offsets"
            out.append((prog_type, attach, mode, size, {**fact, "offsets": offsets}))
    return out


# --- context rules --------------------------------------------------------------------------------
def test_context_rules_match_the_kernel_per_attach_type(kernel_facts):
    wrong, total = [], 0
    for prog_type, attach, mode, size, fact in _recorded_sweeps(kernel_facts):
        assert fact["other_refusals"] == {}, (prog_type, attach, mode, size)
        for off in fact["offsets"]:
            total += 1
            ours = ctx.ctx_access(prog_type, off, size, write=mode == "write",
                                  attach_type=attach, ldsx=mode == "ldsx")  # fmt: skip
            kernel = fact["accepted"].get(str(off))
            where = f"type{prog_type} attach{attach} {mode}{size} off={off}"
            if (ours is not None) != (kernel is not None):
                wrong.append(f"{where}: kernel {'accepts' if kernel is not None else 'refuses'}")
            elif ours is not None and mode != "write" and ours.type_name != kernel:
                wrong.append(f"{where}: {ours.type_name} != {kernel}")
    assert total > 20_000
    assert wrong == []


def test_every_modelled_type_is_swept_somewhere():
    here = {prog_type for prog_type, _, _ in _sweeps()}
    assert here | ctx.PROG_TYPES == ctx.MODELLED
    assert {ctx.CGROUP_SOCK_ADDR, ctx.CGROUP_SOCKOPT, ctx.NETFILTER, ctx.SYSCALL,
            ctx.SK_LOOKUP} <= here - ctx.PROG_TYPES  # fmt: skip


@pytest.mark.parametrize("attach, ip4, ip6, msg4, msg6", [
    (A.CGROUP_INET4_CONNECT, True, False, False, False),
    (A.CGROUP_INET6_BIND, False, True, False, False),
    (A.CGROUP_UDP4_SENDMSG, True, False, True, False),
    (A.CGROUP_UDP6_SENDMSG, False, True, False, True),
    (A.CGROUP_UNIX_CONNECT, False, False, False, False),
])  # fmt: skip
def test_sock_addr_fields_follow_the_attach_type(attach, ip4, ip6, msg4, msg6):
    def readable(off: int) -> bool:
        return ctx.ctx_access(ctx.CGROUP_SOCK_ADDR, off, 4, write=False,
                              attach_type=attach) is not None  # fmt: skip

    lay = ctx.BPF_SOCK_ADDR
    assert (readable(lay["user_ip4"][0]), readable(lay["user_ip6"][0]),
            readable(lay["msg_src_ip4"][0]), readable(lay["msg_src_ip6"][0])) == \
        (ip4, ip6, msg4, msg6)  # fmt: skip
    assert readable(lay["user_port"][0]) and readable(lay["family"][0])
    sk = ctx.ctx_access(ctx.CGROUP_SOCK_ADDR, lay["sk"][0], 8, write=False, attach_type=attach)
    assert (sk.base, sk.type_name) == (Base.PTR_TO_SOCKET, "sock")
    wide = ctx.ctx_access(ctx.CGROUP_SOCK_ADDR, lay["user_ip6"][0], 8, write=True,
                          attach_type=attach)  # fmt: skip
    assert (wide is not None) == ip6


def test_pointer_fields_of_the_new_contexts():
    def typed(prog_type: int, off: int, attach: int = 0) -> str:
        return ctx.ctx_access(prog_type, off, 8, write=False, attach_type=attach).type_name

    assert typed(ctx.SOCK_OPS, ctx.BPF_SOCK_OPS["sk"][0]) == "sock_or_null"
    assert typed(ctx.SOCK_OPS, ctx.BPF_SOCK_OPS["skb_data"][0]) == "pkt"
    assert typed(ctx.SK_MSG, 0) == "pkt" and typed(ctx.SK_MSG, 8) == "pkt_end"
    assert typed(ctx.SK_MSG, ctx.SK_MSG_MD["sk"][0]) == "sock"
    assert typed(ctx.CGROUP_SOCKOPT, 8, A.CGROUP_GETSOCKOPT) == "pkt"
    assert typed(ctx.NETFILTER, 0, A.NETFILTER) == "trusted_ptr_nf_hook_state"
    skb = ctx.ctx_access(ctx.NETFILTER, 8, 8, write=False, attach_type=A.NETFILTER)
    assert (skb.base, skb.flags, skb.btf) == (Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED, "sk_buff")
    assert typed(ctx.RAW_TRACEPOINT_WRITABLE, 0) == "tp_buffer"
    assert typed(ctx.SK_LOOKUP, 0, A.SK_LOOKUP) == "sock_or_null"
    assert typed(ctx.SK_REUSEPORT, ctx.SK_REUSEPORT_MD["migrating_sk"][0]) == \
        "sock_common_or_null"  # fmt: skip
    assert ctx.ctx_access(ctx.SK_SKB, ctx.SK_BUFF["mark"][0], 4, write=False) is None


def test_writable_fields_of_the_new_contexts():
    def writable(prog_type: int, lay: dict, attach: int = 0) -> set[str]:
        return {ctx.field_at(lay, off) for off in range(0, ctx.ctx_size(prog_type), 4)
                for size in (4, 8) if off % size == 0
                and ctx.ctx_access(prog_type, off, size, write=True, attach_type=attach)}

    create, post_bind = A.CGROUP_INET_SOCK_CREATE, A.CGROUP_INET4_POST_BIND
    assert writable(ctx.CGROUP_SOCK, ctx.BPF_SOCK, create) == {"bound_dev_if", "mark",
                                                               "priority"}  # fmt: skip
    assert writable(ctx.CGROUP_SOCK, ctx.BPF_SOCK, 0) == writable(ctx.CGROUP_SOCK, ctx.BPF_SOCK,
                                                                   create)  # fmt: skip
    assert writable(ctx.CGROUP_SOCK, ctx.BPF_SOCK, post_bind) == set()
    assert writable(ctx.SOCK_OPS, ctx.BPF_SOCK_OPS) == {"args", "sk_txhash"}  # reply, sk_txhash
    assert writable(ctx.SK_MSG, ctx.SK_MSG_MD) == set()
    assert writable(ctx.CGROUP_SYSCTL, ctx.BPF_SYSCTL) == {"file_pos"}
    assert writable(ctx.CGROUP_SOCKOPT, ctx.BPF_SOCKOPT, A.CGROUP_GETSOCKOPT) == {"optlen",
                                                                                 "retval"}
    assert writable(ctx.CGROUP_SOCKOPT, ctx.BPF_SOCKOPT, A.CGROUP_SETSOCKOPT) == {
        "level", "optname", "optlen"}  # fmt: skip
    assert writable(ctx.LWT_IN, ctx.SK_BUFF) == {"mark", "priority", "cb"}
    assert writable(ctx.SK_SKB, ctx.SK_BUFF) == {"tc_index", "priority"}
    assert writable(ctx.NETFILTER, {"state": (0, 8), "skb": (8, 8)}, A.NETFILTER) == set()


# --- helpers --------------------------------------------------------------------------------------
def _helper_configs() -> list[tuple[int, int]]:
    """(type, attach type) whose helper set is checked: the types beyond the first nine."""
    first = {P.SOCKET_FILTER, P.KPROBE, P.SCHED_CLS, P.SCHED_ACT, P.TRACEPOINT, P.XDP,
             P.PERF_EVENT, P.CGROUP_SKB, P.RAW_TRACEPOINT}  # fmt: skip
    out = []
    for prog_type, found in sorted(ctx.OPS.items()):
        if prog_type in first:
            continue
        attaches = sorted(found.attach_types or ()) or list(found.sweep_attach) or [0]
        out += [(prog_type, attach) for attach in attaches]
    return out


def kernel_helpers(prog_type: int, attach: int) -> list[int]:
    """The helper ids the kernel lets (type, attach) call (a kernel-facts probe)."""
    allowed = []
    for ident in range(1, 212):
        insns = [Instruction(0x85, 0, 0, 0, ident),
                 Instruction(0xB7, 0, 0, 0, _exit_value(prog_type, attach)), Instruction(0x95)]
        try:
            _load(insns, prog_type, attach).close()
        except KernelError as err:
            if _HELPER_REFUSED.search(err.log):
                continue
        allowed.append(ident)
    return allowed


def test_helper_sets_match_the_kernel_per_attach_type(kernel_facts):
    wrong = {}
    for prog_type, attach in _helper_configs():
        kernel = set(kernel_facts.fact(f"helpers/type{prog_type}-attach{attach}",
                                       functools.partial(kernel_helpers, prog_type, attach)))
        ours = PROG_TYPES[P(prog_type)].helpers_for(attach)
        if ours != kernel:
            wrong[f"type{prog_type}-attach{attach}"] = (sorted(ours - kernel),
                                                        sorted(kernel - ours))  # fmt: skip
    assert wrong == {}


def test_attach_dependent_helpers():
    ids = lambda *names: {helper_id(n) for n in names}  # noqa: E731
    sock_addr = PROG_TYPES[P.CGROUP_SOCK_ADDR]
    assert ids("bind") <= sock_addr.helpers_for(A.CGROUP_INET4_CONNECT)
    assert not ids("bind") & sock_addr.helpers_for(A.CGROUP_INET4_BIND)
    assert ids("get_retval", "set_retval") <= sock_addr.helpers_for(A.CGROUP_UDP4_SENDMSG)
    assert not ids("get_retval") & sock_addr.helpers_for(A.CGROUP_UDP4_RECVMSG)
    assert not ids("bind", "get_retval") & sock_addr.helpers  # what every hook may call
    sockopt = PROG_TYPES[P.CGROUP_SOCKOPT]
    assert ids("setsockopt", "getsockopt") <= sockopt.helpers_for(A.CGROUP_SETSOCKOPT)
    assert not ids("setsockopt") & sockopt.helpers_for(A.CGROUP_GETSOCKOPT)
    cg_sock = PROG_TYPES[P.CGROUP_SOCK]
    assert cg_sock.helpers_for(0) == cg_sock.helpers_for(A.CGROUP_INET_SOCK_CREATE)
    assert sock_addr.proto_variants[helper_id("setsockopt")] == "bpf_sock_addr_setsockopt_proto"


# --- return ranges, load checks, test runs ------------------------------------------------------
def kernel_exits(prog_type: int, attach: int) -> dict[str, bool]:
    """Which of -1..4 the kernel lets ``r0 = v; exit`` return (a kernel-facts probe)."""
    out = {}
    for value in range(-1, 5):
        try:
            _load([Instruction(0xB7, 0, 0, 0, value), Instruction(0x95)], prog_type, attach).close()
            out[str(value)] = True
        except KernelError:
            out[str(value)] = False
    return out


def test_return_ranges_match_the_kernel(kernel_facts):
    wrong = []
    for prog_type, attach in _helper_configs():
        kernel = kernel_facts.fact(f"exits/type{prog_type}-attach{attach}",
                                   functools.partial(kernel_exits, prog_type, attach))
        rng = ctx.return_range(prog_type, attach)
        for value, ok in kernel.items():
            ours = rng is None or rng[0] <= int(value) <= rng[1]
            if ours != ok:
                wrong.append(f"type{prog_type}-attach{attach} r0={value}: kernel {ok}")
    assert wrong == []


_LOADS = [  # (type, attach, flags) the kernel refuses before verifying, and some it takes
    (P.CGROUP_SOCK_ADDR, 0, 0), (P.CGROUP_SOCK_ADDR, A.CGROUP_INET_SOCK_CREATE, 0),
    (P.CGROUP_SOCKOPT, 0, 0), (P.NETFILTER, 0, 0), (P.SK_LOOKUP, 0, 0),
    (P.CGROUP_SOCK, A.CGROUP_INET4_CONNECT, 0), (P.CGROUP_SKB, A.CGROUP_INET_SOCK_CREATE, 0),
    (P.SK_REUSEPORT, A.XDP, 0), (P.SYSCALL, 0, 0), (P.SYSCALL, 1, int(ProgFlag.SLEEPABLE)),
    (P.XDP, 0, int(ProgFlag.SLEEPABLE)), (P.CGROUP_SOCK, 0, 0), (P.SK_REUSEPORT, 0, 0),
    (P.CGROUP_SYSCTL, A.XDP, 0), (P.SOCK_OPS, 0, 0), (P.KPROBE, 0, int(ProgFlag.SLEEPABLE)),
    (P.SYSCALL, 0, int(ProgFlag.SLEEPABLE)),
]  # fmt: skip


def kernel_load(prog_type: int, attach: int, flags: int) -> str:
    insns = [Instruction(0xB7, 0, 0, 0, 0), Instruction(0x95)]
    try:
        linux.prog_load(insns, prog_type=prog_type, expected_attach_type=attach,
                        prog_flags=flags).close()  # fmt: skip
    except KernelError as err:
        return errno.errorcode.get(err.errno or 0, str(err.errno))
    return "ok"


@pytest.mark.parametrize("prog_type, attach, flags", _LOADS)
def test_load_checks_match_the_kernel(kernel_facts, prog_type, attach, flags):
    kernel = kernel_facts.fact(f"load/type{int(prog_type)}-attach{int(attach)}-flags{flags}",
                               lambda: kernel_load(prog_type, attach, flags))
    insns = [Instruction(0xB7, 0, 0, 0, 0), Instruction(0x95)]
    try:
        Kernel(verify=True).prog_load(insns, prog_type, expected_attach_type=attach,
                                      prog_flags=flags)  # fmt: skip
        ours = "ok"
    except KernelError as err:
        ours = errno.errorcode.get(err.errno or 0, str(err.errno))
    assert ours == kernel


def kernel_test_run(prog_type: int) -> str:
    """Whether the kernel has a test run for the type: ENOTSUPP or anything else."""
    found = ctx.OPS[prog_type]
    attach = min(found.attach_types) if found.attach_types else 0
    insns = [Instruction(0xB7, 0, 0, 0, _exit_value(prog_type, attach)), Instruction(0x95)]
    with _load(insns, prog_type, attach) as prog:
        try:
            prog.test_run(bytes(64))
        except KernelError as err:
            return "ENOTSUPP" if err.errno == ENOTSUPP else "has a test run"
    return "has a test run"


@pytest.mark.parametrize("prog_type", sorted(ctx.OPS))
def test_test_runs_where_the_kernel_has_them(kernel_facts, prog_type):
    kernel = kernel_facts.fact(f"test_run/type{prog_type}",
                               functools.partial(kernel_test_run, prog_type))
    found = ctx.OPS[prog_type]
    spec = PROG_TYPES[P(prog_type)]
    assert (spec.make_run is None) == (kernel == "ENOTSUPP")
    attach = min(found.attach_types) if found.attach_types else 0
    insns = [Instruction(0xB7, 0, 0, 0, _exit_value(prog_type, attach)), Instruction(0x95)]
    prog = Kernel(verify=True).prog_load(insns, prog_type, expected_attach_type=attach,
                                         prog_flags=_flags(prog_type))  # fmt: skip
    if found.test_run == ctx.UNMODELLED:
        with pytest.raises(KernelError) as info:
            run_test(prog, bytes(64))
        assert info.value.errno == errno.EOPNOTSUPP and "not modelled" in str(info.value)
    elif spec.make_run is None:
        with pytest.raises(KernelError) as info:
            run_test(prog, bytes(64))
        assert info.value.errno == ENOTSUPP


# --- the verifier on whole programs ---------------------------------------------------------------
def _verify(src: str, prog_type, attach: int = 0, flags: int = 0) -> str | None:
    """None when pybpf's verifier accepts ``src``, else its reason."""
    try:
        Kernel(verify=True).prog_load(ubpf.assemble(src), prog_type, expected_attach_type=attach,
                                      prog_flags=flags)  # fmt: skip
    except PybpfError as err:
        return str(err)
    return None


def test_sock_addr_programs():
    connect6, recvmsg4 = A.CGROUP_INET6_CONNECT, A.CGROUP_UDP4_RECVMSG
    assert _verify("ldxw %r2, [%r1+8]\nmov %r0, 1\nexit", P.CGROUP_SOCK_ADDR, connect6) is None
    assert "invalid bpf_context access off=4 size=4" in _verify(
        "ldxw %r2, [%r1+4]\nmov %r0, 1\nexit", P.CGROUP_SOCK_ADDR, connect6)
    assert "should have been in [1, 1]" in _verify("mov %r0, 0\nexit", P.CGROUP_SOCK_ADDR,
                                                   recvmsg4)  # fmt: skip
    assert _verify("mov %r2, 0\nstxdw [%r1+16], %r2\nmov %r0, 1\nexit", P.CGROUP_SOCK_ADDR,
                   connect6) is None
    bind = f"mov %r1, 0\nmov %r2, 0\ncall {helper_id('bind')}\nmov %r0, 1\nexit"
    assert "bind" in (_verify(bind, P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND) or "")


def test_netfilter_pointers_are_not_dereferenced():
    nf = A.NETFILTER
    assert _verify("ldxdw %r2, [%r1+8]\nmov %r0, 1\nexit", P.NETFILTER, nf) is None
    # a load through ctx->skb is walked through the kernel's BTF, which this target lacks
    assert "without the kernel's BTF" in _verify("ldxdw %r2, [%r1+8]\nldxw %r0, [%r2+0]\nexit",
                                                 P.NETFILTER, nf)  # fmt: skip
    assert "not a known value" in _verify("ldxdw %r0, [%r1+0]\nexit", P.NETFILTER, nf)
    assert "expected_attach_type" in _verify("mov %r0, 1\nexit", P.NETFILTER, 0)


def test_packet_access_of_the_new_types():
    assert ctx.direct_packet_access(ctx.SK_MSG, True)
    assert ctx.direct_packet_access(ctx.LWT_XMIT, True)
    assert not ctx.direct_packet_access(ctx.LWT_IN, True) and ctx.direct_packet_access(
        ctx.LWT_IN, False)
    assert ctx.direct_packet_access(ctx.CGROUP_SOCKOPT, True, helper_pkt_access=False)
    assert not ctx.direct_packet_access(ctx.SOCK_OPS, False)  # see ctx_sock's docstring
    lwt_write = "ldxw %r2, [%r1+76]\nldxw %r3, [%r1+80]\nmov %r4, %r2\nadd %r4, 1\n" \
                "jgt %r4, %r3, +1\nstb [%r2+0], 1\nmov %r0, 0\nexit"  # fmt: skip
    assert _verify(lwt_write, P.LWT_XMIT) is None
    assert "cannot write into packet" in _verify(lwt_write, P.LWT_OUT)


def test_syscall_programs_must_be_sleepable():
    assert "sleepable" in _verify("mov %r0, 0\nexit", P.SYSCALL)
    src = "ldxdw %r2, [%r1+32000]\nstxdw [%r1+8], %r2\nmov %r0, 0\nexit"
    assert _verify(src, P.SYSCALL, flags=int(ProgFlag.SLEEPABLE)) is None
    assert "can be sleepable" in _verify("mov %r0, 0\nexit", P.XDP, flags=int(ProgFlag.SLEEPABLE))


@pytest.mark.parametrize("sec, expected", [
    ("cgroup/sock_create", (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE)),
    ("cgroup/post_bind6", (P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND)),
    ("cgroup/recvmsg_unix", (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG)),
    ("cgroup/getsockname6", (P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME)),
    ("cgroup/sysctl", (P.CGROUP_SYSCTL, A.CGROUP_SYSCTL)),
    ("cgroup/setsockopt", (P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT)),
    ("sockops", (P.SOCK_OPS, A.CGROUP_SOCK_OPS)), ("sk_msg", (P.SK_MSG, A.SK_MSG_VERDICT)),
    ("sk_skb/stream_verdict", (P.SK_SKB, A.SK_SKB_STREAM_VERDICT)), ("sk_skb", (P.SK_SKB, 0)),
    ("lwt_xmit", (P.LWT_XMIT, 0)), ("flow_dissector", (P.FLOW_DISSECTOR, A.FLOW_DISSECTOR)),
    ("raw_tp.w/x", (P.RAW_TRACEPOINT_WRITABLE, 0)), ("syscall", (P.SYSCALL, 0)),
    ("netfilter", (P.NETFILTER, A.NETFILTER)), ("sk_lookup", (P.SK_LOOKUP, A.SK_LOOKUP)),
    ("sk_reuseport/migrate", (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE)),
])  # fmt: skip
def test_sections_of_the_new_types_load(sec, expected):
    prog_type, attach = sec_to_prog_type(sec)
    assert (prog_type, attach) == expected
    spec = PROG_TYPES[prog_type]
    assert spec.load_error(attach, _flags(prog_type)) is None


def test_declarations_are_consistent():
    assert set(PROG_TYPES) == ctx.MODELLED
    assert len({s.name for s in PROG_TYPES.values()}) == len(PROG_TYPES)
    for prog_type, found in ctx.OPS.items():
        assert found.packet in ("", "r", "rw", "ctx") and found.sleepable in (
            "never", "allowed", "required")  # fmt: skip
        for attach in found.sweep_attach:
            assert found.attach_types is None or found.attach(attach) in found.attach_types
        for off in range(-4, found.ctx_size + 16):
            for size in (1, 2, 4, 8):
                acc = ctx.ctx_access(prog_type, off, size, write=False, attach_type=0)
                assert acc is None or (off >= 0 and off + size <= found.ctx_size)
