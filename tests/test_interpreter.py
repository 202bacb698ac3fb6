"""Interpreter behaviour the data files cannot show: memory safety, frames, helpers, budgets."""

from __future__ import annotations

import pytest

from pybpf.asm import ubpf
from pybpf.errors import (
    BudgetExceeded,
    CallDepthError,
    HelperError,
    JumpRangeError,
    MemoryFault,
    UnknownHelperError,
    UnresolvedLoadError,
    VmError,
)
from pybpf.isa import Instruction, Pseudo
from pybpf.vm import HelperTable, Interpreter, Region, conformance_helpers
from pybpf.vm.budget import VERIFIED_BUDGET
from pybpf.vm.memory import Memory


def run(src: str, memory: bytes | bytearray | None = None, **kw) -> int:
    return Interpreter(ubpf.assemble(src), **kw).run(memory=memory).r0


def test_registers_hold_real_addresses():
    import ctypes

    mem = bytearray(b"\x11\x22\x33\x44")
    vm = Interpreter(ubpf.assemble("mov %r0, %r1\nexit"))
    addr = vm.run(memory=mem).r0
    # the pointer a program sees is the host address of the caller's buffer
    assert addr != 0
    vm2 = Interpreter(ubpf.assemble("ldxw %r0, [%r1]\nexit"))
    assert vm2.run(memory=mem).r0 == 0x44332211
    assert ctypes.c_uint32.from_address(addr) is not None  # a valid host address


def test_store_writes_callers_buffer_in_place():
    mem = bytearray(8)
    run("stdw [%r1+0], -2\nmov %r0, 0\nexit", mem)
    assert mem == (2**64 - 2).to_bytes(8, "little")


@pytest.mark.parametrize(
    "src, write",
    [
        ("ldxdw %r0, [%r1+4]\nexit", False),  # crosses the end of memory
        ("stw [%r1+8], 1\nmov %r0, 0\nexit", True),  # past the end
        ("ldxb %r0, [%r1-1]\nexit", False),  # before the start
        ("mov %r2, 0\nldxb %r0, [%r2]\nexit", False),  # NULL
        ("ldxdw %r0, [%r10]\nexit", False),  # above the stack top
        ("ldxdw %r0, [%r10-520]\nexit", False),  # below the frame
        ("lddw %r2, 0x7fffffff0000\nstb [%r2], 1\nexit", True),  # arbitrary host address
    ],
)
def test_out_of_region_access_faults(src: str, write: bool):
    with pytest.raises(MemoryFault) as info:
        run(src, bytearray(8))
    fault = info.value
    assert fault.write is write
    assert fault.pc is not None and fault.size in (1, 4, 8)
    assert f"{fault.address:#x}" in str(fault)


def test_fault_names_pc_address_size_region():
    with pytest.raises(MemoryFault) as info:
        run("mov %r0, 0\nldxw %r0, [%r1+6]\nexit", bytearray(8))
    fault = info.value
    assert fault.pc == 1 and fault.size == 4 and fault.region == "memory"
    assert "pc 1" in str(fault) and "4 bytes" in str(fault)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_memory_finds_every_region_as_regions_come_and_go(seed: int):
    """Many regions added and removed in random order: every live region is found at
    both ends, a removed one is gone, the order holds."""
    import random

    rng = random.Random(seed)
    memory = Memory()
    live: list[Region] = []
    gone: list[Region] = []
    for step in range(3000):
        if live and rng.random() < 0.45:
            region = live.pop(rng.randrange(len(live)))
            memory.remove(region)
            gone.append(region)
        else:
            live.append(memory.add(Region(f"r{step}", bytearray(rng.randint(1, 48)))))
    assert [r.base for r in memory.regions] == sorted(r.base for r in live)
    for region in live:
        assert region in memory
        assert memory.find(region.base, region.size) is region
        assert memory.find(region.end - 1, 1) is region
        assert memory.find(region.base, region.size + 1) is None
    for region in gone[-200:]:
        assert region not in memory
        assert memory.find(region.base, 1) in (None, *live)  # the address may be reused
        with pytest.raises(ValueError):
            memory.remove(region)


def test_read_only_region_refuses_store():
    vm = Interpreter(ubpf.assemble("stw [%r1], 7\nmov %r0, 0\nexit"))
    ro = vm.memory.add(Region("rodata", bytearray(4), writable=False))
    with pytest.raises(MemoryFault) as info:
        vm.run(args=[ro.base])
    assert info.value.region == "rodata" and info.value.write


def test_bpf_to_bpf_call_preserves_callee_saved_and_has_own_stack():
    src = """
        mov %r6, 6
        mov %r7, 7
        stdw [%r10-8], 100
        mov %r1, 5
        call local f
        ldxdw %r1, [%r10-8]
        add %r0, %r1          # 10 + 100
        add %r0, %r6          # + 6 (r6 restored)
        add %r0, %r7          # + 7
        exit
    f:
        mov %r6, 60
        mov %r7, 70
        stdw [%r10-8], 1      # the callee's own frame
        mov %r0, %r1
        add %r0, %r1
        exit
    """
    assert run(src) == 10 + 100 + 6 + 7


def test_callee_may_use_callers_stack_through_a_pointer():
    src = """
        stdw [%r10-8], 41
        mov %r1, %r10
        add %r1, -8
        call local f
        ldxdw %r0, [%r10-8]
        exit
    f:
        ldxdw %r2, [%r1]
        add %r2, 1
        stxdw [%r1], %r2
        exit
    """
    assert run(src) == 42


def test_call_depth_limited_to_eight_frames():
    chain = "\n".join(f"f{i}:\ncall local f{i + 1}\nexit" for i in range(8))
    with pytest.raises(CallDepthError):
        run(f"call local f0\nexit\n{chain}\nf8:\nmov %r0, 1\nexit")
    ok = "\n".join(f"f{i}:\ncall local f{i + 1}\nexit" for i in range(6))
    assert run(f"call local f0\nexit\n{ok}\nf6:\nmov %r0, 1\nexit") == 1


def test_helpers_dispatch_by_id_and_see_memory():
    table = HelperTable()
    seen = []

    def probe(env, r1, r2, r3, r4, r5):
        seen.append(env.memory.read(r1, r2))
        return -1

    table.register(7, "probe", probe)
    assert run("call 7\nexit", b"abc", helpers=table) == 2**64 - 1
    assert seen == [b"abc"]


def test_unknown_helper_is_an_error_at_its_pc():
    with pytest.raises(UnknownHelperError) as info:
        run("mov %r0, 0\ncall 99\nexit")
    assert info.value.pc == 1


def test_failing_helper_is_wrapped():
    table = HelperTable()
    table.register(1, "boom", lambda env, *a: 1 // 0)
    with pytest.raises(HelperError) as info:
        run("call 1\nexit", helpers=table)
    assert isinstance(info.value.__cause__, ZeroDivisionError) and info.value.pc == 0


def test_callx_calls_helper_by_register_value():
    assert run("mov %r1, 9\nmov %r2, 5\ncall %r2\nexit", helpers=conformance_helpers()) == 9


def test_callx_calls_a_subprogram_loaded_with_pseudo_func():
    src = "lddw %r2, func(f)\ncall %r2\nexit\nf:\nmov %r0, 33\nexit"
    assert run(src) == 33


def test_budget_stops_infinite_loop():
    with pytest.raises(BudgetExceeded):
        run("l:\nja l\nexit", budget=10_000)
    with pytest.raises(BudgetExceeded):
        run("mov %r0, 1\nl:\njne %r0, 0, l\nexit", budget=10_000)


def test_executed_count_is_exact():
    vm = Interpreter(ubpf.assemble("mov %r1, 3\nl:\nsub %r1, 1\njne %r1, 0, l\nmov %r0, 0\nexit"))
    assert vm.run().executed == 1 + 3 * 2 + 2


def test_fall_off_the_end_is_an_error():
    with pytest.raises(VmError, match="fell off"):
        run("mov %r0, 1\njeq %r0, 2, -2")


def test_jump_out_of_range_is_rejected_at_load():
    with pytest.raises(JumpRangeError) as info:
        Interpreter([Instruction(0x05, off=5), Instruction(0x95)])
    assert info.value.pc == 0


def test_jump_into_lddw_is_rejected():
    insns = [Instruction(0x05, off=1), Instruction.lddw(0, 1), Instruction(0x95)]
    with pytest.raises(JumpRangeError, match="inside an lddw"):
        Interpreter(insns)


def test_pseudo_lddw_needs_a_resolver():
    insns = [Instruction.lddw(1, 3, src_reg=Pseudo.MAP_FD), Instruction(0xB7), Instruction(0x95)]
    with pytest.raises(UnresolvedLoadError):
        Interpreter(insns)
    region = Region("map", bytearray(8))
    vm = Interpreter(insns, resolve_imm64=lambda insn, pc: region.base)
    assert vm.run().r0 == 0


def _packet_prog(src: str) -> Interpreter:
    return Interpreter(ubpf.assemble(src))


@pytest.mark.parametrize(
    "src, expected",
    [
        ("ldabsb 1\nexit", 0x22),
        ("ldabsh 1\nexit", 0x2233),  # network byte order
        ("ldabsw 0\nexit", 0x11223344),
        ("mov %r1, 2\nldindh %r1, 1\nexit", 0x4455),
        ("ldabsw 3\nexit", 0),  # out of bounds: the program ends with r0 = 0
        ("mov %r0, 7\nmov %r1, -8\nldindb %r1, 1\nmov %r0, 9\nexit", 0),
    ],
)
def test_legacy_packet_loads(src: str, expected: int):
    assert _packet_prog(src).run(packet=b"\x11\x22\x33\x44\x55").r0 == expected


def test_legacy_packet_load_without_packet_is_an_error():
    with pytest.raises(VmError, match="without a packet"):
        _packet_prog("ldabsb 0\nexit").run()


def test_kfunc_dispatch_by_btf_id():
    table = HelperTable()
    table.register_kfunc(1234, "bpf_obj_new_impl", lambda env, r1, *a: r1 * 2)
    assert run("mov %r1, 21\ncall runtime 1234\nexit", helpers=table) == 42
    with pytest.raises(UnknownHelperError):
        run("call runtime 99\nexit")


def test_may_goto_takes_the_branch_when_the_budget_is_spent(monkeypatch):
    src = "mov %r0, 0\nl:\nmay_goto out\nadd %r0, 1\nja l\nout:\nexit"
    vm = Interpreter(ubpf.assemble(src), budget=VERIFIED_BUDGET)  # 2**23 rounds of 3 insns
    assert vm.run().r0 == 1 << 23


def test_tail_call_replaces_the_program():
    target = Interpreter(ubpf.assemble("mov %r0, %r1\nadd %r0, 1\nexit"))
    calls = []

    def resolve(env, ctx, prog_array, index):
        calls.append(index)
        return target if index == 1 else None

    src = "mov %r6, %r1\nmov %r3, 0\ncall 12\nmov %r1, %r6\nmov %r3, 1\ncall 12\nmov %r0, 99\nexit"
    vm = Interpreter(ubpf.assemble(src), tail_call=resolve)
    result = vm.run(args=[41])
    assert result.r0 == 42 and calls == [0, 1]


def test_stack_is_512_bytes_per_frame():
    assert run("stb [%r10-512], 1\nldxb %r0, [%r10-512]\nexit") == 1
    with pytest.raises(MemoryFault):
        run("stb [%r10-513], 1\nexit")


def test_compilation_is_pure_and_loops_become_while():
    from pybpf.vm.compiler import Layout, compile_program

    insns = ubpf.assemble("mov %r1, 3\nl:\nsub %r1, 1\njne %r1, 0, l\nmov %r0, 0\nexit")
    layout = Layout(0x1000, 0x2000)
    first = compile_program(insns, layout).source
    assert first == compile_program(insns, layout).source
    assert "while True:" in first.split("while True:", 1)[1]  # the self-loop's inner loop
    assert "r1 = (r1 - 0x1) & M64" in first


def test_helper_can_call_back_into_a_subprogram():
    """The mechanism of bpf_loop: a helper invokes a callback in a new frame."""
    table = HelperTable()
    vm_box = []

    def loop(env, n, callback, ctx, flags, r5):
        for i in range(n):
            if vm_box[0].invoke(callback, [i, ctx]):
                return i + 1
        return n

    table.register(181, "bpf_loop", loop)
    src = """
        stdw [%r10-8], 0
        mov %r1, 5
        lddw %r2, func(cb)
        mov %r3, %r10
        add %r3, -8
        mov %r4, 0
        call 181
        ldxdw %r1, [%r10-8]
        lsh %r0, 32
        or %r0, %r1
        exit
    cb:
        stdw [%r10-8], 99     # the callback's own frame
        ldxdw %r3, [%r2]
        add %r3, %r1
        stxdw [%r2], %r3      # the caller's stack through ctx
        mov %r0, 0
        exit
    """
    vm = Interpreter(ubpf.assemble(src), helpers=table)
    vm_box.append(vm)
    assert vm.run().r0 == (5 << 32) | (0 + 1 + 2 + 3 + 4)
    with pytest.raises(VmError, match="not a function"):
        vm.invoke(3, [])


# --- the stack fast path stays inside the stack --------------------------------------------
#
# Frames are 512 bytes, the first at the top of the 8-frame stack.  A program may reach its own
# frame and its callers' (through pointers); anything else is a fault, and a call that would open
# a frame under the stack's base is a CallDepthError, also when the count of frames starts in a
# callback: Linux counts a callback's frame toward MAX_CALL_FRAMES (the verifier's
# setup_func_entry refuses "the call stack of 9 frames is too deep" for callbacks and calls alike;
# a raw program with a callback cannot be loaded here without BTF func_info, so no kernel test).

PATTERN = 0xA5


def _filled(vm: Interpreter) -> bytes:
    """Fill ``vm``'s whole stack with a pattern; returns the filled bytes."""
    vm.stack.buf[:] = bytes([PATTERN]) * len(vm.stack.buf)
    return bytes(vm.stack.buf)


def _with_written(before: bytes, writes: dict[int, bytes]) -> bytes:
    """``before`` with ``writes`` (offset from the stack base -> bytes) applied."""
    out = bytearray(before)
    for offset, data in writes.items():
        out[offset : offset + len(data)] = data
    return bytes(out)


def _loop_table(box: list) -> HelperTable:
    """bpf_loop (181) running its callback once through ``box[0].invoke``."""
    table = HelperTable()
    table.register(181, "bpf_loop", lambda env, n, cb, ctx, flags, r5: box[0].invoke(cb, [0, ctx]))
    return table


def _callback_chain(calls: int, last: str = "stdw [%r10-512], 1") -> str:
    """bpf_loop's callback f0 calls f1 ... f<calls>; f<i> (i < calls) stores i at [r10-8].

    The callback's frame is the second; f<calls> is frame ``calls + 2``.  The program is valid
    for the kernel too (bpf_loop's arguments, callbacks returning 0) except where ``last``
    is not.
    """
    chain = "\n".join(
        f"f{i}:\nstdw [%r10-8], {i}\ncall local f{i + 1}\nmov %r0, 0\nexit" for i in range(calls)
    )
    return (
        "mov %r1, 1\nlddw %r2, func(f0)\nmov %r3, 0\nmov %r4, 0\ncall 181\nmov %r0, 0\nexit\n"
        f"{chain}\nf{calls}:\n{last}\nmov %r0, 0\nexit"
    )


CHAIN_CALL_PC = 9  # the first call local: pc of f0 (8) + 1; f<i>'s is 9 + 4 i


def test_callback_calls_never_take_a_frame_under_the_stack():
    """A callback's seventh nested call would be the ninth frame: refused before any access."""
    box: list = []
    vm = Interpreter(ubpf.assemble(_callback_chain(7)), helpers=_loop_table(box))
    box.append(vm)
    before = _filled(vm)
    with pytest.raises(CallDepthError) as info:
        vm.run()
    assert info.value.pc == CHAIN_CALL_PC + 4 * 6  # f6's call of f7, as the JIT stops
    size = len(before)
    # f<i> runs in frame i + 2 and wrote only its own slot; no other byte of the stack moved
    wrote = {size - 512 * (i + 1) - 8: i.to_bytes(8, "little") for i in range(7)}
    assert bytes(vm.stack.buf) == _with_written(before, wrote)


def test_callback_may_fill_the_stack_to_the_eighth_frame():
    box: list = []
    vm = Interpreter(ubpf.assemble(_callback_chain(6)), helpers=_loop_table(box))
    box.append(vm)
    before = _filled(vm)
    assert vm.run().r0 == 0
    size = len(before)
    wrote = {size - 512 * (i + 1) - 8: i.to_bytes(8, "little") for i in range(6)}
    wrote[0] = (1).to_bytes(8, "little")  # f6, the eighth frame, at the very base of the stack
    assert bytes(vm.stack.buf) == _with_written(before, wrote)


def test_interpreter_and_jit_stop_the_callback_chain_at_the_same_call():
    jit = pytest.importorskip("pybpf.jit.engine")  # needs llvmlite
    insns = ubpf.assemble(_callback_chain(7))
    errors = []
    for make in (Interpreter, jit.JitProgram):
        box: list = []
        box.append(make(insns, helpers=_loop_table(box)))
        with pytest.raises(CallDepthError) as info:
            box[0].run()
        errors.append((type(info.value), info.value.pc))
    assert errors[0] == errors[1]


def test_callbacks_of_callbacks_stop_at_the_eighth_frame():
    """A callback that calls bpf_loop again: each invoke takes a frame; the eighth cannot."""
    box: list = []
    src = """
        lddw %r2, func(cb)
        call 181
        exit
    cb:
        stxdw [%r10-8], %r10
        lddw %r2, func(cb)
        call 181
        exit
    """
    vm = Interpreter(ubpf.assemble(src), helpers=_loop_table(box))
    box.append(vm)
    before = _filled(vm)
    with pytest.raises(CallDepthError) as info:
        vm.run()
    assert info.value.pc == 7  # the bpf_loop call of the callback in the eighth frame
    size = len(before)
    top = vm.stack.end
    wrote = {
        size - 512 * k - 8: (top - 512 * k).to_bytes(8, "little") for k in range(1, 8)
    }  # the callbacks in frames 2..8 each wrote their r10 in their own frame
    assert bytes(vm.stack.buf) == _with_written(before, wrote)


def _deepest(body: str) -> str:
    """``body`` run in the eighth frame (r10 = stack base + 512) by a chain of local calls."""
    chain = "\n".join(f"f{i}:\ncall local f{i + 1}\nexit" for i in range(6))
    return f"call local f0\nexit\n{chain}\nf6:\n{body}\nmov %r0, 0\nexit"


BELOW_THE_FRAME = [
    # r10-relative, constant offsets
    "ldxdw %r0, [%r10-520]",
    "stb [%r10-513], 1",
    "stxdw [%r10-516], %r10",  # straddles the frame's bottom
    "stxw [%r10-4096], %r10",
    "ldxb %r0, [%r10-32768]",
    # a copy of r10 moved below the frame
    "mov %r1, %r10\nadd %r1, -600\nstxdw [%r1+0], %r1",
    "mov %r1, %r10\nsub %r1, 1024\nldxdw %r0, [%r1+504]",
    "mov %r1, %r10\nadd %r1, -4096\nstdw [%r1+8], 7",
    "mov %r1, %r10\nlsh %r1, 0\nsub %r1, 513\nstb [%r1], 1",
    # atomics
    "mov %r1, 1\nlock add [%r10-520], %r1",
    "mov %r1, 1\nlock fetch add [%r10-1024], %r1",
    "mov %r0, 0\nmov %r1, 1\nlock cmpxchg [%r10-4104], %r1",
]


@pytest.mark.parametrize("deep", [False, True], ids=["first-frame", "eighth-frame"])
@pytest.mark.parametrize("body", BELOW_THE_FRAME)
def test_access_outside_the_frame_faults_and_changes_nothing(body: str, deep: bool):
    vm = Interpreter(ubpf.assemble(_deepest(body) if deep else f"{body}\nmov %r0, 0\nexit"))
    before = _filled(vm)
    with pytest.raises(MemoryFault):
        vm.run()
    assert bytes(vm.stack.buf) == before


def test_access_straddling_the_stack_top_faults_and_changes_nothing():
    vm = Interpreter(ubpf.assemble("stxdw [%r10-4], %r10\nmov %r0, 0\nexit"))
    before = _filled(vm)
    with pytest.raises(MemoryFault):
        vm.run()
    assert bytes(vm.stack.buf) == before


def test_callers_frames_stay_reachable_from_the_eighth_frame():
    """The fast path serves the current frame and those above it, nothing else."""
    vm = Interpreter(ubpf.assemble(_deepest("mov %r1, %r10\nadd %r1, 3000\nstdw [%r1+0], 9")))
    before = _filled(vm)
    vm.run()
    assert bytes(vm.stack.buf) == _with_written(before, {512 + 3000: (9).to_bytes(8, "little")})


@pytest.mark.parametrize(
    "setup, outcome",
    [
        ("add %r10, -3584", CallDepthError),  # r10 = base + 512: the callee's frame is under it
        ("add %r10, -3073", CallDepthError),  # one byte short of room for the callee's frame
        ("mov %r10, 0", CallDepthError),
        ("add %r10, -3072", None),  # the callee's frame is the stack's lowest 512 bytes
        ("lddw %r10, 0xfffffffffffff000", MemoryFault),  # far above: not a frame of the stack
    ],
)
def test_a_written_r10_never_opens_a_frame_under_the_stack(setup: str, outcome):
    """r10 is read-only for the verifier, not for the interpreter: a call checks where it is."""
    src = f"{setup}\ncall local f\nexit\nf:\nstdw [%r10-512], 1\nmov %r0, 0\nexit"
    vm = Interpreter(ubpf.assemble(src))
    before = _filled(vm)
    if outcome is None:
        vm.run()
        assert bytes(vm.stack.buf) == _with_written(before, {0: (1).to_bytes(8, "little")})
        return
    with pytest.raises(outcome) as info:
        vm.run()
    call_pc = sum(i.slots for i in ubpf.assemble(f"{setup}\nexit")) - 1
    assert info.value.pc == (call_pc if outcome is CallDepthError else call_pc + 2)  # f's store
    assert bytes(vm.stack.buf) == before


def test_a_written_r10_never_gives_a_callback_a_frame_under_the_stack():
    box: list = []
    src = "add %r10, -3584\nlddw %r2, func(cb)\ncall 181\nexit\ncb:\nstdw [%r10-512], 1\nexit"
    vm = Interpreter(ubpf.assemble(src), helpers=_loop_table(box))
    box.append(vm)
    before = _filled(vm)
    with pytest.raises(CallDepthError) as info:
        vm.run()
    assert info.value.pc == 3
    assert bytes(vm.stack.buf) == before


def test_callbacks_that_rewrite_r10_still_stop_at_the_eighth_frame():
    """Each callback sets r10 far above the stack: the count of callbacks under way still holds."""
    box: list = []
    src = """
        lddw %r10, 0xffffffff00000000
        lddw %r2, func(cb)
        call 181
        exit
    cb:
        lddw %r10, 0xffffffff00000000
        lddw %r2, func(cb)
        call 181
        exit
    """
    started = []
    table = HelperTable()

    def loop(env, n, cb, ctx, flags, r5):
        started.append(cb)
        return box[0].invoke(cb, [0, ctx])

    table.register(181, "bpf_loop", loop)
    vm = Interpreter(ubpf.assemble(src), helpers=table)
    box.append(vm)
    before = _filled(vm)
    with pytest.raises(CallDepthError) as info:
        vm.run()
    assert info.value.pc == 10  # the bpf_loop call of the seventh callback (the eighth frame)
    assert len(started) == 8  # the main program's bpf_loop and seven callbacks'
    assert bytes(vm.stack.buf) == before
    box[0] = vm
    started.clear()
    with pytest.raises(CallDepthError):  # the count went back to zero after the error
        vm.run()
    assert len(started) == 8
