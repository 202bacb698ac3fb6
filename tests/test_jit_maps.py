"""The JIT's native hot path: the hash index, native map calls, helper fast paths, repeat loop.

Native results are compared with the interpreter's (the reference) on twin
kernels, and with the running kernel where bpf(2) works.
"""

from __future__ import annotations

import ctypes
import random
import subprocess
import sys
import time

import pytest

from pybpf.asm import llvm
from pybpf.errors import KernelError, MemoryFault
from pybpf.jit import maps_ir
from pybpf.jit.native import compile_ir
from pybpf.runtime.env import ExecEnv
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType
from pybpf.testing import jit_bench
from pybpf.vm.helpers import HelperTable

KEY_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 20, 33]
M64 = (1 << 64) - 1


def _dump(m) -> dict[bytes, bytes]:
    """Every (key, value) of a pybpf or kernel map, through get_next_key."""
    out, key = {}, None
    while True:
        try:
            key = m.get_next_key(key)
        except KernelError:
            return out
        out[key] = m.lookup(key)


def _kernel_with(map_type, key_size, value_size, max_entries, flags=0, ncpus=1):
    k = Kernel(verify=False, ncpus=ncpus, seed=7)
    m = k.map_create(MapAttr(map_type, key_size, value_size, max_entries, flags, name="m"))
    return k, m


# --- the index ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_size", KEY_SIZES)
def test_index_follows_inserts_and_deletes(key_size):
    _, m = _kernel_with(MapType.HASH, key_size, 8, 300)
    rng = random.Random(key_size)
    pool = [rng.randbytes(key_size) for _ in range(400)]
    for step in range(2000):
        key = rng.choice(pool)
        if rng.random() < 0.6 and len(m) < 300:
            m.update(key, bytes(8))
        elif key in m._elems:
            m.delete(key)
        if step % 97 == 0 or step == 1999:
            index = m.native_index
            assert index.count == len(m)
            for key2 in pool:
                region = m._elems.get(key2)
                assert index.find(key2) == (region.base if region else 0)


def test_index_table_grows_and_keeps_a_fixed_header():
    _, m = _kernel_with(MapType.HASH, 4, 4, 10000)
    header = m.native_index.header.base
    for i in range(5000):
        m.update(i.to_bytes(4, "little"), i.to_bytes(4, "little"))
    assert m.native_index.header.base == header
    assert m.native_index.mask + 1 >= 2 * 5000
    assert all(m.native_index.find(i.to_bytes(4, "little")) for i in range(5000))
    for i in range(0, 5000, 2):
        m.delete(i.to_bytes(4, "little"))
    assert [bool(m.native_index.find(i.to_bytes(4, "little"))) for i in range(8)] == [
        False, True] * 4  # fmt: skip
    m.release()
    assert m.native_index.count == 0 and m.native_index.find((1).to_bytes(4, "little")) == 0


def test_lookup_and_delete_and_failed_updates_keep_the_index():
    _, m = _kernel_with(MapType.HASH, 4, 8, 2)
    a, b, c = (bytes([i, 0, 0, 0]) for i in (1, 2, 3))
    m.update(a, bytes(8))
    m.update(b, bytes(8))
    with pytest.raises(KernelError):
        m.update(c, bytes(8))  # E2BIG: full
    assert m.native_index.find(c) == 0 and m.native_index.count == 2
    m.lookup_and_delete(a)
    assert m.native_index.find(a) == 0 and m.native_index.find(b) == m._elems[b].base


@pytest.mark.parametrize("map_type", [MapType.LRU_HASH, MapType.LRU_PERCPU_HASH])
def test_lru_maps_have_no_native_index(map_type):
    _, m = _kernel_with(map_type, 4, 8, 16)
    assert m.native_index is None and m.jit_shape() is None


def test_key_hash_is_the_documented_function():
    assert maps_ir.key_hash(b"") == maps_ir.HASH_SEED
    h = maps_ir.HASH_SEED ^ 3
    h = ((h ^ 0x030201) * maps_ir.HASH_MUL) & M64
    assert maps_ir.key_hash(b"\x01\x02\x03") == h ^ (h >> 32)


# --- native map calls against the interpreter -----------------------------------------------------
LOOKUP = """
  r2 = r1
  ld_pseudo r1, 1, {m}
  call bpf_map_lookup_elem
  exit
"""


class Twin:
    """A map in a kernel, a program over it, its interpreter and its JIT with hooks."""

    def __init__(self, text, map_type, key_size, value_size, max_entries, flags=0, ncpus=1,
                 checked=False, opt_level=None):  # fmt: skip
        self.kernel, self.map = _kernel_with(map_type, key_size, value_size, max_entries, flags,
                                             ncpus)  # fmt: skip
        insns = llvm.assemble(text.replace("{m}", str(self.map.id)))
        self.prog = self.kernel.prog_load(insns, 6, maps={self.map.id: self.map}, engine="interp")
        self.calls = {}
        table = HelperTable()
        for helper in self.prog.engine.helpers.helpers.values():
            table.register(helper.id, helper.name, self._counting(helper.id, helper.fn))
        self.prog.engine.helpers = table  # jit_engine takes the helpers from here
        self.jit, self.words = jit_bench.jit_engine(self.prog, checked=checked,
                                                    opt_level=opt_level)  # fmt: skip
        self.interp = self.prog.engine

    def _counting(self, ident, fn):
        def call(env, *args):
            self.calls[ident] = self.calls.get(ident, 0) + 1
            return fn(env, *args)

        return call

    def env(self, cpu=0):
        return ExecEnv(memory=self.kernel.space.memory, kernel=self.kernel, program=self.prog,
                       cpu=cpu)  # fmt: skip

    def run(self, engine, memory, cpu=0):
        self.words.cpu.value = cpu
        return engine.run(memory=memory, env=self.env(cpu)).r0


@pytest.mark.parametrize(("checked", "opt_level"), [(False, 1), (True, 1), (False, 2)])
@pytest.mark.parametrize("key_size", KEY_SIZES)
def test_hash_lookup_is_native_and_agrees(key_size, checked, opt_level):
    t = Twin(LOOKUP, MapType.HASH, key_size, 12, 64, checked=checked, opt_level=opt_level)
    rng = random.Random(key_size)
    keys = [rng.randbytes(key_size) for _ in range(40)]
    for key in keys[:20]:
        t.map.update(key, rng.randbytes(12))
    for key in keys:
        expect = t.run(t.interp, key)
        assert (expect != 0) == (key in t.map._elems)
        t.calls.clear()
        assert t.run(t.jit, key) == expect
        assert t.calls == {}  # no Python round trip


def test_array_lookup_is_native_and_bounds_checked():
    t = Twin(LOOKUP, MapType.ARRAY, 4, 12, 10)
    for index in (0, 1, 9, 10, 11, 0xFFFFFFFF, 0x80000000):
        key = index.to_bytes(4, "little")
        t.calls.clear()
        got = t.run(t.jit, key)
        assert got == t.run(t.interp, key)
        assert got == (t.map.regions[0].base + 16 * index if index < 10 else 0)
    assert t.calls == {}  # (the interpreter bound its helpers before counting began)


@pytest.mark.parametrize("opt_level", [1, 2])
@pytest.mark.parametrize("map_type", [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH])
def test_percpu_lookup_uses_the_cpu_word(map_type, opt_level):
    t = Twin(LOOKUP, map_type, 4, 12, 8, ncpus=3, opt_level=opt_level)
    key = (5).to_bytes(4, "little")
    if map_type == MapType.PERCPU_HASH:
        t.map.update(key, bytes(16 * 3))
    for cpu in range(3):
        expect = t.run(t.interp, key, cpu)
        assert expect and t.run(t.jit, key, cpu) == expect


def test_map_pointers_known_only_at_run_time():
    """r1 from memory: the program's own map is still native, another map (one a
    map of maps would yield) takes the trampoline."""
    text = """
  r2 = *(u64 *)(r1 + 8)
  r1 = *(u64 *)(r1 + 0)
  call bpf_map_lookup_elem
  exit
"""
    t = Twin(text + "\n  ld_pseudo r1, 1, {m}\n", MapType.HASH, 4, 8, 8)
    other = t.kernel.map_create(MapAttr(MapType.HASH, 4, 8, 8, name="other"))
    key = t.kernel.space.alloc("key", 4)
    key.view[:4] = b"abcd"
    for m, calls in ((t.map, {}), (other, {1: 1})):
        m.update(b"abcd", bytes(8))
        memory = m.pointer.base.to_bytes(8, "little") + key.base.to_bytes(8, "little")
        t.calls.clear()
        assert t.run(t.jit, memory) == m._elems[b"abcd"].base
        assert t.calls == calls


@pytest.mark.parametrize("checked", [False, True])
def test_checked_hooks_read_keys_natively_only_in_the_stack_or_hot_region(checked):
    t = Twin(LOOKUP.replace("r2 = r1", "r2 = *(u64 *)(r1 + 0)"), MapType.HASH, 4, 8, 8,
             checked=checked)  # fmt: skip
    t.map.update(b"abcd", bytes(8))
    elsewhere = t.kernel.space.alloc("key elsewhere", 4)
    elsewhere.view[:4] = b"abcd"
    t.calls.clear()
    assert t.run(t.jit, elsewhere.base.to_bytes(8, "little")) == t.map._elems[b"abcd"].base
    assert t.calls == ({1: 1} if checked else {})


def test_checked_hooks_fault_like_the_interpreter_on_a_bad_key_pointer():
    t = Twin(LOOKUP.replace("r2 = r1", "r2 = *(u64 *)(r1 + 0)"), MapType.HASH, 4, 8, 8,
             checked=True)  # fmt: skip
    bad = (0x1000).to_bytes(8, "little")
    with pytest.raises(MemoryFault) as interp:
        t.run(t.interp, bad)
    with pytest.raises(MemoryFault) as jit:
        t.run(t.jit, bad)
    assert str(jit.value) == str(interp.value)


def test_lru_lookup_marks_recency_through_the_trampoline():
    t = Twin(LOOKUP, MapType.LRU_HASH, 4, 8, 8)
    a, b = b"aaaa", b"bbbb"
    t.map.update(a, bytes(8))
    t.map.update(b, bytes(8))
    assert list(t.map._recent) == [a, b]
    assert t.run(t.jit, a) == t.map._elems[a].base
    assert list(t.map._recent) == [b, a] and t.calls == {1: 1}


UPDATE = """
  r6 = r1
  r2 = r1
  r3 = r1
  r3 += 16
  r4 = *(u64 *)(r1 + 32)
  ld_pseudo r1, 1, {m}
  call bpf_map_update_elem
  exit
"""


def _present(m, key):
    try:
        return m.lookup(key)
    except KernelError:
        return None


def _update_case(t, engine, present, flags, cpu=0):
    key = b"\x07\x00\x00\x00"
    if present:
        t.map.update(key, bytes(t.map.user_value_size))
    memory = key.ljust(16, b"\0") + bytes(range(1, 17)) + flags.to_bytes(8, "little")
    r0 = t.run(engine, memory, cpu)
    state = _present(t.map, key)
    if state is not None:
        t.map.delete(key)
    return r0, state


@pytest.mark.parametrize(("checked", "opt_level"), [(False, 1), (True, 1), (False, 2)])
@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.PERCPU_HASH])
@pytest.mark.parametrize("present", [False, True])
@pytest.mark.parametrize("flags", [0, 1, 2, 3, 4, 1 << 40])
def test_hash_update_agrees_with_the_interpreter(map_type, present, flags, checked, opt_level):
    t = Twin(UPDATE, map_type, 4, 12, 4, ncpus=2, checked=checked, opt_level=opt_level)
    expect = _update_case(t, t.interp, present, flags, cpu=1)
    t.calls.clear()
    got = _update_case(t, t.jit, present, flags, cpu=1)
    assert got == expect
    native = (present and flags in (0, 1, 2)) or (not present and flags == 2)
    assert t.calls == ({} if native else {2: 1})


@pytest.mark.parametrize("opt_level", [1, 2])
@pytest.mark.parametrize("index", [0, 3, 4, 100])
@pytest.mark.parametrize("flags", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("map_flags", [0, MapFlag.RDONLY_PROG])
def test_array_update_agrees_with_the_interpreter(index, flags, map_flags, opt_level):
    t = Twin(UPDATE, MapType.ARRAY, 4, 12, 4, flags=map_flags, opt_level=opt_level)
    memory = index.to_bytes(4, "little").ljust(16, b"\0") + bytes(range(1, 17)) \
        + flags.to_bytes(8, "little")  # fmt: skip
    results = []
    for engine in (t.interp, t.jit):
        for i in range(4):
            t.map.update(i.to_bytes(4, "little"), bytes(12))
        r0 = t.run(engine, memory)
        results.append((r0, [t.map.lookup(i.to_bytes(4, "little")) for i in range(4)]))
    assert results[0] == results[1]
    assert results[0][0] != 0 or index < 4


# --- helper fast paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_ktime_prandom_and_cpu_are_native(opt_level):
    text = """
  r9 = r1
  call bpf_ktime_get_ns
  *(u64 *)(r9 + 0) = r0
  call bpf_get_prandom_u32
  *(u64 *)(r9 + 8) = r0
  call bpf_get_prandom_u32
  *(u64 *)(r9 + 16) = r0
  call bpf_get_smp_processor_id
  *(u64 *)(r9 + 24) = r0
  ld_pseudo r1, 1, {m}
  r0 = 0
  exit
"""
    t = Twin(text, MapType.ARRAY, 4, 4, 1, opt_level=opt_level)
    out = bytearray(32)
    before = time.monotonic_ns() - t.kernel.boot
    state = t.words.prandom.value
    t.calls.clear()
    t.run(t.jit, out, cpu=5)
    after = time.monotonic_ns() - t.kernel.boot
    now, r1, r2, cpu = (int.from_bytes(out[i : i + 8], "little") for i in (0, 8, 16, 24))
    assert before <= now <= after
    assert r1 < 1 << 32 and r2 < 1 << 32 and r1 != r2
    assert t.words.prandom.value != state
    assert cpu == 5 and t.calls == {}


KTIME_LOOP = """
import sys
from pybpf.testing import jit_bench
text = "  r6 = 0\\nloop:\\n  call bpf_ktime_get_ns\\n  r6 += 1\\n" \\
       "  if r6 < 1000000 goto loop\\n  r0 = 2\\n  exit\\n"
# a million iterations: beyond any verifier's limit, so loaded unverified
side = jit_bench.PybpfSide(jit_bench.BenchProgram("kt", "", text), opt_level=int(sys.argv[1]),
                           verify=False)
print(side.run(1)[0])
"""


@pytest.mark.parametrize("opt_level", [0, 1])
def test_a_native_helper_in_a_long_loop_keeps_the_native_stack(opt_level):
    # an alloca per call would grow the stack by 16 MB here and crash the process
    done = subprocess.run([sys.executable, "-c", KTIME_LOOP, str(opt_level)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr


def test_without_words_the_helpers_keep_the_trampoline():
    hooks, prelude = maps_ir.native_calls(())
    assert set(hooks) == {maps_ir.CSUM_DIFF} and "clock_gettime" in prelude


# --- the repeat driver ----------------------------------------------------------------------------
def test_repeat_driver_counts_and_stops_on_a_status():
    entry = """
define i64 @count(ptr %ctx) {
  %n = load i64, ptr %ctx
  %m = add i64 %n, 1
  store i64 %m, ptr %ctx
  %p = getelementptr i64, ptr %ctx, i64 1
  %stop = load i64, ptr %p
  %hit = icmp eq i64 %m, %stop
  %r = select i1 %hit, i64 2, i64 0
  ret i64 %r
}
"""
    module = compile_ir(entry)
    try:
        driver = maps_ir.RepeatDriver.shared()
        ctx = (ctypes.c_uint64 * 2)(0, 0)
        result = driver.run(module.address("count"), ctypes.addressof(ctx), 1000)
        assert (result.status, result.calls, ctx[0]) == (0, 1000, 1000)
        ctx[0], ctx[1] = 0, 3
        stopped = driver.run(module.address("count"), ctypes.addressof(ctx), 10)
        assert (stopped.status, stopped.calls) == (2, 3)
        ctx[0], ctx[1] = 0, 0
        assert driver.run(module.address("count"), ctypes.addressof(ctx), 0).calls == 1
    finally:
        module.close()


# --- the benchmark programs, against the kernel ---------------------------------------------------
@pytest.mark.parametrize("bench", jit_bench.PROGRAMS, ids=lambda b: b.name)
def test_bench_program_runs_natively_as_the_interpreter(bench):
    side = jit_bench.PybpfSide(bench)
    try:
        r0 = side.run(3)[0]
        interp = jit_bench.PybpfSide(bench)
        from pybpf.runtime.testrun import test_run

        assert test_run(interp.prog, jit_bench.PACKET, repeat=3).retval == r0
        for name, m in side.maps.items():
            assert _dump(m) == _dump(interp.maps[name])
    finally:
        side.close()


def bench_outcome(side) -> dict:
    """The retval of five runs of a benchmark and the maps it leaves, JSON-ready."""
    retval = side.run(5)[0]
    maps = {name: {k.hex(): v.hex() for k, v in sorted(_dump(m).items())}
            for name, m in side.maps.items()}  # fmt: skip
    return {"retval": retval, "maps": maps}


def kernel_bench_outcome(bench) -> dict:
    """The same in the live kernel (a probe for kernel_facts)."""
    theirs = jit_bench.KernelSide(bench)
    try:
        return bench_outcome(theirs)
    finally:
        theirs.close()


@pytest.mark.parametrize("bench", jit_bench.PROGRAMS, ids=lambda b: b.name)
def test_bench_program_agrees_with_the_kernel(kernel_facts, bench):
    ours = jit_bench.PybpfSide(bench)
    try:
        kernel_facts.check(f"bench/{bench.name}", bench_outcome(ours),
                           lambda: kernel_bench_outcome(bench))
    finally:
        ours.close()


def test_bench_report_prints_ratios_and_the_geometric_mean():
    rows = [jit_bench.Row("a", 200.0, 100.0, True), jit_bench.Row("b", 50.0, 100.0, True)]
    lines = []
    jit_bench.report(rows, None, lines.append)
    assert "2.00" in lines[1] and "0.50" in lines[2]
    assert lines[-1].startswith("geometric mean of pybpf/kernel: 1.00")
    lines.clear()
    jit_bench.report([jit_bench.Row("a", 1.0, None, None)], "no bpf(2)", lines.append)
    assert lines[-1] == "kernel column skipped: no bpf(2)"


CSUM = """
  r6 = r1
  r2 = *(u64 *)(r6 + 128)
  r4 = *(u64 *)(r6 + 136)
  r5 = *(u64 *)(r6 + 144)
  r1 = *(u64 *)(r6 + 152)
  r3 = *(u64 *)(r6 + 160)
  call bpf_csum_diff
  exit
"""
CSUM_CASES = [(0, 0), (4, 0), (0, 4), (4, 4), (8, 20), (20, 8), (36, 40), (64, 64), (12, 0),
              (0, 60), (3, 4), (4, 6), (1, 0)]  # fmt: skip


@pytest.mark.parametrize(("checked", "opt_level"), [(False, 1), (True, 1), (False, 2)])
@pytest.mark.parametrize(("from_size", "to_size"), CSUM_CASES)
def test_csum_diff_is_native_and_agrees(from_size, to_size, checked, opt_level):
    t = Twin(CSUM, MapType.ARRAY, 4, 4, 1, checked=checked, opt_level=opt_level)
    rng = random.Random(from_size * 100 + to_size)
    for seed in (0, 0xFFFF, 0xFFFFFFFF, rng.getrandbits(64)):
        data = bytearray(rng.randbytes(128) + bytes(40))
        for at, value in ((128, from_size), (136, to_size), (144, seed)):
            data[at : at + 8] = value.to_bytes(8, "little")
        results = [_run_with_pointers(t, engine, data) for engine in (t.interp, t.jit)]
        assert results[0] == results[1]
    native = not (from_size | to_size) & 3
    assert t.calls == ({} if native else {28: 4})


def _run_with_pointers(t, engine, memory):
    """Run CSUM with from/to pointing into the run's own memory region (r1)."""
    region = t.kernel.space.alloc("csum input", len(memory))
    region.view[:] = memory
    region.view[152:160] = region.base.to_bytes(8, "little")
    region.view[160:168] = (region.base + 64).to_bytes(8, "little")
    try:
        t.words.cpu.value = 0
        engine.set_hot(region)
        return engine.run(args=[region.base], env=t.env()).r0
    finally:
        engine.set_hot(None)
        t.kernel.space.free(region)


# --- BPF_PROG_TEST_RUN's repeat through the native loop ------------------------------------------
def _loaded(bench, engine):
    kernel = Kernel(verify=False, ncpus=1, seed=3)
    maps = {m.name: kernel.map_create(MapAttr(m.map_type, m.key_size, m.value_size,
                                              m.max_entries, name=m.name))
            for m in bench.maps}  # fmt: skip
    insns = bench.assemble({name: m.id for name, m in maps.items()})
    prog = kernel.prog_load(insns, 6, maps={m.id: m for m in maps.values()}, engine=engine)
    return prog, maps


@pytest.mark.parametrize("bench", jit_bench.PROGRAMS, ids=lambda b: b.name)
def test_test_run_repeat_is_native_under_the_jit_and_agrees(bench):
    from pybpf.runtime import testrun

    results = []
    for engine in ("interp", "jit"):
        prog, maps = _loaded(bench, engine)
        assert testrun._natively_repeatable(prog) == (engine == "jit")
        result = testrun.test_run(prog, jit_bench.PACKET, repeat=7)
        results.append((result.retval, result.data_out, {n: _dump(m) for n, m in maps.items()}))
    assert results[0] == results[1]


def test_tail_calls_keep_the_python_loop():
    from pybpf.runtime import testrun

    prog, _ = _loaded(jit_bench.BenchProgram("tail", "", "  r2 = 0\n  r3 = 0\n"
                                             "  call bpf_tail_call\n  r0 = 2\n  exit\n"), "jit")
    assert not testrun._natively_repeatable(prog)
    assert testrun.test_run(prog, jit_bench.PACKET, repeat=3).retval == 2


def test_a_fault_in_the_native_loop_raises_the_interpreters_error():
    from pybpf.runtime import testrun

    bench = jit_bench.BenchProgram("fault", "", "  r1 = 4096\n  r0 = *(u64 *)(r1 + 0)\n"
                                   "  exit\n")  # fmt: skip
    errors = []
    for engine in ("interp", "jit"):
        prog, _ = _loaded(bench, engine)
        with pytest.raises(MemoryFault) as err:
            testrun.test_run(prog, jit_bench.PACKET, repeat=5)
        fault = err.value  # (the nearest region it names depends on where buffers landed)
        errors.append((fault.pc, fault.address, fault.size, fault.write))
    assert errors[0] == errors[1] == (1, 4096, 8, False)


def test_programs_loaded_for_the_jit_get_the_hot_path():
    by_name = {b.name: b for b in jit_bench.PROGRAMS}
    prog, _ = _loaded(by_name["hash-count"], "jit")
    assert set(prog.native_hooks.native_calls) == {1, 2}
    assert not {1, 2} & prog.engine.translation.helper_ids
    plain, _ = _loaded(by_name["arith-loop"], "jit")
    assert plain.native_hooks.native_calls == {}  # nothing to hook: the program stays cacheable
    interp, _ = _loaded(by_name["hash-count"], "interp")
    assert interp.native_hooks is None


@pytest.mark.parametrize("cpu", [0, 1])
def test_test_runs_tell_native_code_their_cpu(cpu):
    from pybpf.runtime import testrun

    bench = jit_bench.BenchProgram("cpu", "", "  call bpf_get_smp_processor_id\n  exit\n")
    prog, _ = _loaded(bench, "jit")
    assert 8 in prog.native_hooks.native_calls
    assert testrun.test_run(prog, jit_bench.PACKET, repeat=3, cpu=cpu).retval == cpu


def test_precompiled_hot_functions_come_from_the_compile_cache(tmp_path, monkeypatch):
    from pybpf.jit import native

    monkeypatch.setenv("PYBPF_CACHE_DIR", str(tmp_path))
    shape = maps_ir.HashShape(pointer=1 << 20, header=2 << 20, key_size=27, value_size=5,
                              stride=8)  # sizes no other test compiles  # fmt: skip
    maps_ir.native_calls([shape], opt_level=1, called=[1, 2])
    assert len(list((tmp_path / "jit").glob("*.o"))) == 1
    monkeypatch.setattr(maps_ir._Library, "_compiled", {})  # as in a new process

    compile_ir = native.compile_ir

    def refuse(text, **kwargs):
        if "pybpf.hash" in text:
            raise AssertionError("LLVM ran although the cache had the object")
        return compile_ir(text, **kwargs)

    monkeypatch.setattr(native, "compile_ir", refuse)
    hooks, prelude = maps_ir.native_calls([shape], opt_level=1, called=[1, 2])
    assert set(hooks) == {1, 2} and "pybpf.hash" not in prelude


def test_tail_call_targets_see_the_runs_cpu():
    from pybpf.runtime import testrun

    kernel = Kernel(verify=False, ncpus=2, seed=3)
    target = kernel.prog_load(llvm.assemble("  call bpf_get_smp_processor_id\n  exit\n"), 6,
                              name="target", engine="jit")  # fmt: skip
    table = kernel.map_create(MapAttr(MapType.PROG_ARRAY, 4, 4, 1, name="table"))
    table.resolve_fd = {7: target}.get
    table.update(bytes(4), (7).to_bytes(4, "little"))
    entry = kernel.prog_load(llvm.assemble(f"""
  ld_pseudo r2, 1, {table.id}
  r3 = 0
  call bpf_tail_call
  r0 = 9
  exit
"""), 6, name="entry", maps={table.id: table}, engine="jit")  # fmt: skip
    for cpu in (1, 0):
        assert testrun.test_run(entry, jit_bench.PACKET, repeat=2, cpu=cpu).retval == cpu


def test_maps_whose_programs_see_other_values_keep_the_trampoline():
    kernel = Kernel(verify=False, ncpus=1, seed=3)
    inner = kernel.map_create(MapAttr(MapType.ARRAY, 4, 8, 2, name="inner"))
    outer = kernel.map_create(MapAttr(MapType.HASH_OF_MAPS, 4, 4, 4, name="outer",
                                      inner_map=inner))  # fmt: skip
    outer.set(bytes(4), inner)
    assert outer.jit_shape() is None  # a lookup yields the inner map, not the value buffer
    text = f"""
  *(u32 *)(r10 - 4) = 0
  ld_pseudo r1, 1, {outer.id}
  r2 = r10
  r2 += -4
  call bpf_map_lookup_elem
  exit
"""
    results = []
    for engine in ("interp", "jit"):
        prog = kernel.prog_load(llvm.assemble(text), 6, maps={outer.id: outer}, engine=engine)
        env = ExecEnv(memory=kernel.space.memory, kernel=kernel, program=prog)
        results.append(prog.engine.run(args=[0], env=env).r0)
    assert results[0] == results[1] == inner.pointer.base


SCRIPT = """
  r6 = r1
  r7 = 0
  r8 = 0
loop:
  r2 = r7
  r2 <<= 4
  r2 += r6
  r3 = *(u32 *)(r2 + 4)
  *(u32 *)(r10 - 4) = r3
  r4 = *(u64 *)(r2 + 8)
  *(u64 *)(r10 - 16) = r4
  r9 = *(u8 *)(r2 + 0)
  r5 = *(u8 *)(r2 + 1)
  if r9 == 0 goto lookup
  if r9 == 1 goto update
  ld_pseudo r1, 1, {m}
  r2 = r10
  r2 += -4
  call bpf_map_delete_elem
  goto acc
lookup:
  ld_pseudo r1, 1, {m}
  r2 = r10
  r2 += -4
  call bpf_map_lookup_elem
  if r0 == 0 goto missing
  r0 = *(u64 *)(r0 + 0)
  goto acc
missing:
  r0 = 12345
  goto acc
update:
  ld_pseudo r1, 1, {m}
  r2 = r10
  r2 += -4
  r3 = r10
  r3 += -16
  r4 = r5
  call bpf_map_update_elem
acc:
  r8 *= 31
  r8 += r0
  r7 += 1
  if r7 < 200 goto loop
  r0 = r8
  exit
"""


@pytest.mark.parametrize("checked", [False, True])
@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.PERCPU_HASH, MapType.ARRAY,
                                      MapType.PERCPU_ARRAY, MapType.LRU_HASH])
@pytest.mark.parametrize("seed", range(4))
def test_random_map_scripts_agree_with_the_interpreter(map_type, seed, checked):
    """200 random lookups, updates (flags 0..3) and deletes of 24 keys in a 16-entry map."""
    rng = random.Random(seed)
    script = bytearray()
    for _ in range(200):
        op, flags = rng.choice((0, 0, 1, 1, 2)), rng.choice((0, 0, 1, 2, 3))
        script += bytes([op, flags, 0, 0]) + rng.randrange(24).to_bytes(4, "little") \
            + rng.getrandbits(64).to_bytes(8, "little")  # fmt: skip
    outcomes = []
    for engine in ("interp", "jit"):
        t = Twin(SCRIPT, map_type, 4, 8, 16, ncpus=2, checked=checked)
        r0 = t.run(t.interp if engine == "interp" else t.jit, bytes(script), cpu=1)
        outcomes.append((r0, _dump(t.map)))
    assert outcomes[0] == outcomes[1] and outcomes[0][1]  # (and the script left elements)
