"""Callbacks (bpf_loop, for_each_map_elem, user_ringbuf_drain) with BTF func_info, against
Linux 6.18.

The kernel loads a callback (``ld_imm64`` with BPF_PSEUDO_FUNC) only when the
load carries BTF func_info, so these programs cannot go to the running
kernel through ``pybpf.kernel.linux`` (it has no BPF_BTF_LOAD); each
expected verdict cites the code of kernel/bpf/verifier.c (6.18) that gives
it.  The compiled fixture ``subprog.bpf.o`` (accepted by the kernel, see
tests/fixtures/expected) is loaded with the verifier on and run.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pybpf.asm.llvm import assemble
from pybpf.errors import VerifierError
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps import MapAttr, MapType
from pybpf.verifier import Target, verify

XDP = 6
FIXTURE = Path(__file__).parent / "fixtures" / "subprog.bpf.o"
ENOTSUPP = 524

# bpf_loop(n, cb, NULL, 0); the callback at pc 8 returns R0 (set by the row)
LOOP = """
r1 = {n}
ld_pseudo r2, 4, 6
r3 = 0
r4 = 0
call 181
r0 = 0
exit
{body}
exit
"""

# bpf_loop(10, cb, &fp[-8], 0) with fp[-8] = 7; the callback at pc 10
LOOP_CTX = """
r1 = 7
*(u64 *)(r10 - 8) = r1
r1 = 10
ld_pseudo r2, 4, 7
r3 = r10
r3 += -8
r4 = 0
call 181
r0 = 0
exit
{body}
r0 = 0
exit
"""

# bpf_for_each_map_elem(map, cb, NULL, 0) over the first declared map; the callback at pc 9
FOR_EACH = """
ld_pseudo r1, 1, 0
ld_pseudo r2, 4, 6
r3 = 0
r4 = 0
call 164
r0 = 0
exit
{body}
r0 = 0
exit
"""

# bpf_user_ringbuf_drain(ringbuf, cb, NULL, 0) over the first declared map; the callback at pc 9
DRAIN = FOR_EACH.replace("call 164", "call 209").replace("{body}\nr0 = 0\n", "{body}\n")

ARRAY8 = ("arr", MapType.ARRAY, 4, 8, 4)
USER_RB = ("urb", MapType.USER_RINGBUF, 0, 0, 4096)
HASH4 = ("h", MapType.HASH, 4, 8, 4)
LPM = ("lpm", MapType.LPM_TRIE, 8, 8, 4, 1)  # BPF_F_NO_PREALLOC

# name, asm, func_info (start pcs), maps, expected: None (accept) or (pc, message, errno)
CASES = [
    # bpf_loop's callback: R1 is the index, R2 the caller's R3, R0 in [0, 1] at exit
    # (set_loop_callback_state; prepare_func_exit: retval_range_within)
    ("loop_returns_0", LOOP.format(n=10, body="r0 = 0"), (0, 8), (), None),
    ("loop_returns_1", LOOP.format(n=10, body="r0 = 1"), (0, 8), (), None),
    ("loop_returns_2", LOOP.format(n=10, body="r0 = 2"), (0, 8), (),
     (9, "At callback return the register R0 has smin=2 smax=2 should have been in [0, 1]",
      errno.EINVAL)),
    ("loop_returns_index", LOOP.format(n=10, body="r0 = r1"), (0, 8), (),
     (9, "At callback return the register R0 has unknown scalar value should have been in "
         "[0, 1]", errno.EINVAL)),
    ("loop_returns_index_masked", LOOP.format(n=10, body="r0 = r1\nr0 &= 1"), (0, 8), (), None),
    # prepare_func_exit refuses any stack pointer in R0 first, then a non-scalar
    # ("R0 not a scalar value", -EACCES), then the range
    ("loop_returns_fp", LOOP.format(n=10, body="r0 = r10"), (0, 8), (),
     (9, "cannot return stack pointer to the caller", errno.EINVAL)),
    ("loop_returns_callers_stack",
     LOOP_CTX.format(body="r0 = r2\nif r1 > 0 goto +1\nexit"), (0, 11), (),
     (13, "cannot return stack pointer to the caller", errno.EINVAL)),
    ("for_each_returns_value",
     FOR_EACH.format(body="r5 = *(u64 *)(r3 + 0)\nr0 = r3\nif r5 > 0 goto +1\nexit"), (0, 9),
     (ARRAY8,), (12, "R0 not a scalar value", errno.EACCES)),
    ("loop_r0_uninit", LOOP.format(n=10, body="r1 = 0"), (0, 8), (),
     (9, "R0 not a scalar value", errno.EACCES)),
    # the callback's R3 is not initialised (set_loop_callback_state marks it so)
    ("loop_r3_uninit", LOOP.format(n=10, body="r0 = r3"), (0, 8), (), (8, "R3 !read_ok",
                                                                     errno.EACCES)),
    # nr_loops = 0: callback_depth (0) < umax (0) fails, the callback is never
    # explored (check_helper_call, case BPF_FUNC_loop), so its bad return passes;
    # the same program in C (bpf_loop(0, cb, 0, 0), cb returning 2) loads with
    # bpftool on 6.18, its log saying "frame0 bpf_loop iteration limit reached"
    ("loop_zero_iterations", LOOP.format(n=0, body="r0 = 2"), (0, 8), (), None),
    # the ctx is the caller's stack: reads within what the caller wrote pass
    ("ctx_read", LOOP_CTX.format(body="r3 = *(u64 *)(r2 + 0)"), (0, 11), (), None),
    ("ctx_write_scalar", LOOP_CTX.format(body="r3 = 1\n*(u64 *)(r2 + 0) = r3"), (0, 11), (),
     None),
    # past the caller's frame: check_stack_access_within_bounds
    ("ctx_read_past_frame", LOOP_CTX.format(body="r3 = *(u64 *)(r2 + 8)"), (0, 11), (),
     (11, "invalid read from stack R2 off=0 size=8", errno.EACCES)),
    # the callee's own stack pointer may not be stored in its caller's frame
    # (check_stack_write_fixed_off)
    ("ctx_spill_own_fp", LOOP_CTX.format(body="*(u64 *)(r2 + 0) = r10"), (0, 11), (),
     (11, "cannot spill pointers to stack into stack frame of the caller", errno.EINVAL)),
    # callback_ctx is ARG_PTR_TO_STACK_OR_NULL
    ("loop_ctx_not_stack", LOOP.format(n=10, body="r0 = 0").replace("r3 = 0", "r3 = r1"),
     (0, 8), (), (5, "R3 type=scalar expected=fp", errno.EACCES)),
    # for_each_map_elem: R1 the map, R2 the key, R3 the value (map_set_for_each_callback_args)
    ("for_each_value_read", FOR_EACH.format(body="r0 = *(u64 *)(r3 + 0)"), (0, 9), (ARRAY8,),
     None),
    ("for_each_value_oob", FOR_EACH.format(body="r0 = *(u64 *)(r3 + 8)"), (0, 9), (ARRAY8,),
     (9, "invalid access to map value, value_size=8 off=8 size=8", errno.EACCES)),
    ("for_each_key_read", FOR_EACH.format(body="r0 = *(u32 *)(r2 + 0)"), (0, 9), (ARRAY8,),
     None),
    # the key is read-only and key_size long (check_mem_access, __check_mem_access)
    ("for_each_key_past_end", FOR_EACH.format(body="r0 = *(u64 *)(r2 + 0)"), (0, 9),
     (HASH4,), (9, "invalid access to map key, key_size=4 off=0 size=8", errno.EACCES)),
    ("for_each_key_write", FOR_EACH.format(body="r0 = 0\n*(u32 *)(r2 + 0) = r0"), (0, 9),
     (HASH4,), (10, "write to change key R2 not allowed", errno.EACCES)),
    ("for_each_hash_value_write", FOR_EACH.format(body="r0 = 0\n*(u64 *)(r3 + 0) = r0"),
     (0, 9), (HASH4,), None),
    # R4 is the callback_ctx (NULL here: a scalar)
    ("for_each_null_ctx_deref", FOR_EACH.format(body="r0 = *(u64 *)(r4 + 0)"), (0, 9),
     (HASH4,), (9, "R4 invalid mem access 'scalar'", errno.EACCES)),
    # maps without for-each ops: set_map_elem_callback_state, -ENOTSUPP
    ("for_each_lpm", FOR_EACH.format(body="r0 = 0"), (0, 9), (LPM,),
     (6, "callback function not allowed for map", ENOTSUPP)),
    # user_ringbuf_drain: R1 a dynptr over the sample (CONST_PTR_TO_DYNPTR, no direct access),
    # R2 the caller's R3, R0 in [0, 1] at exit (set_user_ringbuf_callback_state)
    ("drain_returns_1", DRAIN.format(body="r0 = 1"), (0, 9), (USER_RB,), None),
    ("drain_returns_2", DRAIN.format(body="r0 = 2"), (0, 9), (USER_RB,),
     (10, "At callback return the register R0 has smin=2 smax=2 should have been in [0, 1]",
      errno.EINVAL)),
    ("drain_dynptr_deref", DRAIN.format(body="r0 = *(u64 *)(r1 + 0)"), (0, 9), (USER_RB,),
     (9, "R1 invalid mem access 'dynptr_ptr'", errno.EACCES)),
    ("drain_null_ctx_deref", DRAIN.format(body="r0 = *(u64 *)(r2 + 0)"), (0, 9), (USER_RB,),
     (9, "R2 invalid mem access 'scalar'", errno.EACCES)),
    ("drain_not_a_user_ringbuf", DRAIN.format(body="r0 = 0"), (0, 9), (ARRAY8,),
     (6, "cannot pass map_type 2 into func bpf_user_ringbuf_drain#209", errno.EINVAL)),
    # check_btf_func: func_info must name each subprogram's start
    ("func_info_wrong_start", LOOP.format(n=10, body="r0 = 0"), (0, 6), (),
     (None, "func_info BTF section doesn't match subprog layout in BPF program", errno.EINVAL)),
    ("func_info_too_few", LOOP.format(n=10, body="r0 = 0"), (0,), (),
     (None, "number of funcs in func_info doesn't match number of subprogs", errno.EINVAL)),
    ("func_info_first_nonzero", LOOP.format(n=10, body="r0 = 0"), (7,), (),
     (None, "nonzero insn_off 7 for the first func info record", errno.EINVAL)),
    # without func_info the kernel stops at the ld_imm64 (check_ld_imm)
    ("no_func_info", LOOP.format(n=10, body="r0 = 0"), None, (),
     (1, "missing btf func_info", errno.EINVAL)),
]


def _maps(kernel: Kernel, decls) -> dict:
    out = {}
    for i, (name, mtype, ksize, vsize, entries, *flags) in enumerate(decls):
        out[i] = kernel.map_create(MapAttr(mtype, ksize, vsize, entries, flags[0] if flags
                                           else 0, name))  # fmt: skip
    return out


def _load(text: str, func_info, decls=(), *, license: str = "GPL", log_level: int = 1):
    kernel = Kernel(verify=True)
    return kernel.prog_load(assemble(text), XDP, license=license, maps=_maps(kernel, decls),
                            log_level=log_level, func_info=func_info)  # fmt: skip


@pytest.mark.parametrize(("name", "text", "func_info", "decls", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_callback_verdict(name, text, func_info, decls, expected):
    if expected is None:
        _load(text, func_info, decls)
        return
    with pytest.raises(VerifierError) as info:
        _load(text, func_info, decls)
    err = info.value
    pc, message, code = expected
    assert err.reason.splitlines()[0] == message, err.log
    assert (err.pc, err.errno) == (pc, code), err.log


def test_accepted_callback_is_kept_in_the_xlated_image():
    prog = _load(LOOP_CTX.format(body="r3 = *(u64 *)(r2 + 0)"), (0, 11))
    assert len(prog.xlated) == len(assemble(LOOP_CTX.format(body="r3 = *(u64 *)(r2 + 0)")))


def test_unexplored_callback_stays_in_the_xlated_image():
    # nr_loops = 0: the kernel never walks the callback but keeps it (bpftool's xlated
    # dump of the C equivalent still holds the subprogram the ld_imm64 names)
    text = LOOP.format(n=0, body="r0 = 0")
    prog = _load(text, (0, 8))
    assert len(prog.xlated) == len(assemble(text))


def test_callback_visits_follow_nr_loops():
    # a callback that walks the loop is explored once per iteration the bound allows
    # (callback_depth < umax of R1), until the callsite's state is covered
    def processed(n: int) -> int:
        target = Target(XDP, helpers=_helpers(), func_info=(0, 8))
        v = verify(assemble(LOOP.format(n=n, body="r0 = 0")), target)
        assert v.ok, v.log
        return v.insns_processed

    assert processed(0) < processed(1) <= processed(3)


def _helpers():
    from pybpf.runtime.helpers import prototypes
    from pybpf.runtime.progtypes import PROG_TYPES

    return prototypes(PROG_TYPES[XDP].helpers)


def test_target_without_func_info_refuses_callbacks_as_the_kernel():
    v = verify(assemble(LOOP.format(n=10, body="r0 = 0")), Target(XDP, helpers=_helpers()))
    assert not v.ok and v.error.reason == "missing btf func_info" and v.error.pc == 1


def test_gpl_check_comes_before_the_arguments():
    # check_helper_call refuses a gpl_only helper to a non-GPL program before
    # check_func_arg looks at R1-R5 (here R1 is not a pointer)
    text = "r1 = 0\ncall 6\nr0 = 0\nexit"  # bpf_trace_printk(NULL, <uninit>)
    with pytest.raises(VerifierError) as info:
        _load(text, None, license="Proprietary")
    assert info.value.reason == ("cannot call GPL-restricted function from non-GPL compatible "
                                 "program")
    assert (info.value.pc, info.value.errno) == (1, errno.EINVAL)
    with pytest.raises(VerifierError) as info:
        _load(text, None, license="GPL")
    assert info.value.reason.startswith("R1 type=scalar expected=fp")


@pytest.mark.skipif(not FIXTURE.exists(), reason="fixture subprog.bpf.o not built")
def test_compiled_bpf_loop_loads_with_the_verifier_and_runs():
    from pybpf.loader import load_object
    from pybpf.runtime.testrun import test_run

    with load_object(FIXTURE, Kernel(verify=True)) as coll:
        prog = coll.programs["subprog_loop"]
        for n in (0, 1, 5, 31):
            packet = bytes([n]) + bytes(63)
            result = test_run(prog, data_in=packet)
            want = sum(i * i + 1 for i in range(n))
            assert result.retval == 2  # XDP_PASS
            assert int.from_bytes(result.data_out[:4], "little") == want


def test_func_info_may_be_the_loaders_pc_type_id_pairs():
    # ProgramSpec.func_info holds (pc, BTF type id) records; only the pcs matter here
    text = LOOP.format(n=10, body="r0 = 0")
    assert _load(text, [(0, 7), (8, 9)]).xlated
    with pytest.raises(VerifierError, match="func_info BTF section doesn't match"):
        _load(text, [(0, 7), (7, 9)])
