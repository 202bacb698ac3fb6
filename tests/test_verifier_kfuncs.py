"""kfunc calls and open-coded iterators: check_kfunc_call's verdicts, row by row.

Each row is a program in llvm assembly whose ``call kfunc N`` names one of the
prototypes in :data:`PROTOS` (as the loader reads them from an object's BTF),
the program type, and the verdict: None for an accept, else the first line
of the refusal and its errno, worded as Linux 6.12's verifier words it (or
pybpf's own sentence for a kfunc it does not implement).  The runtime rows
load the program and run it: the iterators and casts execute.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pybpf.asm.llvm import assemble
from pybpf.loader import load_object
from pybpf.runtime.helpers import HELPERS
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.testrun import test_run
from pybpf.verifier import Target, verify
from pybpf.verifier.helper_protos import KERNEL_PROTOS
from pybpf.verifier.kfunc_proto import MEM, PTR, SCALAR, STRUCT, VOID, KArg, KfuncProto

SOCKET, KPROBE, SCHED_CLS, TRACEPOINT = 1, 2, 3, 5
CSUM_DIFF, CURRENT_TASK_BTF, TASK_PT_REGS = 28, 158, 175

_IT = KArg("it", PTR, STRUCT, "bpf_iter_num", 8, "struct")
_INT = KArg("", SCALAR, btf_kind="int")
_TASK = KArg("p", PTR, STRUCT, "task_struct", 64, "struct")
_VOIDP = KArg("obj", PTR, VOID, btf_kind="void")

#: imm -> prototype, as Target.kfuncs holds them
PROTOS = {
    1: KfuncProto("bpf_iter_num_new", (_IT, _INT, _INT), SCALAR),
    2: KfuncProto("bpf_iter_num_next", (_IT,), MEM, ret_size=4),
    3: KfuncProto("bpf_iter_num_destroy", (_IT,), VOID),
    4: KfuncProto("bpf_task_from_pid", (_INT,), STRUCT, "task_struct"),
    5: KfuncProto("bpf_task_release", (_TASK,), VOID),
    6: KfuncProto("bpf_made_up_kfunc", (), VOID),
    7: KfuncProto("bpf_cast_to_kern_ctx", (_VOIDP,), VOID + "*"),
    8: KfuncProto("bpf_task_acquire", (_TASK,), STRUCT, "task_struct"),
    9: KfuncProto("bpf_cpumask_first", (KArg("cpumask", PTR, SCALAR, "", 8, "int"),), SCALAR),
}

IT = "r1 = r10\nr1 += -8\n"
NEW = IT + "r2 = 0\nr3 = 5\ncall kfunc 1\n"
DESTROY = IT + "call kfunc 3\n"
LOOP = (NEW + "r6 = 0\nloop:\n" + IT + "call kfunc 2\nif r0 == 0 goto done\n"
        "r1 = *(u32 *)(r0 + 0)\nr6 += r1\ngoto loop\ndone:\n" + DESTROY + "r0 = r6\nexit")

# name, program type, asm, expected: None (accept) or (first message line, errno)
CASES = [
    ("unknown_kfunc", SOCKET, "call kfunc 6\nr0 = 0\nexit",
     ("pybpf does not implement kfunc bpf_made_up_kfunc yet", errno.EINVAL)),
    ("imm_names_no_kfunc", SOCKET, "call kfunc 99\nr0 = 0\nexit",
     ("kernel btf_id 99 is not a function", errno.EINVAL)),
    ("not_allowed_for_prog_type", SOCKET, "r1 = 1\ncall kfunc 4\nr0 = 0\nexit",
     ("calling kernel function bpf_task_from_pid is not allowed", errno.EACCES)),
    ("acquire_null_checked_released", SCHED_CLS,
     "r1 = 1\ncall kfunc 4\nif r0 == 0 goto +2\nr1 = r0\ncall kfunc 5\nr0 = 0\nexit", None),
    # R0's id for the NULL check is taken before the reference's, as the kernel does
    ("acquire_leaks", SCHED_CLS, "r1 = 1\ncall kfunc 4\nr0 = 0\nexit",
     ("Unreleased reference id=2 alloc_insn=1", errno.EINVAL)),
    ("release_possibly_null", SCHED_CLS,
     "r1 = 1\ncall kfunc 4\nr1 = r0\ncall kfunc 5\nr0 = 0\nexit",
     ("Possibly NULL pointer passed to trusted arg0", errno.EACCES)),
    ("release_needs_a_reference", SCHED_CLS, "r1 = r10\ncall kfunc 5\nr0 = 0\nexit",
     ("arg#0 pointer type STRUCT task_struct must point to scalar, or struct with scalar",
      errno.EINVAL)),
    ("use_after_release", SCHED_CLS,  # the released pointer's copies become scalars
     "r1 = 1\ncall kfunc 4\nif r0 == 0 goto +4\nr6 = r0\nr1 = r6\ncall kfunc 5\n"
     "r1 = r6\ncall kfunc 8\nr0 = 0\nexit",
     ("arg#0 pointer type STRUCT task_struct must point to scalar, or struct with scalar",
      errno.EINVAL)),
    ("cast_to_kern_ctx_ok", SOCKET, "call kfunc 7\nr0 = 0\nexit", None),
    # BTF pointers carry their struct: a helper's ARG_PTR_TO_BTF_ID checks it
    ("helper_btf_arg_ok", KPROBE, "call 158\nr1 = r0\ncall 175\nr0 = 0\nexit", None),
    ("helper_btf_arg_wrong_struct", KPROBE, "call kfunc 7\nr1 = r0\ncall 175\nr0 = 0\nexit",
     ("R1 is of type pt_regs but task_struct is expected", errno.EACCES)),
    ("cast_to_kern_ctx_unmodified_ctx", SOCKET, "r1 += 8\ncall kfunc 7\nr0 = 0\nexit",
     ("dereference of modified ctx ptr R1 off=8 disallowed", errno.EACCES)),
    ("cast_to_kern_ctx_needs_ctx", SOCKET, "r1 = r10\ncall kfunc 7\nr0 = 0\nexit",
     ("arg#0 expected pointer to ctx, but got fp", errno.EINVAL)),
    ("mem_arg_on_stack", TRACEPOINT,
     "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = r10\nr1 += -8\ncall kfunc 9\nr0 = 0\nexit", None),
    ("mem_arg_too_small", TRACEPOINT,
     "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = r10\nr1 += -4\ncall kfunc 9\nr0 = 0\nexit",
     ("invalid read from stack R1 off=-4 size=8", errno.EACCES)),
    ("mem_arg_is_not_ctx", TRACEPOINT, "call kfunc 9\nr0 = 0\nexit",
     ("R1 type=ctx expected=fp", errno.EACCES)),
    ("iter_loop", SOCKET, LOOP, None),
    ("iter_next_uninit", SOCKET, IT + "call kfunc 2\nr0 = 0\nexit",
     ("expected an initialized iter_num as arg #0", errno.EINVAL)),
    ("iter_new_twice", SOCKET, NEW + NEW + "r0 = 0\nexit",
     ("expected uninitialized iter_num as arg #0", errno.EINVAL)),
    ("iter_not_destroyed", SOCKET, NEW + "r0 = 0\nexit",
     ("Unreleased reference id=1 alloc_insn=4", errno.EINVAL)),
    ("iter_destroyed_twice", SOCKET, NEW + DESTROY + DESTROY + "r0 = 0\nexit",
     ("expected an initialized iter_num as arg #0", errno.EINVAL)),
    ("iter_bytes_unreadable", SOCKET, NEW + "r0 = *(u64 *)(r10 - 8)\n" + DESTROY + "exit",
     ("invalid read from stack off -8+0 size 8", errno.EACCES)),
    ("iter_bytes_unreadable_by_helpers", SCHED_CLS,  # bpf_csum_diff reads its from buffer
     NEW + "r1 = r10\nr1 += -8\nr2 = 8\nr3 = 0\nr4 = 0\nr5 = 0\ncall 28\n" + DESTROY
     + "r0 = 0\nexit", ("invalid read from stack R1 off -8+0 size 8", errno.EACCES)),
    ("iter_scalar_arg", SOCKET, IT + "r2 = r10\nr3 = 5\ncall kfunc 1\nr0 = 0\nexit",
     ("R2 is not a scalar", errno.EINVAL)),
    # the drained path, R0 NULL, is walked first
    ("iter_next_null_is_checked", SOCKET,
     NEW + IT + "call kfunc 2\nr6 = *(u32 *)(r0 + 0)\n" + DESTROY + "r0 = 0\nexit",
     ("R0 invalid mem access 'scalar'", errno.EACCES)),
    ("iter_value_is_read_only", SOCKET,
     NEW + IT + "call kfunc 2\nif r0 == 0 goto +2\nr1 = 1\n*(u32 *)(r0 + 0) = r1\n"
     + DESTROY + "r0 = 0\nexit",
     ("R0 cannot write into rdonly_mem", errno.EACCES)),
    ("non_gpl", SOCKET, "call kfunc 7\nr0 = 0\nexit",
     ("cannot call kernel function from non-GPL compatible program", errno.EINVAL)),
]


@pytest.mark.parametrize(("name", "prog_type", "asm", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_kfunc_verdict(name, prog_type, asm, expected):
    helpers = {CSUM_DIFF: HELPERS[CSUM_DIFF].proto,
               **{h: KERNEL_PROTOS[h] for h in (CURRENT_TASK_BTF, TASK_PT_REGS)}}
    target = Target(prog_type=prog_type, kfuncs=PROTOS, gpl=name != "non_gpl", helpers=helpers)
    verdict = verify(assemble(asm), target)
    if expected is None:
        assert verdict.ok, verdict.error
        return
    assert not verdict.ok, f"{name}: accepted"
    msg, err = expected
    assert verdict.error.reason.splitlines()[0] == msg
    assert verdict.error.errno == err


# program, expected retval: the iterators run in the interpreter
RUNS = [
    ("iter_sum", LOOP, 0 + 1 + 2 + 3 + 4),
    ("iter_empty", NEW.replace("r3 = 5", "r3 = 0") + "r6 = 7\n" + IT
     + "call kfunc 2\nif r0 != 0 goto +1\nr6 = 3\n" + DESTROY + "r0 = r6\nexit", 3),
    ("iter_new_error", NEW.replace("r2 = 0", "r2 = 9") + "r6 = r0\n" + DESTROY
     + "r0 = r6\nexit", -errno.EINVAL & 0xFFFFFFFF),
]


@pytest.mark.parametrize(("name", "asm", "retval"), RUNS, ids=[r[0] for r in RUNS])
def test_kfunc_run(name, asm, retval):
    kernel = Kernel(verify=True)
    prog = kernel.prog_load(assemble(asm), SOCKET, kfuncs=PROTOS)
    assert test_run(prog, data_in=bytes(64)).retval == retval


# --- the loader: extern function calls become kfunc calls ----------------------------------------

BITS_ITER = Path(__file__).parent / "selftests" / "objects" / "verifier_bits_iter.bpf.o"


@pytest.mark.parametrize(("prog", "retval"), [("bits_copy", 10), ("max_words", 4),
                                              ("bad_words", 0)])  # fmt: skip
def test_loader_resolves_kfunc_calls(prog, retval):
    with load_object(BITS_ITER, Kernel(verify=True), autoload={prog}) as coll:
        p = coll.program(prog)
        kfunc_calls = [i for i in p.insns if i.code == 0x85 and i.src_reg == 2]  # PSEUDO_KFUNC
        assert len(kfunc_calls) == len(p.source.extern_calls) >= 3
        assert {name for _, name in p.source.extern_calls} == {
            "bpf_iter_bits_new", "bpf_iter_bits_next", "bpf_iter_bits_destroy"}
        assert test_run(p).retval == retval
