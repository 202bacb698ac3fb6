"""The verifier's core (pybpf.verifier.verify) against Linux 6.18, check by check.

Each row is a program in llvm assembly, its program type and maps, and the
verdict the kernel gives: ``None`` for an accept, else the pc and the first
line of the kernel's message.  Every row runs through pybpf's verifier (via
the runtime's load path, as BPF_PROG_LOAD runs bpf_check), whose verdict must
also be the kernel's as recorded in ``kernel_facts/verifier.json`` (pc and
message; the live kernel is asked too, for drift), so the table cannot
drift from the kernel.  Each check has an accepted and a refused row.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from pybpf.asm.llvm import assemble
from pybpf.testing import verifier_diff as vd
from pybpf.verifier import Target, verify
from pybpf.verifier.log import alignment, insn_text

XDP, SOCKET, SCHED_CLS, KPROBE, CGROUP_SKB, RAW_TP_W = 6, 1, 3, 2, 8, 24
HASH = vd.MapDecl("h", 1, 4, 8, 16)
ARRAY = vd.MapDecl("arr", 2, 4, 64, 4)
RINGBUF = vd.MapDecl("rb", 27, 0, 0, 4096)
RODATA = vd.MapDecl("ro", 2, 4, 8, 1, map_flags=1 << 7, frozen=True)  # BPF_F_RDONLY_PROG
DATA = vd.MapDecl("rw", 2, 4, 8, 1)
# a branch on a map value: the read of a frozen read-only map is its value (0), so the
# bad stack read after it is dead code; in a writable map it is reachable
ON_VALUE = ("ld_pseudo r1, 2, 0, 4\nr2 = *(u32 *)(r1 + 0)\nif r2 == 0 goto +1\n"
            "r0 = *(u64 *)(r10 + 0)\nr0 = 0\nexit")

LOOKUP = """
r1 = 0
*(u32 *)(r10 - 4) = r1
r2 = r10
r2 += -4
ld_pseudo r1, 1, 0
call 1
"""

# update(map, &key, &key, 0): the key doubles as the value
UPDATE = LOOKUP.replace("call 1", "r3 = r10\nr3 += -4\nr4 = 0\ncall 2") + "r0 = 0\nexit"
HASH_RDONLY = vd.MapDecl("ro", 1, 4, 4, 16, map_flags=1 << 7)  # BPF_F_RDONLY_PROG
QUEUE = vd.MapDecl("q", 22, 0, 8, 4)
SOCKMAP = vd.MapDecl("sm", 15, 4, 4, 1)
PROG_ARRAY = vd.MapDecl("pa", 3, 4, 4, 2)

# a map helper given the first 8 bytes of the packet (R2) as its value
POP_PKT = """
r2 = *(u32 *)(r1 + 76)
r3 = *(u32 *)(r1 + 80)
r4 = r2
r4 += 8
if r4 > r3 goto out
ld_pseudo r1, 1, 0
call {call}
out:
r0 = 0
exit
"""

# name, program type, maps, asm, expected: None (accept) or (pc, first message line)
CASES = [
    # --- pruning inside a callee compares the caller's registers live after the call
    ("prune_in_callee_keeps_caller_regs", XDP, (),
     "r2 = *(u32 *)(r1 + 16)\nr6 = 0\nif r2 == 0 goto +1\nr6 = r10\ncall local f\n"
     "*(u64 *)(r6 - 8) = r0\nr0 = 0\nexit\nf:\nr0 = 0\nif r2 > 5 goto +0\nexit",
     (5, "R6 invalid mem access 'scalar'")),
    # --- registers and ALU
    ("alu_ok", XDP, (), "r0 = 1\nr0 += 2\nr0 *= 3\nexit", None),
    ("uninit_r0", XDP, (), "exit", (0, "R0 !read_ok")),
    ("uninit_src", XDP, (), "r0 = r5\nexit", (0, "R5 !read_ok")),
    ("fp_write", XDP, (), "r10 = 0\nr0 = 0\nexit", (0, "frame pointer is read only")),
    ("div_by_zero_imm", XDP, (), "r0 = 1\nr0 /= 0\nexit", (1, "div by zero")),
    ("div_by_reg_ok", XDP, (), "r0 = 1\nr1 = 0\nr0 /= r1\nexit", None),
    ("shift_too_far", XDP, (), "r0 = 1\nr0 <<= 64\nexit", (1, "invalid shift 64")),
    ("ptr_and_prohibited", XDP, (), "r1 &= 7\nr0 = 0\nexit",
     (0, "R1 bitwise operator &= on pointer prohibited")),
    ("ptr_32bit_prohibited", XDP, (), "w1 += 4\nr0 = 0\nexit",
     (0, "R1 32-bit pointer arithmetic prohibited")),
    ("ptr_sub_ptr_ok", XDP, (), "r2 = r10\nr2 -= r1\nr0 = 0\nexit", None),
    # --- map values: a frozen BPF_F_RDONLY_PROG array's contents are known (bpf_map_direct_read)
    ("rodata_value_is_known", XDP, (RODATA,), ON_VALUE, None),
    ("data_value_is_unknown", XDP, (DATA,), ON_VALUE,
     (4, "invalid read from stack R10 off=0 size=8")),
    # --- stack
    ("stack_spill_fill_ctx", XDP, (),
     "*(u64 *)(r10 - 8) = r1\nr2 = *(u64 *)(r10 - 8)\nr0 = *(u32 *)(r2 + 0)\nr0 = 0\nexit", None),
    ("stack_narrow_spill_ptr", XDP, (), "*(u32 *)(r10 - 8) = r1\nr0 = 0\nexit",
     (0, "invalid size of register spill")),
    ("stack_partial_fill_ptr", XDP, (),
     "*(u64 *)(r10 - 8) = r1\nr0 = *(u32 *)(r10 - 8)\nexit", (1, "invalid size of register fill")),
    ("stack_write_oob", XDP, (), "r0 = 0\n*(u64 *)(r10 - 520) = r0\nexit",
     (1, "invalid write to stack R10 off=-520 size=8")),
    ("stack_write_above_fp", XDP, (), "r0 = 0\n*(u64 *)(r10 + 0) = r0\nexit",
     (1, "invalid write to stack R10 off=0 size=8")),
    ("stack_misaligned", XDP, (), "r0 = 0\n*(u64 *)(r10 - 12) = r0\nexit",
     (1, "misaligned stack access off 0+0+-12 size 8")),
    ("stack_uninit_read_root_ok", XDP, (), "r0 = *(u64 *)(r10 - 8)\nexit", None),
    ("stack_zero_const", XDP, (ARRAY,),
     "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr6 = *(u64 *)(r10 - 8)\n" + LOOKUP
     + "if r0 == 0 goto out\nr0 += r6\nr0 = *(u64 *)(r0 + 56)\nout:\nr0 = 0\nexit", None),
    # --- maps
    ("map_null_checked", XDP, (HASH,), LOOKUP + "if r0 == 0 goto out\nr0 = *(u64 *)(r0 + 0)\n"
     "out:\nr0 = 0\nexit", None),
    ("map_no_null_check", XDP, (HASH,), LOOKUP + "r0 = *(u64 *)(r0 + 0)\nr0 = 0\nexit",
     (7, "R0 invalid mem access 'map_value_or_null'")),
    ("map_value_oob", XDP, (HASH,), LOOKUP + "if r0 == 0 goto out\nr0 = *(u64 *)(r0 + 4)\n"
     "out:\nr0 = 0\nexit", (8, "invalid access to map value, value_size=8 off=4 size=8")),
    ("map_or_null_arith", XDP, (HASH,), LOOKUP + "r0 += 1\nr0 = 0\nexit",
     (7, "R0 pointer arithmetic on map_value_or_null prohibited, null-check it first")),
    ("map_ptr_arith", XDP, (HASH,), "ld_pseudo r1, 1, 0\nr1 += 8\nr0 = 0\nexit",
     (2, "R1 pointer arithmetic on map_ptr prohibited")),
    ("map_var_index_checked", XDP, (ARRAY,), LOOKUP + "if r0 == 0 goto out\ncall 7\nr1 = r0\n"
     "r1 &= 7\n" "r1 <<= 3\n" + "r6 = r0\n", None),  # replaced below
    ("map_key_uninit_ok_root", XDP, (HASH,),
     "r2 = r10\nr2 += -4\nld_pseudo r1, 1, 0\ncall 1\nr0 = 0\nexit", None),
    ("map_key_oob", XDP, (HASH,),
     "r2 = r10\nr2 += -2\nld_pseudo r1, 1, 0\ncall 1\nr0 = 0\nexit",
     (4, "invalid read from stack R2 off=-2 size=4")),
    ("map_arg_type", XDP, (HASH,), "r2 = r10\nr2 += -4\nr1 = 0\ncall 1\nr0 = 0\nexit",
     (3, "R1 type=scalar expected=map_ptr")),
    # --- packets
    ("pkt_checked", XDP, (), "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\n"
     "r4 += 14\nif r4 > r3 goto out\nr0 = *(u8 *)(r2 + 13)\nout:\nr0 = 2\nexit", None),
    ("pkt_unchecked", XDP, (), "r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 0)\nr0 = 2\nexit",
     (1, "invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)")),
    ("pkt_off_by_one", XDP, (), "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\n"
     "r4 += 14\nif r4 > r3 goto out\nr0 = *(u8 *)(r2 + 14)\nout:\nr0 = 2\nexit",
     (5, "invalid access to packet, off=14 size=1, R2(id=0,off=14,r=14)")),
    ("pkt_jlt_checked", XDP, (), "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\n"
     "r4 += 4\nif r4 < r3 goto ok\nr0 = 2\nexit\nok:\nr0 = *(u32 *)(r2 + 0)\nr0 = 2\nexit", None),
    ("pkt_end_arith", XDP, (), "r3 = *(u32 *)(r1 + 4)\nr3 += 1\nr0 = 2\nexit",
     (1, "R3 pointer arithmetic on pkt_end prohibited")),
    ("pkt_socket_filter_refused", SOCKET, (), "r2 = *(u32 *)(r1 + 76)\nr0 = 0\nexit",
     (0, "invalid bpf_context access off=76 size=4")),
    # --- context
    ("ctx_read_ok", SCHED_CLS, (), "r0 = *(u32 *)(r1 + 0)\nexit", None),
    ("ctx_bad_off", XDP, (), "r0 = *(u32 *)(r1 + 64)\nexit",
     (0, "invalid bpf_context access off=64 size=4")),
    ("ctx_modified", XDP, (), "r1 += 4\nr0 = *(u32 *)(r1 + 0)\nexit",
     (1, "dereference of modified ctx ptr R1 off=4 disallowed")),
    ("ctx_st_mark", SCHED_CLS, (), "*(u32 *)(r1 + 8) = 0\nr0 = 0\nexit", None),
    ("ctx_atomic_refused", SCHED_CLS, (), "r2 = 1\nlock *(u32 *)(r1 + 8) += r2\nr0 = 0\nexit",
     (1, "BPF_ATOMIC stores into R1 ctx is not allowed")),
    # --- record_func_map after the arguments, check_map_func_compatibility last
    ("update_rdonly_prog_map", XDP, (HASH_RDONLY,), UPDATE, (9, "write into map forbidden")),
    ("delete_rdonly_prog_map", XDP, (HASH_RDONLY,), LOOKUP.replace("call 1", "call 3")
     + "r0 = 0\nexit", (6, "write into map forbidden")),
    ("lookup_queue_zero_key", XDP, (QUEUE,), LOOKUP + "r0 = 0\nexit",
     (6, "invalid zero-sized read")),
    ("push_sockmap_value_is_a_socket", XDP, (SOCKMAP,), UPDATE.replace("call 2", "call 87"),
     (9, "R2 type=fp expected=sock_common, sock, tcp_sock, xdp_sock, ptr_, trusted_ptr_")),
    ("lookup_prog_array", XDP, (PROG_ARRAY,), LOOKUP + "r0 = 0\nexit",
     (6, "cannot pass map_type 3 into func bpf_map_lookup_elem#1")),
    # --- a packet pointer goes only to helpers with pkt_access (may_access_direct_pkt_data)
    ("pop_into_packet", SCHED_CLS, (QUEUE,), POP_PKT.format(call=88),
     (7, "helper access to the packet is not allowed")),
    ("push_from_packet", SCHED_CLS, (QUEUE,), POP_PKT.format(call=87), None),
    # --- a writable tracepoint's buffer: constant, non-negative offsets (check_tp_buffer_access)
    ("tp_buffer_rw", RAW_TP_W, (), "r6 = *(u64 *)(r1 + 0)\nr7 = 1\n*(u64 *)(r6 + 16) = r7\n"
     "r0 = *(u32 *)(r6 + 8)\nr0 = 0\nexit", None),
    ("tp_buffer_negative", RAW_TP_W, (), "r6 = *(u64 *)(r1 + 0)\nr0 = *(u64 *)(r6 - 8)\n"
     "r0 = 0\nexit", (1, "R6 invalid tracepoint buffer access: off=-8, size=8")),
    ("tp_buffer_variable", RAW_TP_W, (), "r6 = *(u64 *)(r1 + 0)\nr7 = *(u64 *)(r1 + 8)\n"
     "r7 &= 4\nr6 += r7\nr0 = *(u8 *)(r6 + 0)\nr0 = 0\nexit",
     (4, "R6 invalid variable buffer offset: off=0, var_off=(0x0; 0x4)")),
    # --- helpers
    ("helper_unknown", XDP, (), "call 10000\nr0 = 0\nexit", (0, "invalid func unknown#10000")),
    ("helper_wrong_prog_type", SOCKET, (), "call 44\nr0 = 0\nexit",
     (0, "program of this type cannot use helper bpf_xdp_adjust_head#44")),
    ("helper_size_unbounded", KPROBE, (), "call 7\nr1 = r10\nr1 += -8\nr2 = r0\nr3 = 0\n"
     "call 4\nr0 = 0\nexit", (5, "R2 min value is negative, either use unsigned or "
                              "'var &= const'")),
    ("helper_size_ok", KPROBE, (), "r1 = r10\nr1 += -8\nr2 = 8\nr3 = 0\ncall 4\nr0 = 0\nexit",
     None),
    ("helper_clobbers_r1", XDP, (), "call 7\nr0 = r1\nexit", (1, "R1 !read_ok")),
    # --- ringbuf references
    ("ringbuf_submit", XDP, (RINGBUF,), "ld_pseudo r1, 1, 0\nr2 = 8\nr3 = 0\ncall 131\n"
     "if r0 == 0 goto out\nr1 = r0\nr2 = 0\ncall 132\nout:\nr0 = 0\nexit", None),
    ("ringbuf_leak", XDP, (RINGBUF,), "ld_pseudo r1, 1, 0\nr2 = 8\nr3 = 0\ncall 131\n"
     "if r0 == 0 goto out\nr0 = 0\nexit\nout:\nr0 = 0\nexit",
     (7, "Unreleased reference id=2 alloc_insn=4")),
    ("ringbuf_use_after_submit", XDP, (RINGBUF,), "ld_pseudo r1, 1, 0\nr2 = 8\nr3 = 0\n"
     "call 131\nif r0 == 0 goto out\nr6 = r0\nr1 = r0\nr2 = 0\ncall 132\n"
     "r0 = *(u64 *)(r6 + 0)\nout:\nr0 = 0\nexit", (10, "R6 invalid mem access 'scalar'")),
    # --- bpf-to-bpf calls
    ("subprog_ok", XDP, (), "r1 = 1\ncall local f\nexit\nf:\nr0 = r1\nexit", None),
    ("subprog_callee_saved_uninit", XDP, (), "call local f\nr0 = 0\nexit\nf:\nr0 = r6\nexit",
     (3, "R6 !read_ok")),
    ("subprog_stack_ptr_return", XDP, (), "call local f\nr0 = 0\nexit\nf:\nr0 = r10\nexit",
     (4, "cannot return stack pointer to the caller")),
    # --- loops and branches
    ("loop_bounded", XDP, (), "r0 = 0\nl:\nr0 += 1\nif r0 < 50 goto l\nexit", None),
    ("loop_infinite", XDP, (), "r0 = 0\nl:\nif r0 == 0 goto l\nexit",
     (1, "infinite loop detected at insn 1")),
    ("dead_branch_not_checked", XDP, (), "r0 = 0\nif r0 == 1 goto bad\nexit\nbad:\n"
     "r0 = *(u64 *)(r0 + 0)\nexit", None),
    ("may_goto_loop", XDP, (), "r0 = 0\nmay_goto +2\nr0 += 1\ngoto -3\nexit", None),
    # --- return codes
    ("cgroup_skb_ret_ok", CGROUP_SKB, (), "r0 = 1\nexit", None),
    ("cgroup_skb_ret_bad", CGROUP_SKB, (), "r0 = 2\nexit",
     (1, "At program exit the register R0 has smin=2 smax=2 should have been in [0, 1]")),
]
CASES = [c for c in CASES if c[0] != "map_var_index_checked"] + [
    ("map_var_index_checked", XDP, (ARRAY,), LOOKUP + "if r0 == 0 goto out\nr6 = r0\ncall 7\n"
     "r0 &= 7\nr0 <<= 3\nr6 += r0\nr0 = *(u64 *)(r6 + 0)\nout:\nr0 = 0\nexit", None),
    ("map_var_index_unchecked", XDP, (ARRAY,), LOOKUP + "if r0 == 0 goto out\nr6 = r0\n"
     "call 7\nr0 &= 15\nr0 <<= 3\nr6 += r0\nr0 = *(u64 *)(r6 + 0)\nout:\nr0 = 0\nexit",
     (13, "invalid access to map value, value_size=64 off=120 size=8")),
]


def _case(name: str, prog_type: int, maps: tuple, text: str) -> vd.Case:
    return vd.Case(name, Path(__file__), prog_type, tuple(assemble(text)), tuple(maps))


@pytest.mark.parametrize(("name", "prog_type", "maps", "text", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_verdict(name, prog_type, maps, text, expected):
    case = _case(name, prog_type, maps, text)
    ours = vd.pybpf_verdict(case)
    if expected is None:
        assert ours.ok, ours.log
    else:
        assert not ours.ok, f"accepted; expected {expected}"
        assert (ours.pc, ours.reason) == expected, ours.log


def _fact(verdict: vd.Verdict) -> list | None:
    """A verdict as a kernel fact: None for an accept, else [pc, first message line]."""
    return None if verdict.ok else [verdict.pc, verdict.reason]


def check_kernel(kernel_facts, case: vd.Case) -> None:
    """pybpf's verdict on ``case`` is the kernel's recorded one."""
    kernel_facts.check(f"verdict/{case.name}", _fact(vd.pybpf_verdict(case)),
                       lambda: _fact(vd.kernel_verdict(case)))  # fmt: skip


@pytest.mark.parametrize(("name", "prog_type", "maps", "text"), [c[:4] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_verdict_matches_kernel(kernel_facts, name, prog_type, maps, text):
    check_kernel(kernel_facts, _case(name, prog_type, maps, text))


# --- the API and the log -------------------------------------------------------------------------


def _target(prog_type: int) -> Target:
    from pybpf.runtime.helpers import HELPERS
    from pybpf.runtime.progtypes import PROG_TYPES

    allowed = PROG_TYPES[prog_type].helpers
    return Target(prog_type, helpers={h: HELPERS[h].proto for h in allowed if h in HELPERS})


def _verify(text: str, prog_type: int = XDP, level: int = 1):
    return verify(assemble(text), _target(prog_type), log_level=level)


def test_refusal_is_a_verdict_not_an_exception():
    v = _verify("exit")
    assert not v.ok and v.error is not None
    assert v.error.pc == 0 and v.error.errno == errno.EACCES
    assert v.xlated == ()
    assert "R0 !read_ok" in v.log


def test_accept_level1_log_is_the_summary_line():
    v = _verify("r0 = 0\nexit")
    assert v.ok and v.error is None
    assert v.log.startswith("processed 2 insns (limit 1000000) max_states_per_insn")
    assert v.insns_processed == 2


def test_level1_log_of_a_refusal_has_the_kernel_lines():
    v = _verify("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 0)\nr0 = 2\nexit")
    lines = v.log.splitlines()
    assert lines[0] == "0: R1=ctx() R10=fp0"
    assert lines[1] == "0: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2=pkt(r=0)"
    assert lines[2] == "1: (71) r0 = *(u8 *)(r2 +0)"
    assert lines[3] == "invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)"
    assert lines[4] == "R2 offset is outside of the packet"
    assert lines[5].startswith("processed 2 insns (limit 1000000)")


def test_level2_keeps_every_path():
    text = "call 7\nif r0 == 0 goto a\nr0 = 1\nexit\na:\nr0 = 2\nexit"
    assert "from 1 to 4:" in _verify(text, level=2).log
    assert "from 1 to 4:" not in _verify(text, level=1).log


_USEC = re.compile(r"^verification time \d+ usec$")


def _stats_shape(log: str) -> list[str]:
    """A log with its verification time (wall clock) blanked."""
    return [_USEC.sub("verification time N usec", ln) for ln in log.splitlines()]


def _kernel_log(text: str, level: int) -> list[str]:
    from pybpf.errors import KernelError
    from pybpf.kernel import linux

    try:
        prog = linux.prog_load(assemble(text), prog_type=XDP, log_level=level)
    except KernelError as err:
        return _stats_shape(err.log)
    log = prog.log
    prog.close()
    return _stats_shape(log)


STATS = [  # log level 4 (BPF_LOG_STATS): no walk, the time and stack depths; 5: both
    ("stats_accept", "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr0 = 2\nexit", 4),
    ("stats_refuse", "r1 = 0\n*(u64 *)(r10 - 16) = r1\nexit", 4),
    ("stats_subprog", "r1 = 0\n*(u64 *)(r10 - 8) = r1\ncall local f\nexit\nf:\n"
     "*(u64 *)(r10 - 24) = r1\nr0 = 2\nexit", 4),
    ("stats_level5", "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr0 = 2\nexit", 5),
]


@pytest.mark.parametrize(("name", "text", "level"), STATS, ids=[c[0] for c in STATS])
def test_stats_log_is_the_kernels(kernel_facts, name, text, level):
    """print_verification_stats: at BPF_LOG_STATS the verification time and each
    subprogram's stack depth come before the summary, refusal or not."""
    ours = _stats_shape(_verify(text, level=level).log)
    assert "stack depth" in " ".join(ours)
    kernel_facts.check(f"stats/{name}", ours, lambda: _kernel_log(text, level))


def test_dead_code_is_removed_from_xlated():
    v = _verify("r0 = 0\nif r0 == 1 goto bad\nexit\nbad:\nr0 = 1\nexit")
    assert v.ok
    assert len(v.xlated) < 5


def test_failing_path_is_reported():
    v = _verify("call 7\nif r0 == 0 goto a\nr0 = 1\nexit\na:\nexit", level=0)
    assert v.ok
    v = _verify("call 7\nif r0 == 0 goto a\nr0 = 1\nexit\na:\nr0 = r5\nexit", level=0)
    assert not v.ok and v.path[-1] == 4 and 1 in v.path


def test_insn_printer():
    insns = assemble("r1 = 0\n*(u32 *)(r10 - 4) = r1\nif w1 > 5 goto +1\ncall 1\nr0 = -r0")
    assert [insn_text(i) for i in insns] == [
        "(b7) r1 = 0", "(63) *(u32 *)(r10 -4) = r1", "(26) if w1 > 0x5 goto pc+1",
        "(85) call bpf_map_lookup_elem#1", "(87) r0 = -r0"]  # fmt: skip


def test_log_alignment_matches_kernel():
    # "0: (61) r2 = *(u32 *)(r1 +0)" is 28 characters; the kernel pads to column 38
    assert alignment(29) == 10
    assert alignment(60) == 3


def test_callee_cannot_leave_its_stack_pointer_in_the_caller(kernel_facts):
    text = ("r1 = r10\nr1 += -8\ncall local f\nr0 = 0\nexit\n"
            "f:\nr2 = r10\n*(u64 *)(r1 + 0) = r2\nr0 = 0\nexit")  # fmt: skip
    v = _verify(text, level=0)
    assert not v.ok
    assert (v.error.pc, v.error.reason) == (6, "cannot spill pointers to stack into stack "
                                                "frame of the caller")
    check_kernel(kernel_facts, _case("spill_fp_caller", XDP, (), text))


def test_level2_log_of_a_subprogram_call_is_the_kernels():
    # Linux 6.18's log for this program, byte for byte
    expected = """\
func#0 @0
func#1 @3
Live regs before insn:
      0: ..2345.... (b7) r1 = 1
      1: .12345.... (85) call pc+1
      2: 0......... (95) exit
      3: .1........ (bf) r0 = r1
      4: 0......... (07) r0 += 1
      5: 0......... (95) exit
0: R1=ctx() R10=fp0
0: (b7) r1 = 1                        ; R1=1
1: (85) call pc+1
caller:
 R10=fp0
callee:
 frame1: R1=1 R10=fp0
3: frame1: R1=1 R10=fp0
3: (bf) r0 = r1                       ; frame1: R0=1 R1=1
4: (07) r0 += 1                       ; frame1: R0=2
5: (95) exit
returning from callee:
 frame1: R0=2 R1=1 R10=fp0
to caller at 2:
 R0=2 R10=fp0

from 5 to 2: R0=2 R10=fp0
2: (95) exit
processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""
    text = "r1 = 1\ncall local f\nexit\nf:\nr0 = r1\nr0 += 1\nexit"
    assert _verify(text, level=2).log == expected


# --- helpers the corpus needed: skb_pull_data (tc), get_stack (tracing) -------------------------


def _run_tc(text: str, packet: bytes):
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.testrun import test_run

    prog = Kernel(verify=True).prog_load(assemble(text), SCHED_CLS, log_level=1)
    return test_run(prog, data_in=packet).retval


PULL = "r6 = r1\nr1 = r6\nr2 = {n}\ncall 39\nexit"


@pytest.mark.parametrize(("n", "packet_len", "want"), [
    (0, 60, 0), (14, 60, 0), (60, 60, 0), (61, 60, (-errno.ENOMEM) & 0xFFFFFFFF)])
def test_skb_pull_data_succeeds_within_the_packet(n, packet_len, want):
    # skb_ensure_writable: pskb_may_pull fails (-ENOMEM) past skb->len
    assert _run_tc(PULL.format(n=n), bytes(packet_len)) == want


def test_skb_pull_data_invalidates_packet_pointers():
    text = ("r6 = r1\nr7 = *(u32 *)(r6 + 76)\nr8 = *(u32 *)(r6 + 80)\nr1 = r7\nr1 += 1\n"
            "if r1 > r8 goto +4\nr1 = r6\nr2 = 0\ncall 39\nr0 = *(u8 *)(r7 + 0)\nr0 = 0\nexit")
    v = _verify(text, SCHED_CLS)
    assert not v.ok and v.error.pc == 9 and v.error.reason == "R7 invalid mem access 'scalar'"


class _Mem:
    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes]] = []

    def write(self, addr: int, data: bytes) -> None:
        self.writes.append((addr, bytes(data)))


class _Env:
    def __init__(self) -> None:
        self.memory = _Mem()


@pytest.mark.parametrize(("size", "flags", "want"), [
    (64, 0, 0), (0, 0, 0), (64, 1 << 8, 0), (64, 1, -errno.EFAULT), (12, 0, -errno.EINVAL),
    (64, 1 << 11, -errno.EINVAL), (64, (1 << 11) | (1 << 8), 0), (40, (1 << 11) | (1 << 8),
                                                                 -errno.EINVAL),
    (64, 1 << 9, -errno.EINVAL)])
def test_get_stack_gives_an_empty_trace(size, flags, want):
    # __bpf_get_stack: flags and size checked, the buffer always cleared
    from pybpf.runtime.helpers import HELPERS

    env = _Env()
    got = HELPERS[67].fn(env, 0, 0x1000, size, flags, 0)
    assert got == want & (2**64 - 1)
    assert env.memory.writes == ([(0x1000, bytes(size))] if size else [])


def test_tracing_types_may_call_get_stack_and_tc_skb_pull_data():
    for prog_type, text in ((KPROBE, "r2 = r10\nr2 += -64\nr3 = 64\nr4 = 0\ncall 67\nexit"),
                            (5, "r2 = r10\nr2 += -64\nr3 = 64\nr4 = 0\ncall 67\nexit"),
                            (SCHED_CLS, "r2 = 0\ncall 39\nr0 = 0\nexit"),
                            (4, "r2 = 0\ncall 39\nr0 = 0\nexit")):
        v = _verify(text, prog_type)
        assert v.ok, (prog_type, v.log)


# --- precision: loops pruned as the kernel prunes them ----------------------------------------

#: corpus programs (verifier_corpus/precision.vc) whose loops the kernel verifies in a few
#: thousand steps because the scalars they accumulate are never relied upon (imprecise)
PRUNED_LOOPS = ("precise_loop_lookup_1024", "precise_loop_flags_1024", "precise_loop_two_flags_64")


def _processed(log: str) -> int:
    found = re.search(r"processed (\d+) insns", log)
    assert found, log
    return int(found.group(1))


@pytest.mark.parametrize("name", PRUNED_LOOPS)
def test_loop_takes_as_many_steps_as_in_the_kernel(kernel_facts, name):
    """The loop verifies, in the kernel's number of processed instructions (recorded as a
    kernel fact) give or take 10%: without precision tracking each iteration's paths
    would not join and the walk would hit the 1,000,000-instruction limit."""
    (case,) = vd.load_corpus(names=[name], facts=None)
    ours = vd.pybpf_verdict(case)
    assert ours.ok, ours.log
    theirs = kernel_facts.fact(f"processed/{name}",
                               lambda: _processed(vd.kernel_verdict(case).log))  # fmt: skip
    assert abs(_processed(ours.log) - theirs) <= theirs // 10, (ours.log, theirs)
