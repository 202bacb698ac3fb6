"""Global functions, verified on their own as Linux 6.18 does (kernel/bpf/verifier.c:
check_func_call, btf_check_subprog_call, do_check_subprogs, do_check_common; kernel/bpf/btf.c:
btf_prepare_func_args).

A call to a function BTF gives global linkage is checked against the function's
BTF argument types and not walked; each called global function is verified after
the main program, once, from a state built from those types.  These programs carry
BTF func_info, so they cannot go to the running kernel through pybpf.kernel.linux
(it has no BPF_BTF_LOAD): each expectation cites the kernel code that gives it, and
the kernel's own selftests (verifier_global_subprogs, compiled in tests/selftests)
exercise the compiled side through the loader.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pybpf.asm.llvm import assemble
from pybpf.btf.types import FUNC_GLOBAL
from pybpf.errors import VerifierError
from pybpf.isa import Instruction
from pybpf.loader import load_object
from pybpf.loader.spec import ObjectSpec
from pybpf.runtime.kernel import Kernel
from pybpf.verifier import Target, verify
from pybpf.verifier.funcs import FuncArg, FuncDesc, arg_tags, describe

SCHED_CLS, XDP, KPROBE, RAW_TP, TRACEPOINT = 3, 6, 2, 17, 5
OBJECTS = Path(__file__).parent / "selftests" / "objects"
GLOBAL_SUBPROGS = OBJECTS / "verifier_global_subprogs.bpf.o"

MEM4_OR_NULL = FuncArg("mem", size=4, nullable=True)
MEM4 = FuncArg("mem", size=4)
SCALAR = FuncArg("scalar")
CTX = FuncArg("ctx")


def _helpers(prog_type: int):
    from pybpf.runtime.helpers import prototypes
    from pybpf.runtime.progtypes import PROG_TYPES

    return prototypes(PROG_TYPES[prog_type].helpers)


def _program(*functions: str) -> tuple[list[Instruction], tuple[int, ...]]:
    """Functions in llvm syntax, main first; ``call @N`` calls function N (a local call)."""
    bodies, sites = [], []
    for text in functions:
        lines = text.strip().splitlines()
        calls = {}
        for i, line in enumerate(lines):
            if line.strip().startswith("call @"):
                calls[i] = int(line.strip()[6:])
                lines[i] = "call 1"
        body = assemble("\n".join(lines))
        sites.append(calls)
        bodies.append(body)
    starts, pc = [], 0
    for body in bodies:
        starts.append(pc)
        pc += sum(insn.slots for insn in body)
    insns: list[Instruction] = []
    for body, calls, start in zip(bodies, sites, starts, strict=True):
        line_pcs, pc = [], start
        for insn in body:
            line_pcs.append(pc)
            pc += insn.slots
        for i, insn in enumerate(body):  # one instruction per line in these programs
            if i in calls:
                insn = Instruction(0x85, 0, 1, 0, starts[calls[i]] - line_pcs[i] - 1)
            insns.append(insn)
    return insns, tuple(starts)


def _verify(functions, funcs, *, prog_type=XDP, log_level=2):
    insns, starts = _program(*functions)
    target = Target(prog_type, helpers=_helpers(prog_type), func_info=starts, funcs=funcs)
    return verify(insns, target, log_level=log_level)


def _refused(verdict, pc: int, message: str, err: int) -> None:
    assert not verdict.ok, verdict.log
    assert verdict.error.reason.splitlines()[0] == message, verdict.log
    assert (verdict.error.pc, verdict.error.errno) == (pc, err), verdict.log


# r1 = &fp[-8] (initialised), call f(r1); f(int *p) returns *p
DEREF_CALLER = """
r1 = 42
*(u64 *)(r10 - 8) = r1
r1 = r10
r1 += -8
call @1
exit
"""
DEREF = "r0 = *(u32 *)(r1 + 0)\nexit"
DEREF_CHECKED = "r0 = 0\nif r1 == 0 goto +1\nr0 = *(u32 *)(r1 + 0)\nexit"


def test_nullable_memory_argument_must_be_checked():
    # btf_prepare_func_args: a global function's `int *` is ARG_PTR_TO_MEM | PTR_MAYBE_NULL;
    # do_check_common gives R1 that type, so a dereference without a NULL check is refused
    v = _verify([DEREF_CALLER, DEREF], [None, FuncDesc("f", True, (MEM4_OR_NULL,))])
    _refused(v, 6, "R1 invalid mem access 'mem_or_null'", errno.EACCES)
    assert "Func#1 ('f') is global and assumed valid." in v.log
    assert "Validating f() func#1..." in v.log
    ok = _verify([DEREF_CALLER, DEREF_CHECKED], [None, FuncDesc("f", True, (MEM4_OR_NULL,))])
    assert ok.ok, ok.log
    assert "Func#1 ('f') is safe for any args that match its prototype" in ok.log


def test_nonnull_memory_argument_and_static_functions():
    # __arg_nonnull clears PTR_MAYBE_NULL; a static function (or no BTF description) is
    # walked inline with the caller's stack pointer, which is never NULL
    assert _verify([DEREF_CALLER, DEREF], [None, FuncDesc("f", True, (MEM4,))]).ok
    assert _verify([DEREF_CALLER, DEREF], [None, FuncDesc("f", False, (MEM4,))]).ok
    assert _verify([DEREF_CALLER, DEREF], None).ok


def test_global_function_is_verified_once_after_main():
    # main calls f twice; f is verified once, on its own, after main (do_check_subprogs)
    main = DEREF_CALLER.replace("call @1\nexit", "call @1\nr1 = r10\nr1 += -8\ncall @1\nexit")
    v = _verify([main, DEREF_CHECKED], [None, FuncDesc("f", True, (MEM4_OR_NULL,))])
    assert v.ok, v.log
    assert v.log.count("Validating f() func#1...") == 1
    assert v.log.index("is global and assumed valid") < v.log.index("Validating f()")


def test_uncalled_global_function_is_not_verified():
    # since 6.8 only global functions that verified code calls are verified: a call on a
    # branch the verifier proves dead leaves f unverified (and its body out of the image)
    main = "r0 = 0\nr1 = 0\nif r1 != 0 goto +1\nexit\ncall @1\nexit"
    v = _verify([main, "r0 = *(u32 *)(r1 + 0)\nexit"], [None, FuncDesc("f", True, (SCALAR,))])
    assert v.ok, v.log
    assert "Validating" not in v.log


def test_caller_registers_are_clobbered_and_r0_unknown():
    # check_func_call: clear_caller_saved_regs, then R0 an unknown 64-bit scalar
    main = "r1 = 1\ncall @1\nr0 = r1\nexit"
    v = _verify([main, "r0 = r1\nexit"], [None, FuncDesc("f", True, (SCALAR,))])
    _refused(v, 2, "R1 !read_ok", errno.EACCES)
    main = "r1 = 1\ncall @1\nif r0 > 1 goto +1\nexit\nr0 = 0\nexit"
    v = _verify([main, "r0 = 5\nexit"], [None, FuncDesc("f", True, (SCALAR,))])
    assert v.ok, v.log  # the branch is not known: the callee's r0 = 5 is not seen


@pytest.mark.parametrize(("name", "main", "desc", "message", "err"), [
    # btf_check_func_arg_match, in the kernel's words, then check_func_call's line
    ("scalar_gets_ctx", "call @1\nexit", FuncDesc("f", True, (SCALAR,)),
     "R1 is not a scalar", errno.EINVAL),
    ("ctx_gets_scalar", "r1 = 0\ncall @1\nexit", FuncDesc("f", True, (CTX,)),
     "arg#0 expects pointer to ctx", errno.EINVAL),
    ("ctx_modified", "r1 += 8\ncall @1\nexit", FuncDesc("f", True, (CTX,)),
     "dereference of modified ctx ptr R1 off=8 disallowed", errno.EACCES),
    ("mem_too_small", "r1 = r10\nr1 += -2\ncall @1\nexit", FuncDesc("f", True, (MEM4,)),
     "invalid read from stack R1 off=-2 size=4", errno.EINVAL),
    ("mem_gets_ctx", "call @1\nexit", FuncDesc("f", True, (MEM4,)),
     "R1 type=ctx expected=fp", errno.EINVAL),
    ("prepare_refused", "call @1\nexit",
     FuncDesc("f", True, error="Global function f() doesn't return scalar. Only those are "
              "supported."),
     "Global function f() doesn't return scalar. Only those are supported.", errno.EINVAL),
    ("unsupported_arg", "call @1\nexit",
     FuncDesc("f", True, (FuncArg("unsupported", reason="Arg#0 type STRUCT in f() is not "
                                  "supported yet."),)),
     "Arg#0 type STRUCT in f() is not supported yet.", errno.EINVAL),
])  # fmt: skip
def test_call_site_argument_checks(name, main, desc, message, err):
    v = _verify([main, "r0 = 0\nexit"], [None, desc])
    assert not v.ok, v.log
    lines = v.error.reason.splitlines()
    assert lines == [message, "Caller passes invalid args into func#1 ('f')"], v.log
    assert v.error.errno == err, v.log


def test_null_passes_a_nullable_or_nonnull_memory_argument():
    # check_mem_reg: a register known to be NULL passes; only a maybe-NULL pointer is
    # refused for a non-NULL argument
    for arg in (MEM4_OR_NULL, MEM4):
        v = _verify(["r1 = 0\ncall @1\nexit", "r0 = 0\nexit"], [None, FuncDesc("f", True, (arg,))])
        assert v.ok, v.log


def test_context_as_memory_by_program_type():
    # check_helper_mem_access: a context whose program type has no convert_ctx_access is
    # checked byte-wise by its access rules (tracepoint: the first 8 bytes are not readable)
    v = _verify(["call @1\nexit", "r0 = 0\nexit"], [None, FuncDesc("f", True, (MEM4,))],
                prog_type=TRACEPOINT)  # fmt: skip
    assert v.error.reason.splitlines()[0] == "invalid bpf_context access off=3 size=1", v.log


def test_global_function_must_return_a_scalar():
    # check_return_code for a subprogram verified as frame 0
    v = _verify(["call @1\nexit", "r0 = r1\nexit"], [None, FuncDesc("f", True, (CTX,))])
    _refused(v, 3, "At subprogram exit the register R0 is not a scalar value (ctx)",
             errno.EINVAL)  # fmt: skip


def test_global_function_that_changes_packet_data_invalidates_packet_pointers():
    # check_func_call: clear_all_pkt_pointers when the callee (or what it calls) may
    # change packet data (bpf_skb_pull_data, #39)
    main = """
r6 = r1
r7 = *(u32 *)(r6 + 76)
r8 = *(u32 *)(r6 + 80)
r0 = r7
r0 += 8
if r0 > r8 goto +4
r1 = r6
call @1
r0 = *(u8 *)(r7 + 0)
exit
r0 = 0
exit
"""
    callee = "r2 = 0\ncall 39\nr0 = 0\nexit"
    v = _verify([main, callee], [None, FuncDesc("f", True, (CTX,))], prog_type=SCHED_CLS)
    _refused(v, 8, "R7 invalid mem access 'scalar'", errno.EACCES)
    quiet = "r0 = 0\nexit"
    assert _verify([main, quiet], [None, FuncDesc("f", True, (CTX,))],
                   prog_type=SCHED_CLS).ok  # fmt: skip


def test_chained_global_functions_are_verified_transitively():
    # f calls g: g is verified in the same do_check_subprogs pass, after f
    f = "call @2\nexit"
    g = "r0 = *(u32 *)(r1 + 0)\nexit"
    desc = [None, FuncDesc("f", True, (SCALAR,)), FuncDesc("g", True, (SCALAR,))]
    v = _verify(["r1 = 0\ncall @1\nexit", f, g], desc)
    assert "Validating f() func#1..." in v.log and "Validating g() func#2..." in v.log
    assert v.error.reason == "R1 invalid mem access 'scalar'", v.log


def test_level_one_log_keeps_only_the_failing_function():
    # do_check_common's pop_log: at level 1 a function verified safely leaves no log
    v = _verify([DEREF_CALLER, DEREF], [None, FuncDesc("f", True, (MEM4_OR_NULL,))],
                log_level=1)  # fmt: skip
    assert v.log.startswith("Validating f() func#1..."), v.log
    ok = _verify([DEREF_CALLER, DEREF_CHECKED], [None, FuncDesc("f", True, (MEM4_OR_NULL,))],
                 log_level=1)  # fmt: skip
    assert ok.log.splitlines()[0] == \
        "Func#1 ('f') is safe for any args that match its prototype", ok.log  # fmt: skip


# --- from BTF ------------------------------------------------------------------------------------


def _described(name: str, prog_type: int) -> FuncDesc:
    spec = ObjectSpec.from_file(GLOBAL_SUBPROGS)
    btf = spec.btf
    func_id = btf.find(name, "func")
    return describe(btf, func_id, prog_type, 0, arg_tags(btf))


def test_describe_reads_linkage_types_and_tags():
    assert _described("subprog_nullable_ptr_bad", RAW_TP) == FuncDesc(
        "subprog_nullable_ptr_bad", True, (MEM4_OR_NULL,))
    assert _described("subprog_nonnull_ptr_good", RAW_TP).args == (MEM4, MEM4)  # __arg_nonnull
    assert _described("subprog_ctx_tag", RAW_TP).args == (CTX,)  # __arg_ctx on void *
    assert _described("raw_tp_u64_array", RAW_TP).args == (CTX,)  # u64 * is raw_tp's ctx
    assert _described("subprog_dynptr", XDP).args == (FuncArg("dynptr"),)
    # a tag naming another program type's context: btf_validate_prog_ctx_type
    bad = _described("raw_tp_canonical", KPROBE)
    assert bad.refusal() == ("arg#0 should be `struct pt_regs *`", errno.EINVAL)
    assert _described("kprobe_subprog_typedef", KPROBE).args == (CTX,)
    desc = _described("global_good", RAW_TP)
    assert desc.is_global and desc.args == ()


def test_loader_describes_every_function():
    # the selftest the kernel refuses ("R1 invalid mem access 'mem_or_null'")
    with pytest.raises(VerifierError) as info:
        load_object(GLOBAL_SUBPROGS, Kernel(verify=True), autoload=["arg_tag_nullable_ptr_fail"],
                    log_level=2)  # fmt: skip
    assert info.value.reason == "R1 invalid mem access 'mem_or_null'"
    spec = ObjectSpec.from_file(GLOBAL_SUBPROGS)
    prog = next(p for p in spec.programs if p.name == "arg_tag_nullable_ptr_fail")
    assert spec.btf.type(prog.func_info[1][1]).linkage == FUNC_GLOBAL
