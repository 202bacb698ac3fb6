"""The verifier's structural checks and xlated rewrites, against Linux 6.18.

Each refused program is a row: its slots, the kernel's message, the pc and
errno.  pybpf's :func:`pybpf.verifier.cfg.analyze` must refuse it the same
way, and as the kernel did: its answers (errno and message, the xlated image
``bpftool prog dump xlated`` printed) are recorded in
``kernel_facts/verifier_cfg.json`` and asked of the live kernel too, for drift.
The rewrite rows state by hand which instructions the kernel's verifier visits
(``seen``) and compare :func:`pybpf.verifier.cfg.xlate` with the expected
image and with the kernel's recorded one.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

from pybpf.asm import assemble, disassemble
from pybpf.errors import VerifierError
from pybpf.isa import Instruction, decode, encode
from pybpf.kernel import linux
from pybpf.verifier import cfg
from pybpf.verifier import slots as slots_mod
from pybpf.verifier import xlate as xl
from pybpf.verifier.report import hint_for

SOCKET_FILTER = 1


def slot(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One raw 8-byte slot (for programs an Instruction list cannot hold)."""
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def asm(text: str) -> bytes:
    return encode(assemble(text, "llvm"))


MOV0, EXIT = slot(0xB7), slot(0x95)
EINVAL, E2BIG, EACCES, EPERM = errno.EINVAL, errno.E2BIG, errno.EACCES, errno.EPERM

# (id, program bytes, the kernel's message, pc, errno)
REFUSED = [
    ("call-outside", MOV0 + slot(0x85, src=1, imm=5) + EXIT,
     "call to invalid destination", 1, EINVAL),
    ("call-before-start", slot(0x85, src=1, imm=-2) + EXIT,
     "call to invalid destination", 0, EINVAL),
    ("func-addr-outside", slot(0x18, 1, 4, 0, 7) + slot(0) + MOV0 + EXIT,
     "call to invalid destination", 0, EINVAL),
    ("jump-past-end", MOV0 + slot(0x05, off=5) + EXIT,
     "jump out of range from insn 1 to 7", 1, EINVAL),
    ("jump-before-start", slot(0x15, 1, 0, -3, 0) + MOV0 + EXIT,
     "jump out of range from insn 0 to -2", 0, EINVAL),
    ("gotol-past-end", MOV0 + slot(0x06, imm=9) + EXIT,
     "jump out of range from insn 1 to 11", 1, EINVAL),
    ("may-goto-past-end", slot(0xE5, off=4) + MOV0 + EXIT,
     "jump out of range from insn 0 to 5", 0, EINVAL),
    ("jump-into-subprog", asm("call local +2\nif r0 > 1 goto +2\nexit\nr0 = 0\nexit"),
     "jump out of range from insn 1 to 4", 1, EINVAL),
    ("jump-out-of-subprog", asm("call local +2\nr0 = 0\nexit\nr0 = 1\ngoto -3"),
     "jump out of range from insn 4 to 2", 4, EINVAL),
    ("last-not-exit", MOV0 + slot(0x07), "last insn is not an exit or jmp", 1, EINVAL),
    ("last-cond-jump", MOV0 + slot(0x15, off=-2), "last insn is not an exit or jmp", 1, EINVAL),
    ("last-may-goto", MOV0 + slot(0xE5, off=-2), "last insn is not an exit or jmp", 1, EINVAL),
    ("last-is-lddw", MOV0 + EXIT + slot(0x18),
     "last insn is not an exit or jmp", 2, EINVAL),
    ("subprog-falls-through", asm("call local +1\nexit\nr0 = 0\nr0 = 1"),
     "last insn is not an exit or jmp", 3, EINVAL),
    ("main-falls-into-subprog", asm("call local +2\nr0 = 0\nr0 = 1\nexit"),
     "last insn is not an exit or jmp", 2, EINVAL),
    ("call-into-lddw", slot(0x85, src=1, imm=3) + MOV0 + EXIT + slot(0x18) + slot(0) + EXIT,
     "last insn is not an exit or jmp", 3, EINVAL),
    ("lddw-second-half-dst", slot(0x18) + slot(0, dst=1) + EXIT,
     "invalid bpf_ld_imm64 insn", 0, EINVAL),
    ("lddw-second-half-code", slot(0x18) + slot(0x07) + EXIT,
     "invalid bpf_ld_imm64 insn", 0, EINVAL),
    ("lddw-second-half-off", slot(0x18) + slot(0, off=1) + EXIT,
     "invalid bpf_ld_imm64 insn", 0, EINVAL),
    ("lddw-bad-source", slot(0x18, src=7) + slot(0) + EXIT,
     "unrecognized bpf_ld_imm64 insn", 0, EINVAL),
    ("lddw-map-fd-imm2", slot(0x18, 1, 1, 0, 3) + slot(0, imm=1) + EXIT,
     "unrecognized bpf_ld_imm64 insn", 0, EINVAL),
    ("ldx-mode", slot(0x21, 0, 1) + EXIT, "BPF_LDX uses reserved fields", 0, EINVAL),
    ("ldx-imm", MOV0 + slot(0x61, 0, 1, 0, 1) + EXIT, "BPF_LDX uses reserved fields", 1, EINVAL),
    ("unknown-ff", MOV0 + slot(0xFF) + EXIT, "unknown opcode ff", 1, EINVAL),
    ("callx", MOV0 + slot(0x8D) + EXIT, "unknown opcode 8d", 1, EINVAL),
    ("ld-abs-dw", slot(0x38) + EXIT, "unknown opcode 38", 0, EINVAL),
    ("alu-end-x", slot(0xDF) + EXIT, "unknown opcode df", 0, EINVAL),
    ("jump-checked-before-opcodes", slot(0xFF) + slot(0x05, off=9) + EXIT,
     "jump out of range from insn 1 to 11", 1, EINVAL),
    ("after-exit", MOV0 + EXIT + MOV0 + EXIT, "unreachable insn 2", 2, EINVAL),
    ("jumped-over", asm("r0 = 0\ngoto +1\nr0 = 1\nexit"), "unreachable insn 2", 2, EINVAL),
    ("after-loop", MOV0 + slot(0x05, off=-1) + EXIT, "unreachable insn 2", 2, EINVAL),
    ("uncalled-tail", asm("call local +1\nexit\nexit\nr0 = 0\nexit"),
     "unreachable insn 3", 3, EINVAL),
    ("jump-over-lddw-start", slot(0x05, off=1) + slot(0x18) + slot(0) + MOV0 + EXIT,
     "unreachable insn 1", 1, EINVAL),
    ("jump-into-lddw", asm("r0 = 0\nif r0 > 0 goto +1\nr1 = 0 ll\nexit"),
     "jump into the middle of ldimm64 insn 2", 2, EINVAL),
    ("call-dead-caller", asm("r0 = 0\nexit\ncall local +1\nexit\nr0 = 0\nexit"),
     "unreachable insn 2", 2, EINVAL),
    ("ld-abs-in-subprog", asm("call local +1\nexit\nr0 = *(u8 *)skb[0]\nexit"),
     "LD_ABS is not allowed in subprogs without BTF", 2, EINVAL),
    ("tail-call-in-subprog", asm("call local +1\nexit\ncall 12\nexit"),
     "tail_call is not allowed in subprogs without BTF", 2, EINVAL),
    ("abnormal-before-opcodes", asm("call local +1\nexit\ncall 12\nexit") + slot(0xFF) + EXIT,
     "tail_call is not allowed in subprogs without BTF", 2, EINVAL),
    ("too-large", MOV0 * cfg.MAX_INSNS + EXIT,
     "program of 1000001 insns is too large (limit 1000000)", None, E2BIG),
]  # fmt: skip


@pytest.mark.parametrize(("prog", "reason", "pc", "err"),
                         [pytest.param(*row[1:], id=row[0]) for row in REFUSED])  # fmt: skip
def test_refused_as_the_kernel_words_it(prog: bytes, reason: str, pc: int | None, err: int):
    with pytest.raises(VerifierError) as info:
        cfg.analyze(prog)
    assert (info.value.reason, info.value.pc, info.value.errno) == (reason, pc, err)
    if err != E2BIG or pc is not None:
        assert hint_for(reason), "every structural refusal the kernel words has a hint"


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _kernel_verdict(prog: bytes, prog_type: int = SOCKET_FILTER) -> list | None:
    """The live kernel's answer (a probe): None for a load, else [ERRNO, first log line]."""
    try:
        linux.prog_load(prog, prog_type=prog_type, log_level=1).close()
    except linux.KernelError as err:
        lines = err.log.splitlines()
        return [_errno_name(err.errno), lines[0] if lines else ""]
    return None


def _our_verdict(prog: bytes) -> list | None:
    """pybpf's structural answer in the kernel's terms: a size refusal (no pc) comes
    before the verifier, so the kernel logs nothing for it."""
    try:
        cfg.analyze(prog)
    except VerifierError as err:
        logged = err.errno != E2BIG or err.pc is not None
        return [_errno_name(err.errno), err.reason if logged else ""]
    return None


@pytest.mark.parametrize("name, prog", [pytest.param(r[0], r[1], id=r[0]) for r in REFUSED])
def test_kernel_refuses_the_same_way(kernel_facts, name: str, prog: bytes):
    kernel_facts.check(f"refused/{name}", _our_verdict(prog), lambda: _kernel_verdict(prog))


def test_empty_program_is_too_big_as_bpf_prog_load_says():
    # bpf_prog_load answers E2BIG for insn_cnt == 0 as for too many
    with pytest.raises(VerifierError) as info:
        cfg.analyze(b"")
    assert info.value.errno == E2BIG and info.value.pc is None


def test_partial_slot_is_refused_not_crashed():
    with pytest.raises(VerifierError) as info:
        cfg.analyze(b"\x95" + bytes(6))
    assert info.value.errno == EINVAL


def test_too_many_subprograms():
    # 257 subprograms: main calls 256 others, each just "exit"
    n = cfg.MAX_SUBPROGS
    main = slot(0x85, src=1, imm=n) * n + EXIT  # the call at pc i goes to n + 1 + i
    prog = main + EXIT * n
    with pytest.raises(VerifierError) as info:
        cfg.analyze(prog)
    assert (info.value.reason, info.value.errno, info.value.pc) == (
        "too many subprograms", E2BIG, n - 1)


def test_kernel_refuses_too_many_subprograms(kernel_facts):
    n = cfg.MAX_SUBPROGS
    prog = slot(0x85, src=1, imm=n) * n + EXIT + EXIT * n
    kernel_facts.check("refused/too-many-subprograms", _our_verdict(prog),
                       lambda: _kernel_verdict(prog))  # fmt: skip


UNPRIVILEGED = [
    ("call", asm("call local +1\nexit\nr0 = 0\nexit"),
     "loading/calling other bpf or kernel functions are allowed for CAP_BPF and CAP_SYS_ADMIN",
     0, EPERM),
    ("loop", asm("r0 = 0\nr0 += 1\nif r0 < 5 goto -2\nexit"),
     "back-edge from insn 2 to 1", 2, EINVAL),
    ("size", MOV0 * cfg.MAX_INSNS_UNPRIV + EXIT,
     "program of 4097 insns is too large (limit 4096)", None, E2BIG),
]  # fmt: skip


@pytest.mark.parametrize(("prog", "reason", "pc", "err"),
                         [pytest.param(*row[1:], id=row[0]) for row in UNPRIVILEGED])  # fmt: skip
def test_unprivileged_limits(prog: bytes, reason: str, pc: int | None, err: int):
    with pytest.raises(VerifierError) as info:
        cfg.analyze(prog, privileged=False)
    assert (info.value.reason, info.value.pc, info.value.errno) == (reason, pc, err)
    if err != E2BIG:
        cfg.analyze(prog)  # what a privileged loader may do


# --- what passes ----------------------------------------------------------------

LOOP = """
r0 = 0
r0 += 1
if r0 < 5 goto -2
exit
"""

def test_loops_pass_for_a_privileged_loader():
    structure = cfg.analyze(assemble(LOOP, "llvm"))
    assert structure.successors[2] == (3, 1)
    assert [(s.start, s.end) for s in structure.subprogs] == [(0, 4)]


def test_subprograms_from_calls_and_function_addresses():
    insns = [
        Instruction.lddw(1, 0),
        Instruction(0x85, 0, 1, 0, 3),  # call local -> 6
        Instruction(0x18, 2, 4, 0, 4),  # r2 = &subprog at 8 (BPF_PSEUDO_FUNC)
        Instruction(0x95),
        Instruction(0xB7),
        Instruction(0x95),
        Instruction(0xB7),
        Instruction(0x95),
    ]
    structure = cfg.analyze(insns)
    assert structure.pcs[:4] == (0, 2, 3, 5)
    assert structure.index_of[5] == 3
    assert structure.length == 10
    assert [(s.start, s.end) for s in structure.subprogs] == [(0, 6), (6, 8), (8, 10)]
    assert structure.successors[2] == (3, 6)
    assert structure.successors[3] == (5, 8)
    assert structure.successors[5] == ()
    assert structure.subprog_at(7) == 1
    assert structure.insns == tuple(insns)


def test_subprogram_facts():
    text = "call local +2\nr0 = *(u8 *)skb[0]\nexit\ncall 12\nr0 = 0\nexit"
    structure = cfg.analyze(assemble(text, "llvm"), btf=True)
    main, sub = structure.subprogs
    assert (main.has_ld_abs, main.has_tail_call) == (True, False)
    assert (sub.has_ld_abs, sub.has_tail_call) == (False, True)


def test_kernel_accepts_what_passes_the_structure(kernel_facts):
    prog = asm(LOOP)
    kernel_facts.check("accepted/loop", _our_verdict(prog), lambda: _kernel_verdict(prog))


# --- check_max_stack_depth ------------------------------------------------------

def _stack_prog(main_depth: int, sub_depth: int, sub_size: str = "u64") -> str:
    return (f"*(u64 *)(r10 - {main_depth}) = r1\ncall local +2\nr0 = 0\nexit\n"
            f"*({sub_size} *)(r10 - {sub_depth}) = 0\nr0 = 0\nexit")  # fmt: skip


def _deep_chain(callees: int) -> str:
    """A call chain ``callees`` deep, called only from dead code (do_check never sees it)."""
    lines = ["r0 = 0", "if r0 == 0 goto +1", "call local +1", "exit"]
    lines += ["call local +1", "exit"] * (callees - 1) + ["r0 = 0", "exit"]
    return "\n".join(lines)


_STACK_REFUSALS = re.compile(r"combined stack size|call stack of \d+ frames|tail_calls are not")


def _kernel_stack_verdict(text: str, prog_type: int) -> list | None:
    """The live kernel's answer (a probe): None for a load, else [ERRNO, the stack line]."""
    try:
        with linux.prog_load(asm(text), prog_type=prog_type, log_level=1):
            return None
    except linux.KernelError as err:
        line = next((ln for ln in err.log.splitlines() if _STACK_REFUSALS.search(ln)), "")
        return [_errno_name(err.errno), line]


def _stack_verdict(text: str, depths, **kw) -> tuple[int, str]:
    try:
        cfg.check_stack_depth(cfg.analyze(assemble(text, "llvm")), depths, **kw)
    except VerifierError as err:
        return err.errno, err.reason
    return 0, ""


KPROBE = 2

# (id, program, the depths do_check finds, prog type, errno, message)
STACKS = [
    ("fits", _stack_prog(256, 256), [256, 256], SOCKET_FILTER, 0, ""),
    ("combined", _stack_prog(256, 264), [256, 264], SOCKET_FILTER, EACCES,
     "combined stack size of 2 calls is 528. Too large"),
    ("sums-to-512", _stack_prog(496, 16), [496, 16], SOCKET_FILTER, 0, ""),
    ("rounded-to-16", _stack_prog(488, 17, "u8"), [488, 17], SOCKET_FILTER, EACCES,
     "combined stack size of 2 calls is 528. Too large"),
    ("private-stack", _stack_prog(256, 264), [256, 264], KPROBE, 0, ""),
    ("three-frames", "*(u64 *)(r10 - 200) = 0\ncall local +2\nr0 = 0\nexit\n"
     "*(u64 *)(r10 - 200) = 0\ncall local +2\nr0 = 0\nexit\n"
     "*(u64 *)(r10 - 200) = 0\nr0 = 0\nexit", [200, 200, 200], SOCKET_FILTER, EACCES,
     "combined stack size of 3 calls is 624. Too large"),
    ("siblings-do-not-add-up", "*(u64 *)(r10 - 200) = 0\ncall local +3\ncall local +5\n"
     "r0 = 0\nexit\n*(u64 *)(r10 - 296) = 0\nr0 = 0\nexit\n*(u64 *)(r10 - 296) = 0\n"
     "r0 = 0\nexit", [200, 296, 296], SOCKET_FILTER, 0, ""),
    ("seven-deep", _deep_chain(7), [0] * 8, SOCKET_FILTER, 0, ""),
    ("eight-deep", _deep_chain(8), [0] * 9, SOCKET_FILTER, E2BIG,
     "the call stack of 8 frames is too deep !"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "depths", "prog_type", "err", "reason"),
                         [pytest.param(*r[1:], id=r[0]) for r in STACKS])  # fmt: skip
def test_stack_depth(text: str, depths, prog_type: int, err: int, reason: str):
    private = cfg.private_stack(prog_type)
    assert _stack_verdict(text, depths, private=private) == (err, reason)


@pytest.mark.parametrize(("name", "text", "depths", "prog_type"),
                         [pytest.param(*r[:4], id=r[0]) for r in STACKS])  # fmt: skip
def test_kernel_stack_depth(kernel_facts, name: str, text: str, depths, prog_type: int):
    err, reason = _stack_verdict(text, depths, private=cfg.private_stack(prog_type))
    ours = [_errno_name(err), reason] if err else None
    kernel_facts.check(f"stack_depth/{name}", ours, lambda: _kernel_stack_verdict(text, prog_type))


def test_frames_round_as_jit_and_interpreter_do():
    assert [cfg.round_stack_depth(d) for d in (0, 1, 16, 17, 504)] == [0, 16, 16, 32, 512]
    assert [cfg.round_stack_depth(d, jit=False) for d in (0, 1, 32, 33)] == [32, 32, 32, 64]
    # the interpreter's 32-byte minimum per frame adds up where the JIT's does not
    assert _stack_verdict(_stack_prog(8, 8), [496, 8]) == (0, "")
    assert _stack_verdict(_stack_prog(8, 8), [496, 8], jit=False) == (
        EACCES, "combined stack size of 2 calls is 544. Too large")


def test_only_the_given_call_sites_are_followed():
    text = _deep_chain(8)
    assert _stack_verdict(text, [0] * 9, calls=set())[0] == 0


def test_tail_call_below_256_bytes_of_frames():
    # The kernel refuses a tail call in a subprogram without BTF func info
    # (tested above), which bpf(2) loads here do not carry: no oracle here.
    text = ("*(u64 *)(r10 - {d}) = r1\ncall local +2\nr0 = 0\nexit\n"
            "r2 = 0 ll\nr3 = 0\ncall 12\nr0 = 0\nexit")  # fmt: skip
    for depth, err in ((256, EACCES), (248, EACCES), (240, 0)):
        structure = cfg.analyze(assemble(text.format(d=depth), "llvm"), btf=True)
        reason = ("tail_calls are not allowed when call stack of previous frames is "
                  f"{cfg.round_stack_depth(depth)} bytes. Too large") if err else ""  # fmt: skip
        try:
            cfg.check_stack_depth(structure, [depth, 0])
            got = (0, "")
        except VerifierError as error:
            got = (error.errno, error.reason)
        assert got == (err, reason)


# --- the privileged rewrites ----------------------------------------------------

# (id, program, pcs the kernel's do_check visits, the xlated image it leaves)
REWRITES = [
    ("constant-branch-taken", "r0 = 0\nif r0 == 0 goto +1\nr0 = 1\nexit",
     {0, 1, 3}, "r0 = 0\nexit"),
    ("constant-branch-not-taken", "r0 = 0\nif r0 != 0 goto +2\nr0 = 1\nexit\nr0 = 2\nexit",
     {0, 1, 2, 3}, "r0 = 0\nr0 = 1\nexit"),
    ("dead-lddw", "r0 = 0\nif r0 == 0 goto +2\nr1 = 5 ll\nr0 = 1\nexit",
     {0, 1, 4, 5}, "r0 = 0\nr0 = 1\nexit"),
    ("call-offset", "r6 = 0\ncall local +4\nif r6 == 0 goto +1\nr0 = 1\nr0 = 0\nexit\n"
     "r0 = 2\nexit", {0, 1, 2, 4, 5, 6, 7},
     "r6 = 0\ncall local +2\nr0 = 0\nexit\nr0 = 2\nexit"),
    ("loop-after-dead-code", "r1 = 0\nif r1 != 0 goto +1\ngoto +1\nr1 = 9\nr1 += 1\n"
     "if r1 < 4 goto -2\nr0 = 0\nexit", {0, 1, 2, 4, 5, 6, 7},
     "r1 = 0\nr1 += 1\nif r1 < 4 goto -2\nr0 = 0\nexit"),
    ("nops", "may_goto +0\nr0 = 1\ngoto +0\nexit", {0, 1, 2, 3}, "r0 = 1\nexit"),
    ("gotol-zero-stays", "r0 = 0\nif r0 != 0 goto +1\ngotol +1\nr0 = 1\nexit", {0, 1, 2, 4},
     "r0 = 0\ngotol +0\nexit"),
    ("jump-over-removed-backwards", "r0 = 0\nif r0 != 0 goto +1\ngoto +3\nr0 = 1\nr0 = 2\n"
     "exit\nr0 = 3\ngoto -3", {0, 1, 2, 5, 6, 7}, "r0 = 0\ngoto +1\nexit\nr0 = 3\ngoto -3"),
    ("jmp32-hard-wired", "w0 = 0\nif w0 > 3 goto +2\nr0 = 7\nexit\nr0 = 8\nexit", {0, 1, 2, 3},
     "w0 = 0\nr0 = 7\nexit"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "seen", "expected"),
                         [pytest.param(*r[1:], id=r[0]) for r in REWRITES])  # fmt: skip
def test_rewrite(text: str, seen: set[int], expected: str):
    got = cfg.rewrite(assemble(text, "llvm"), seen)
    assert disassemble(got, "llvm") == disassemble(assemble(expected, "llvm"), "llvm")


def _kernel_xlated(prog: bytes, name: str) -> str:
    """The kernel's xlated image of ``prog`` as bpftool dumps it, local calls as pc-relative
    again, disassembled (a probe)."""
    with linux.prog_load(prog, prog_type=SOCKET_FILTER, name=name), \
            tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        raw = os.path.join(tmp, "xlated")
        dump = ["bpftool", "prog", "dump", "xlated", "name", name]
        subprocess.run([*dump, "file", raw], check=True, capture_output=True, timeout=30)
        text = subprocess.run(dump, check=True, capture_output=True, text=True,
                              timeout=30).stdout  # fmt: skip
        with open(raw, "rb") as f:
            insns = decode(f.read(), validate=False)
    # the JIT keeps a callee's index in a local call; bpftool prints the offset
    offsets = {int(pc): int(off) for pc, off in re.findall(r"^\s*(\d+): \(85\) call pc([+-]\d+)",
                                                           text, re.M)}  # fmt: skip
    pcs, pc = [], 0
    for insn in insns:
        pcs.append(pc)
        pc += insn.slots
    return disassemble([Instruction(0x85, 0, 1, 0, offsets[p]) if p in offsets else insn
                        for p, insn in zip(pcs, insns, strict=True)], "llvm")  # fmt: skip


def _xlated_facts(kernel_facts):
    """The oracle, answering from the recording alone where bpftool cannot dump."""
    return kernel_facts.offline_when(None if shutil.which("bpftool") else "no bpftool")


@pytest.mark.parametrize(("name", "text", "seen"),
                         [pytest.param(*r[:3], id=r[0]) for r in REWRITES])  # fmt: skip
def test_rewrite_as_the_kernel_does(kernel_facts, name: str, text: str, seen: set[int]):
    insns = assemble(text, "llvm")
    ours = disassemble(cfg.rewrite(insns, seen), "llvm")
    prog_name = f"cfg{os.getpid() % 100000}_{abs(hash(text)) % 10000}"
    _xlated_facts(kernel_facts).check(f"xlated/{name}", ours,
                                      lambda: _kernel_xlated(encode(insns), prog_name))


def test_xlate_maps_old_pcs_to_new():
    text = "r0 = 0\nif r0 == 0 goto +2\nr1 = 5 ll\nr0 = 1\ncall local +1\nexit\nr0 = 2\nexit"
    x = cfg.xlate(assemble(text, "llvm"), {0, 1, 4, 5, 6, 7, 8}, subprog_starts=[0, 7])
    assert x.pc_map == {0: 0, 4: 1, 5: 2, 6: 3, 7: 4, 8: 5}
    assert x.subprog_starts == (0, 4)
    assert disassemble(x.insns, "llvm").splitlines()[2] == "call local +1"


def test_wholly_dead_subprogram_leaves_the_starts():
    text = "r0 = 0\nif r0 == 0 goto +1\ncall local +1\nexit\nr0 = 1\nexit"
    x = cfg.xlate(assemble(text, "llvm"), {0, 1, 3}, subprog_starts=[0, 4])
    assert x.subprog_starts == (0,)
    assert disassemble(x.insns, "llvm") == "r0 = 0\nexit\n"


# --- the rewrites, step by step as the kernel makes them (the reference) ------------

def _literal_xlate(insns, seen, subprog_starts=(0,)):
    """The kernel's rewrites slot by slot: every removal moves the image and fixes every
    branch (bpf_remove_insns, bpf_adj_branches, adjust_subprog_starts_after_remove).
    Quadratic; the reference :func:`cfg.xlate` must agree with."""
    slots = slots_mod.to_slots(insns)
    seen_slots = xl.seen_slots(insns, seen)
    xl.hard_wire(slots, seen_slots)
    origin = list(range(len(slots)))
    starts = [*sorted(set(subprog_starts) | {0}), len(slots)]

    def remove(pos, cnt):
        del slots[pos:pos + cnt], seen_slots[pos:pos + cnt], origin[pos:pos + cnt]
        for i, s in enumerate(slots):
            field = slots_mod.branch_field(s)
            if field is None:
                continue
            off = getattr(s, field)
            if i < pos and i + off + 1 >= pos + cnt:
                off -= cnt
            elif i >= pos and i + off + 1 < pos:
                off += cnt
            slots[i] = s._replace(**{field: off})
        last = len(starts) - 1
        i = next((k for k in range(last) if starts[k] >= pos), last)
        j = next((k for k in range(i, last) if starts[k] >= pos + cnt), last)
        if starts[j] != pos + cnt:
            j -= 1
        if j > i:
            del starts[i:j]
        elif starts[i] == pos:
            i += 1
        for k in range(i, len(starts)):
            starts[k] -= cnt

    i = 0
    while i < len(slots):
        j = 0
        while i + j < len(slots) and not seen_slots[i + j]:
            j += 1
        if j:
            remove(i, j)
        i += 1
    nops = (slots_mod.Slot(0x05, 0, 0, 0, 0), slots_mod.Slot(0xE5, 0, 0, 0, 0))
    i = 0
    while i < len(slots):
        if slots[i] not in nops:
            i += 1
            continue
        may_goto = slots[i] == nops[1]
        remove(i, 1)
        i = i - 1 if may_goto and i > 0 else i
    data = b"".join(struct.pack("<BBhi", s.code, s.dst_reg | s.src_reg << 4, s.off, s.imm)
                    for s in slots)  # fmt: skip
    return (tuple(decode(data, validate=False)), {old: new for new, old in enumerate(origin)},
            tuple(starts[:-1]))  # fmt: skip


def _random_program(rng, n: int) -> tuple[list[Instruction], set[int], list[int]]:
    """Random in-range branches (nops among them), lddws, subprograms; a seen set whose
    subprogram entries are seen whenever anything of the subprogram is."""
    kinds = ["alu", "alu", "ja", "ja0", "cond", "may_goto", "may_goto0", "gotol", "lddw", "exit"]
    shape = [rng.choice(kinds) for _ in range(n)]
    pcs, pc = [], 0
    for kind in shape:
        pcs.append(pc)
        pc += 2 if kind == "lddw" else 1
    total = pc
    nsub = min(rng.randrange(0, 3), n - 1)
    sub_idx = sorted(rng.sample(range(1, n), nsub))
    starts = [0] + [pcs[k] for k in sub_idx]
    insns = []
    for k, kind in enumerate(shape):
        pc = pcs[k]
        rel = rng.choice(pcs) - pc - 1
        if kind == "alu":
            insns.append(Instruction(0xB7, rng.randrange(10), 0, 0, k))
        elif kind == "ja":
            insns.append(Instruction(0x05, 0, 0, rel, 0))
        elif kind == "ja0":
            insns.append(Instruction(0x05))
        elif kind == "cond":
            insns.append(Instruction(0x15, 1, 0, rel, 0))
        elif kind == "may_goto":
            insns.append(Instruction(0xE5, 0, 0, rel, 0))
        elif kind == "may_goto0":
            insns.append(Instruction(0xE5))
        elif kind == "gotol":
            insns.append(Instruction(0x06, 0, 0, 0, rel))
        elif kind == "lddw":
            insns.append(Instruction.lddw(1, k))
        else:
            insns.append(Instruction(0x95))
    if starts[1:] and rng.random() < 0.5:  # a call into a subprogram
        k = rng.randrange(n)
        if shape[k] != "lddw":
            insns[k] = Instruction(0x85, 0, 1, 0, rng.choice(starts[1:]) - pcs[k] - 1)
    seen = {p for p in pcs if rng.random() < 0.7}
    bounds = [*starts, total]
    for start, end in itertools.pairwise(bounds):
        if any(start <= p < end for p in seen):
            seen.add(start)
    return insns, seen, starts


@pytest.mark.parametrize("seed", range(300))
def test_xlate_agrees_with_the_kernels_step_by_step_removal(seed: int):
    rng = random.Random(seed)
    insns, seen, starts = _random_program(rng, rng.randrange(1, 40))
    fast = cfg.xlate(insns, seen, starts)
    assert (fast.insns, dict(fast.pc_map), fast.subprog_starts) == _literal_xlate(
        insns, seen, starts)


def _lines_run(fn, *args) -> int:
    """How many lines of pybpf.verifier.xlate ``fn(*args)`` executes (the work it does)."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        count += event == "line"
        return local

    def calls(frame, event, arg):
        return local if frame.f_code.co_filename == xl.__file__ else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


def test_xlate_is_linear():
    loop = [Instruction(0xB7, 1), Instruction(0x07, 1, 0, 0, 1), Instruction(0xA5, 1, 0, -2, 50),
            Instruction(0xB7), Instruction(0x05)]  # fmt: skip

    def work(n: int) -> int:
        insns = loop * n + [Instruction(0x95)]
        out = cfg.xlate(insns, set(range(len(insns))))
        assert len(out.insns) == 4 * n + 1  # every ja +0 removed
        return _lines_run(cfg.xlate, insns, set(range(len(insns))))

    # twice the program, twice the work (the step-by-step way does four times as much)
    small, large = work(1000), work(2000)
    assert large < 2.2 * small, (small, large)


def test_stack_refusals_name_no_pc():
    structure = cfg.analyze(assemble(_stack_prog(256, 264), "llvm"))
    with pytest.raises(VerifierError) as info:
        cfg.check_stack_depth(structure, [256, 264])
    assert info.value.pc is None  # the kernel's message names no instruction either


def test_line_info_follows_the_rewrite():
    # pcs: 0 r0 = 0 | 1 if | 2 r0 = 1 (dead) | 3 r0 = 2 (dead) | 4 r1 = 3 | 5 exit
    text = "r0 = 0\nif r0 == 0 goto +2\nr0 = 1\nr0 = 2\nr1 = 3\nexit"
    x = cfg.xlate(assemble(text, "llvm"), {0, 1, 4, 5})
    assert disassemble(x.insns, "llvm") == "r0 = 0\nr1 = 3\nexit\n"
    lines = {0: "a", 2: "dead-1", 3: "dead-2", 5: "end"}
    # the last record of removed code moves onto the next kept slot without one
    assert cfg.remap_line_info(lines, x.pc_map, 6) == {0: "a", 1: "dead-2", 2: "end"}
    assert cfg.remap_line_info({0: "a", 3: "d", 4: "own"}, x.pc_map, 6) == {0: "a", 1: "own"}
    # removed code at the end takes its records with it
    tail = cfg.xlate(assemble("r0 = 0\nif r0 == 0 goto +1\nexit\nexit", "llvm"), {0, 1, 3})
    assert cfg.remap_line_info({0: "a", 2: "b"}, tail.pc_map, 4) == {0: "a", 1: "b"}
    assert cfg.remap_line_info({0: "a", 3: "b"}, {0: 0, 1: 1, 2: 2}, 4) == {0: "a"}


# --- random programs: never a crash, and the kernel's structural verdict ------------

def _random_bytes_program(rng: random.Random) -> bytes:
    """Up to 12 slots, mostly plausible (jumps and calls near their range, ld_imm64 pairs,
    may_goto, gotol, tail calls, LD_ABS, LDX) with some random raw slots."""
    out = []
    for _ in range(rng.randrange(1, 12)):
        r, rel = rng.random(), rng.randrange(-3, 5)
        if r < 0.2:
            out.append(slot(0xB7, rng.randrange(10), 0, 0, rng.randrange(5)))
        elif r < 0.35:
            out.append(EXIT)
        elif r < 0.45:
            out.append(slot(0x05, off=rel))
        elif r < 0.55:
            out.append(slot(0x15, off=rel))
        elif r < 0.62:
            out.append(slot(0x85, src=1, imm=rel))
        elif r < 0.68:
            second = slot(0) if rng.random() < 0.9 else slot(rng.randrange(256))
            out += [slot(0x18, 1, rng.choice([0, 0, 4]), 0, rel), second]
        elif r < 0.72:
            out.append(slot(0xE5, off=rel))
        elif r < 0.75:
            out.append(slot(0x06, imm=rel))
        elif r < 0.78:
            out.append(slot(0x85, imm=12))
        elif r < 0.81:
            out.append(slot(0x30))
        elif r < 0.85:
            out.append(bytes(rng.randrange(256) for _ in range(8)))
        elif r < 0.9:
            out.append(slot(0x61, 0, 1, 0, rng.choice([0, 0, 1])))
        else:
            out.append(slot(0x05))
    return b"".join(out)


def _outside_structure(prog: bytes) -> bool:
    """Programs whose pre-do_check refusal needs kernel objects: map fds, BTF ids, kfuncs."""
    for at in range(0, len(prog), 8):
        code, src = prog[at], prog[at + 1] >> 4
        if (code == 0x18 and src not in (0, 4)) or (code == 0x85 and src == 2):
            return True
    return False


def _kernel_structural(prog: bytes) -> str | None:
    """The live kernel's refusal before do_check (a probe), None when do_check ran."""
    try:
        linux.prog_load(prog, prog_type=SOCKET_FILTER, log_level=1).close()
    except linux.KernelError as err:
        # refused before do_check: the log is the message and "processed 0 insns"
        if "processed 0 insns" in err.log:
            return err.log.splitlines()[0]
    return None


@pytest.mark.parametrize("seed", range(0, 2000, 10))
def test_random_programs_never_crash_and_match_the_kernel(kernel_facts, seed: int):
    rng = random.Random(seed)
    progs, ours = [], []
    for _ in range(10):
        prog = _random_bytes_program(rng)
        try:
            cfg.analyze(prog)
            mine = None
        except VerifierError as err:
            mine = err.reason
        # pre-do_check refusals that need kernel objects are not the structure's
        if not _outside_structure(prog):
            progs.append(prog)
            ours.append(mine)
    kernel_facts.check(f"random/{seed}", ours, lambda: [_kernel_structural(p) for p in progs])


# --- random rewrites against the kernel's xlated image ---------------------------------

_U64 = (1 << 64) - 1
_JUMPS = {
    0x15: lambda a, b: a == b, 0x55: lambda a, b: a != b, 0x25: lambda a, b: a > b,
    0x35: lambda a, b: a >= b, 0xA5: lambda a, b: a < b, 0xB5: lambda a, b: a <= b,
    0x45: lambda a, b: bool(a & b),
    0x65: lambda a, b: (a ^ 1 << 63) > (b ^ 1 << 63),  # signed >
}  # fmt: skip


def _constant_program(rng: random.Random) -> list[Instruction]:
    """Registers hold constants only and every jump goes forward, so the kernel's verifier
    walks exactly the one concrete path: its ``seen`` set is that path."""
    insns = [Instruction(0xB7)] + [Instruction(0xB7, r, 0, 0, rng.randrange(4)) for r in (1, 2, 3)]
    kinds = rng.choices(["mov", "cond", "ja", "ja0", "gotol", "lddw", "exit"],
                        [30, 30, 10, 5, 5, 7, 13], k=rng.randrange(3, 16)) + ["exit"]  # fmt: skip
    pcs, pc = [], len(insns)
    for kind in kinds:
        pcs.append(pc)
        pc += 2 if kind == "lddw" else 1
    for i, kind in enumerate(kinds):
        rel = rng.choice(pcs[i + 1 :] or pcs[-1:]) - pcs[i] - 1
        insns.append(_constant_insn(rng, kind, rel))
    return insns


def _constant_insn(rng: random.Random, kind: str, rel: int) -> Instruction:
    if kind == "mov":
        return Instruction(0xB7, rng.randrange(4), 0, 0, rng.randrange(-1, 4))
    if kind == "cond":
        return Instruction(rng.choice(list(_JUMPS)), rng.randrange(4), 0, rel, rng.randrange(-1, 4))
    if kind == "lddw":
        return Instruction.lddw(rng.randrange(1, 4), rng.randrange(1 << 40))
    return {"ja": Instruction(0x05, 0, 0, rel, 0), "ja0": Instruction(0x05),
            "gotol": Instruction(0x06, 0, 0, 0, rel), "exit": Instruction(0x95)}[kind]  # fmt: skip


def _concrete_path(insns: list[Instruction]) -> set[int]:
    regs, at, pc = [0] * 11, {}, 0
    for insn in insns:
        at[pc] = insn
        pc += insn.slots
    pc, seen = 0, set()
    while True:
        insn = at[pc]
        seen.add(pc)
        if insn.code == 0x95:
            return seen
        if insn.code == 0xB7:
            regs[insn.dst_reg] = insn.imm & _U64
        elif insn.code == 0x18:
            regs[insn.dst_reg] = insn.imm64
        elif insn.code in (0x05, 0x06):
            pc += insn.off if insn.code == 0x05 else insn.imm
        elif _JUMPS[insn.code](regs[insn.dst_reg], insn.imm & _U64):
            pc += insn.off
        pc += insn.slots


@pytest.mark.parametrize("seed", range(25))
def test_random_rewrites_match_the_kernel(kernel_facts, seed: int):
    rng = random.Random(seed)
    while True:  # a program the kernel takes: every instruction reachable
        insns = _constant_program(rng)
        try:
            cfg.analyze(insns)
            break
        except VerifierError:
            continue
    seen = _concrete_path(insns)
    ours = disassemble(cfg.rewrite(insns, seen), "llvm")
    _xlated_facts(kernel_facts).check(
        f"xlated_random/{seed}", ours,
        lambda: _kernel_xlated(encode(insns), f"cfgr{os.getpid() % 10000}_{seed}"))
