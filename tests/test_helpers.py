"""The kernel helpers of the simulated kernel: semantics through real programs.

Two paths, named in each test's docstring:

* **program** — the helper is called by an assembled program loaded with
  ``Kernel.prog_load`` (XDP unless said otherwise) and run with
  BPF_PROG_TEST_RUN (or ``run_context`` for kprobes); results come back in
  r0 (the 32-bit retval) or in the one-entry array ``out`` (fd 9) the
  program writes through a direct value pointer.
* **direct** — pure functions (the printf renderer, strtoull) called with an
  ``ExecEnv`` built by hand, to cover many format cases cheaply.

Maps another engineer is still writing (hash, queue, ring buffer, perf event
array) are replaced by small fakes implementing the program-side API the
helpers call (``prog_lookup`` / ``prog_push`` / ``reserve`` / ``output``...),
registered for their map type only while the real type is missing; the
``test_real_*`` integration tests run the same programs on the real map
types and skip, saying so, until those types are registered.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import random
import re
import struct

import pytest

from pybpf.asm import ubpf
from pybpf.errors import KernelError
from pybpf.runtime.env import ExecEnv
from pybpf.runtime.helpers import HELPERS, Arg, groups
from pybpf.runtime.helpers.locks import SpinLockError
from pybpf.runtime.helpers.printk import bprintf
from pybpf.runtime.helpers.strings import strtoull
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.kmem import KernelMemory, kmem_of
from pybpf.runtime.maps import MAP_CLASSES
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType
from pybpf.runtime.progtypes import ProgType
from pybpf.runtime.testrun import run_context
from pybpf.runtime.testrun import test_run as run_test

OUT_FD = 9
M64 = (1 << 64) - 1


def neg(err: int) -> int:
    """-err as the 32-bit retval shows it."""
    return -err & 0xFFFFFFFF


def stack(data: bytes, at: int) -> str:
    """Assembly storing ``data`` at [r10+at] (8 bytes at a time, through r1)."""
    data += bytes(-len(data) % 8)
    return "\n".join(
        f"lddw %r1, {int.from_bytes(data[i : i + 8], 'little'):#x}\nstxdw [%r10{at + i:+d}], %r1"
        for i in range(0, len(data), 8)
    )


class Box:
    """A kernel, an ``out`` array (fd 9, 64 bytes) and a way to run programs."""

    def __init__(self, **kernel_kw) -> None:
        # the helpers' own guards are under test: programs load without the verifier
        self.kernel = Kernel(**{"verify": False, **kernel_kw})
        self.out = self.kernel.map_create(MapAttr(MapType.ARRAY, 4, 64, 1, 0, "out"))
        self.maps: dict[int, Map] = {OUT_FD: self.out}

    def map(self, fd: int, map_type: MapType, key: int, value: int, entries: int,
            flags: int = 0, name: str = "m") -> Map:  # fmt: skip
        m = self.kernel.map_create(MapAttr(map_type, key, value, entries, flags, name))
        self.maps[fd] = m
        return m

    def load(self, src: str, prog_type=ProgType.XDP, license: str = "GPL"):
        return self.kernel.prog_load(ubpf.assemble(src), prog_type, maps=self.maps,
                                     license=license)  # fmt: skip

    def run(self, src: str, prog_type=ProgType.XDP) -> int:
        prog = self.load(src, prog_type)
        if prog_type == ProgType.XDP:
            return run_test(prog, data_in=bytes(64)).retval
        from pybpf.runtime.context import kprobe_ctx

        return run_context(prog, kprobe_ctx())

    def out_bytes(self, n: int = 64) -> bytes:
        return self.out.lookup(bytes(4))[:n]

    def out_u64(self, index: int = 0) -> int:
        return struct.unpack_from("<Q", self.out_bytes(), 8 * index)[0]


OUT = f"lddw %r6, map_value({OUT_FD}, 0)"  # r6 = &out


# --- the registry ----------------------------------------------------------------------------
def test_prototypes_and_gpl_flags_follow_the_kernel():
    by_name = {h.name: h for h in HELPERS.values()}
    gpl = {"bpf_trace_printk", "bpf_trace_vprintk", "bpf_snprintf", "bpf_probe_read",
           "bpf_probe_read_kernel", "bpf_probe_read_user", "bpf_probe_read_str",
           "bpf_probe_read_kernel_str", "bpf_probe_read_user_str", "bpf_perf_event_output",
           "bpf_get_func_ip"}  # fmt: skip
    mine = {
        "bpf_map_lookup_elem", "bpf_map_update_elem", "bpf_map_delete_elem", "bpf_map_push_elem",
        "bpf_map_pop_elem", "bpf_map_peek_elem", "bpf_ktime_get_ns", "bpf_ktime_get_boot_ns",
        "bpf_ktime_get_coarse_ns", "bpf_jiffies64", "bpf_get_prandom_u32",
        "bpf_get_smp_processor_id", "bpf_get_numa_node_id", "bpf_get_current_pid_tgid",
        "bpf_get_current_uid_gid", "bpf_get_current_comm", "bpf_ringbuf_output",
        "bpf_ringbuf_reserve", "bpf_ringbuf_submit", "bpf_ringbuf_discard", "bpf_ringbuf_query",
        "bpf_loop", "bpf_for_each_map_elem", "bpf_strncmp", "bpf_strtol", "bpf_strtoul",
        "bpf_spin_lock", "bpf_spin_unlock", "bpf_get_attach_cookie", *gpl,
    }  # fmt: skip
    assert mine <= set(by_name)
    assert {n for n in mine if by_name[n].gpl_only} == gpl
    assert 12 not in HELPERS  # tail_call is the interpreter's
    assert by_name["bpf_map_update_elem"].args == (
        Arg.CONST_MAP_PTR, Arg.PTR_TO_MAP_KEY, Arg.PTR_TO_MAP_VALUE, Arg.ANYTHING)  # fmt: skip
    assert by_name["bpf_loop"].args[1] is Arg.PTR_TO_FUNC
    assert by_name["bpf_strncmp"].args[2] is Arg.PTR_TO_CONST_STR


def test_groups_nest_as_the_kernel_builds_them():
    """direct: BASE ⊂ TRACING, NET; the tiers partition BASE."""
    assert groups.BASE < groups.TRACING and groups.BASE < groups.NET
    tiers = (groups.BASE_UNPRIV, groups.BASE_BPF, groups.BASE_PERFMON)
    assert sum(map(len, tiers)) == len(groups.BASE)
    assert {4, 45} == groups.TRACING - groups.BASE  # probe_read, probe_read_str


GROUP_PROG_TYPES = {"socket_filter": 1, "kprobe": 2, "xdp": 6, "cgroup_device": 15}


def kernel_allows(prog_type: int, ident: int) -> bool:
    """Whether the live kernel lets ``prog_type`` call helper ``ident`` (a kernel_facts probe)."""
    from pybpf.kernel import linux

    try:
        linux.prog_load(ubpf.assemble(f"call {ident}\nmov %r0, 0\nexit"), prog_type).close()
    except KernelError as err:
        if re.search(r"cannot use helper|unknown func|not supported", err.log):
            return False
    return True


def test_groups_match_the_kernel(kernel_facts):
    """The helpers Linux accepts in socket_filter, kprobe, xdp, cgroup_device programs."""
    def allowed(name: str, prog_type: int) -> set[int]:
        return {ident for ident in range(1, 212) if kernel_facts.fact(
            f"allowed/{name}/{ident}", functools.partial(kernel_allows, prog_type, ident))}

    sets = {name: allowed(name, prog_type) for name, prog_type in GROUP_PROG_TYPES.items()}
    assert set.intersection(*sets.values()) == groups.BASE
    kprobe = groups.TRACING | groups.TRACING_STACK | groups.KPROBE_EXTRA
    assert sets["kprobe"] == kprobe, json.dumps(sorted(sets["kprobe"] ^ kprobe))
    assert sets["socket_filter"] >= groups.NET and sets["xdp"] >= groups.NET


# --- maps -------------------------------------------------------------------------------------
def test_map_helpers_on_an_array():
    """program: update, lookup, delete (EINVAL on arrays), an index past the end."""
    box = Box()
    box.map(3, MapType.ARRAY, 4, 8, 4, name="arr")
    src = f"""
        {OUT}
        stw [%r10-4], 2
        stdw [%r10-16], 77
        lddw %r1, map_fd(3)
        mov %r2, %r10
        add %r2, -4
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        call 2
        stxdw [%r6+0], %r0
        lddw %r1, map_fd(3)
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, miss
        ldxdw %r1, [%r0+0]
        stxdw [%r6+8], %r1
    miss:
        lddw %r1, map_fd(3)
        mov %r2, %r10
        add %r2, -4
        call 3
        stxdw [%r6+16], %r0
        stw [%r10-4], 9
        lddw %r1, map_fd(3)
        mov %r2, %r10
        add %r2, -4
        call 1
        stxdw [%r6+24], %r0
        mov %r1, %r10
        add %r1, -16
        mov %r2, %r10
        add %r2, -4
        call 1
        stxdw [%r6+32], %r0
        mov %r0, 0
        exit
    """
    box.run(src)
    assert [box.out_u64(i) for i in range(5)] == [0, 77, -errno.EINVAL & M64, 0, 0]
    assert box.maps[3].lookup((2).to_bytes(4, "little")) == (77).to_bytes(8, "little")


class FakeHash(Map):
    """A hash map reduced to what the helpers use (prog_* and get_next_key)."""

    def __init__(self, attr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.elems: dict[bytes, object] = {}

    def prog_lookup(self, key_addr, *, cpu=0):
        region = self.elems.get(self.read(key_addr, self.key_size))
        return region.base if region else 0

    def prog_update(self, key_addr, value_addr, flags, *, cpu=0):
        key, value = self.read(key_addr, self.key_size), self.read(value_addr, self.value_size)
        if key not in self.elems:
            self.elems[key] = self.space.alloc("fake-hash", self.value_size)
        self.elems[key].view[:] = value
        return 0

    def prog_delete(self, key_addr, *, cpu=0):
        region = self.elems.pop(self.read(key_addr, self.key_size), None)
        if region is None:
            return -errno.ENOENT
        self.space.free(region)
        return 0

    def update(self, key, value, flags=0):
        if key not in self.elems:
            self.elems[key] = self.space.alloc("fake-hash", self.value_size)
        self.elems[key].view[:] = value

    def lookup(self, key, flags=0):
        return bytes(self.elems[key].view)

    def get_next_key(self, key):
        keys = list(self.elems)
        i = keys.index(key) + 1 if key in keys else 0
        if i >= len(keys):
            raise KernelError("end", errno=errno.ENOENT)
        return keys[i]


class FakeQueue(Map):
    """BPF_MAP_TYPE_QUEUE's program face: prog_push / prog_pop / prog_peek."""

    def __init__(self, attr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.items: list[bytes] = []

    def prog_push(self, value_addr, flags):
        if len(self.items) >= self.max_entries:
            if not flags & 2:  # BPF_EXIST: drop the oldest
                return -errno.E2BIG
            self.items.pop(0)
        self.items.append(self.read(value_addr, self.value_size))
        return 0

    def prog_pop(self, value_addr):
        if not self.items:
            return -errno.ENOENT
        self.space.memory.write(value_addr, self.items.pop(0))
        return 0

    def prog_peek(self, value_addr):
        if not self.items:
            return -errno.ENOENT
        self.space.memory.write(value_addr, self.items[0])
        return 0


class FakeRingbuf(Map):
    """A ring buffer: records in reservation order, consumed up to the first busy one."""

    def __init__(self, attr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.records: list[list] = []  # [region, state] with state busy/done/discarded
        self.consumer_pos = self.producer_pos = 0

    def check_attr(self, attr):
        pass

    def reserve(self, size):
        if self.producer_pos - self.consumer_pos + size + 8 > self.max_entries:
            return 0
        region = self.space.alloc("fake-rb", size)
        self.records.append([region, "busy"])
        self.producer_pos += (size + 8 + 7) & ~7
        return region.base

    def _find(self, address):
        return next(r for r in self.records if r[0].base == address)

    def submit(self, address):
        self._find(address)[1] = "done"

    def discard(self, address):
        self._find(address)[1] = "discarded"

    def output(self, data):
        address = self.reserve(len(data))
        if not address:
            return -errno.EAGAIN
        self.space.memory.write(address, data)
        self.submit(address)
        return 0

    def consume(self):
        out = []
        while self.records and self.records[0][1] != "busy":
            region, state = self.records.pop(0)
            self.consumer_pos += (region.size + 8 + 7) & ~7
            if state == "done":
                out.append(bytes(region.view))
            self.space.free(region)
        return out


class FakePerfArray(Map):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY: ``output(index, data)``, events open on some slots."""

    def __init__(self, attr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.open = set(range(attr.max_entries))
        self.samples: list[tuple[int, bytes]] = []

    def output(self, index, data, *, cpu=0):
        if index not in self.open:
            return -errno.ENOENT
        if index != cpu:
            return -errno.EOPNOTSUPP
        self.samples.append((index, data))
        return 0

    def read(self):
        out, self.samples = self.samples, []
        return out


@pytest.fixture
def fakes(monkeypatch):
    """Register the fakes in place of the real map types for one test.

    The fakes pin the helpers' side of the contract (what they call on a map and
    what they do with the answers) independently of the real maps, which the
    ``test_real_*`` tests exercise.
    """
    for map_type, cls in ((MapType.HASH, FakeHash), (MapType.QUEUE, FakeQueue),
                          (MapType.RINGBUF, FakeRingbuf),
                          (MapType.PERF_EVENT_ARRAY, FakePerfArray)):  # fmt: skip
        monkeypatch.setitem(MAP_CLASSES, map_type, cls)


def real(map_type: MapType) -> None:
    if map_type not in MAP_CLASSES:
        pytest.skip(f"BPF_MAP_TYPE_{map_type.name} is not implemented yet (maps engineer); "
                    "the fake-map test covers the helper meanwhile")  # fmt: skip


def test_a_register_without_a_map_is_einval():
    """program: a stack pointer where a map pointer belongs (the verifier would refuse)."""
    box = Box()
    src = f"""
        {OUT}
        mov %r1, %r10
        add %r1, -8
        mov %r2, %r1
        mov %r3, %r1
        mov %r4, 0
        call 2
        stxdw [%r6+0], %r0
        mov %r1, %r10
        add %r1, -8
        mov %r2, %r1
        call 87
        stxdw [%r6+8], %r0
        mov %r0, 0
        exit
    """
    box.run(src)
    assert box.out_u64(0) == box.out_u64(1) == -errno.EINVAL & M64


QUEUE_PROG = f"""
    {OUT}
    stdw [%r10-8], 11
    lddw %r1, map_fd(3)
    mov %r2, %r10
    add %r2, -8
    mov %r3, 0
    call 87
    stdw [%r10-8], 22
    lddw %r1, map_fd(3)
    mov %r2, %r10
    add %r2, -8
    mov %r3, 0
    call 87
    lddw %r1, map_fd(3)
    mov %r2, %r6
    call 89
    lddw %r1, map_fd(3)
    mov %r2, %r6
    add %r2, 8
    call 88
    lddw %r1, map_fd(3)
    mov %r2, %r6
    add %r2, 16
    call 88
    lddw %r1, map_fd(3)
    mov %r2, %r6
    add %r2, 24
    call 88
    exit
"""


def _queue(box: Box) -> None:
    box.map(3, MapType.QUEUE, 0, 8, 4, name="q")
    assert box.run(QUEUE_PROG) == neg(errno.ENOENT)  # the third pop: empty
    assert [box.out_u64(i) for i in range(4)] == [11, 11, 22, 0]


def test_queue_push_pop_peek(fakes):
    """program (fake queue): push 11, 22; peek 11; pop 11, 22; pop of an empty queue."""
    _queue(Box())


def test_real_queue_push_pop_peek():
    """program (real BPF_MAP_TYPE_QUEUE)."""
    real(MapType.QUEUE)
    _queue(Box())


# --- clocks, task, random --------------------------------------------------------------------
def test_clocks_and_jiffies():
    """program: ktime_get_ns <= boot_ns, coarse is a whole tick, jiffies after INITIAL."""
    box = Box()
    src = f"""
        {OUT}
        call 5
        stxdw [%r6+0], %r0
        call 125
        stxdw [%r6+8], %r0
        call 160
        stxdw [%r6+16], %r0
        call 118
        stxdw [%r6+24], %r0
        mov %r0, 0
        exit
    """
    box.run(src)
    mono, boot, coarse, jiffies = (box.out_u64(i) for i in range(4))
    assert 0 < mono <= boot and coarse % 1_000_000 == 0 and coarse <= box.kernel.ktime_ns()
    assert jiffies >= (-300_000) & 0xFFFFFFFF


def test_prandom_is_deterministic_under_a_seed():
    """program: three get_prandom_u32 per run match Random(seed).getrandbits(32)."""
    src = f"""
        {OUT}
        call 7
        stxdw [%r6+0], %r0
        call 7
        stxdw [%r6+8], %r0
        call 7
        stxdw [%r6+16], %r0
        mov %r0, 0
        exit
    """
    runs = []
    for _ in range(2):
        box = Box(seed=1234)
        box.run(src)
        runs.append([box.out_u64(i) for i in range(3)])
    expect = random.Random(1234)
    assert runs[0] == runs[1] == [expect.getrandbits(32) for _ in range(3)]
    other = Box(seed=99)
    other.run(src)
    assert [other.out_u64(i) for i in range(3)] != runs[0]


def test_current_task_cpu_and_comm():
    """program: pid_tgid, uid_gid, smp id, numa node, comm into 8 and 4 bytes."""
    box = Box()
    src = f"""
        {OUT}
        call 14
        stxdw [%r6+0], %r0
        call 15
        stxdw [%r6+8], %r0
        call 8
        stxdw [%r6+16], %r0
        call 42
        stxdw [%r6+24], %r0
        mov %r1, %r6
        add %r1, 32
        mov %r2, 8
        call 16
        mov %r1, %r6
        add %r1, 40
        mov %r2, 4
        call 16
        exit
    """
    box.kernel.task = type("Task", (), dict(pid=4242, tgid=4200, uid=1000, gid=100,
                                            comm="a_very_long_task_name"))()  # fmt: skip
    assert box.run(src) == 0
    assert box.out_u64(0) == 4200 << 32 | 4242
    assert box.out_u64(1) == 100 << 32 | 1000
    assert box.out_u64(2) == 0 and box.out_u64(3) == 0
    assert box.out_bytes()[32:48] == b"a_very_\0" + b"a_v\0" + bytes(4)
    del box.kernel.task
    box.run(src)
    assert box.out_u64(0) == os.getpid() << 32 | os.getpid()
    assert box.out_u64(1) == os.getgid() << 32 | os.getuid()


# --- printf ------------------------------------------------------------------------------------
LINE = re.compile(r"^ *\S+-\d+ +\[(\d{3})\] d\.\.21 +\d+\.\d{6}: bpf_trace_printk: (.*)$")


def printk_prog(fmt: bytes, args=(0, 0, 0), size: int | None = None) -> str:
    size = len(fmt) if size is None else size
    return f"""
        {stack(fmt, -64)}
        mov %r1, %r10
        add %r1, -64
        mov %r2, {size}
        lddw %r3, {args[0] & M64:#x}
        lddw %r4, {args[1] & M64:#x}
        lddw %r5, {args[2] & M64:#x}
        call 6
        exit
    """


def test_trace_printk_writes_the_kernel_line_and_returns_its_length():
    """program: the hello format, negative and hex arguments, the trace-pipe layout."""
    box = Box()
    fmt = b"Hello World %d u=%u x=%llx\0"
    assert box.run(printk_prog(fmt, (-5, -1, 0xDEADBEEF12))) == len(
        "Hello World -5 u=4294967295 x=deadbeef12")  # fmt: skip
    (line,) = box.kernel.trace.read()
    match = LINE.match(line)
    assert match, line
    assert match.groups() == ("000", "Hello World -5 u=4294967295 x=deadbeef12")


@pytest.mark.parametrize(
    "fmt, size, err",
    [
        (b"no terminator", None, errno.EINVAL),  # no NUL within fmt_size
        (b"%d %d %d %d\0", None, errno.EINVAL),  # four conversions, three arguments
        (b"%q\0", None, errno.EINVAL),
        (b"%hd\0", None, errno.EINVAL),
        (b"%.3d\0", None, errno.EINVAL),
        (b"%sx\0", None, errno.EINVAL),  # %s followed by a letter
        (b"tab\x01\0", None, errno.EINVAL),  # not printable
        (b"ok\0", 2, errno.EINVAL),  # the NUL lies past fmt_size
        (b"50%\0", None, errno.EINVAL),
    ],
)
def test_trace_printk_refuses_bad_formats(fmt, size, err):
    """program: bpf_bprintf_prepare's refusals; nothing reaches the trace pipe."""
    box = Box()
    assert box.run(printk_prog(fmt, size=size)) == neg(err)
    assert box.kernel.trace.read() == []


@pytest.fixture
def env():
    kernel = Kernel(seed=3, verify=False)
    return ExecEnv(memory=kernel.space.memory, kernel=kernel, program=None)


@pytest.mark.parametrize(
    "fmt, args, text",
    [
        (b"%d %i %u", [-1, 2**32 + 7, -1], "-1 7 4294967295"),
        (b"%ld %lu %lld", [-1, -1, 2**63], "-1 18446744073709551615 -9223372036854775808"),
        (b"%x %X %lx %llX", [255, 255, -1, 0xABC], "ff FF ffffffffffffffff ABC"),
        (b"[%5d|%-5d|%05d|%+d|% d]", [42, 42, -42, 7, 7], "[   42|42   |-0042|+7| 7]"),
        (b"%c%c%% 100%%", [ord("o"), ord("k")], "ok% 100%"),
        (b"%px", [0xFFFF888012345678], "ffff888012345678"),
        (b"%pS %ps", [0xFFFFFFFF81000000, 0x10], "0xffffffff81000000 0x10"),
    ],
)
def test_printf_conversions(env, fmt, args, text):
    """direct: bprintf renders what the kernel's bstr_printf prints."""
    assert bprintf(env, fmt, args) == text.encode()


def test_printf_strings_pointers_and_addresses(env):
    """direct: %s from a region and from kernel memory, %p hashed, %pI4 / %pi6."""
    region = env.kernel.space.alloc("strings", 32)
    region.view[:14] = b"from a region\0"
    kmem = kmem_of(env.kernel)
    kaddr = kmem.place(b"kernel\0")
    uaddr = kmem.place(b"user\0", user=True)
    ip4 = kmem.place(bytes([192, 168, 0, 1]))
    ip6 = kmem.place(bytes.fromhex("20010db8000000000000000000000001"))
    got = bprintf(env, b"%s,%s,%pks,%pus,%s.", [region.base, kaddr, kaddr, uaddr, 0xDEAD0000])
    assert got == b"from a region,kernel,kernel,user,."  # an unreadable string prints empty
    assert bprintf(env, b"%pks|%pus", [uaddr, kaddr]) == b"|"  # wrong address space
    assert bprintf(env, b"%pI4 %pi4", [ip4, ip4]) == b"192.168.0.1 192.168.000.001"
    assert bprintf(env, b"%pI6", [ip6]) == b"2001:0db8:0000:0000:0000:0000:0000:0001"
    assert bprintf(env, b"%pi6", [ip6]) == b"20010db8000000000000000000000001"
    hashed = bprintf(env, b"%p %pK", [kaddr, kaddr])
    first, second = hashed.split()
    assert first == second and len(first) == 16 and first.startswith(b"00000000")
    assert first != f"{kaddr:016x}".encode()
    assert bprintf(env, b"%pZ", [0]) == -errno.EINVAL


def test_trace_vprintk_takes_an_argument_array():
    """program: five u64 arguments on the stack; data_len not a multiple of 8 is EINVAL."""
    box = Box()
    fmt = b"%d+%d+%d+%d=%d\0"
    args = b"".join(struct.pack("<q", v) for v in (1, 2, 3, -4, 2))
    src = f"""
        {stack(fmt, -64)}
        {stack(args, -128)}
        mov %r1, %r10
        add %r1, -64
        mov %r2, {len(fmt)}
        mov %r3, %r10
        add %r3, -128
        mov %r4, {{n}}
        call 177
        exit
    """
    assert box.run(src.format(n=40)) == len("1+2+3+-4=2")
    assert LINE.match(box.kernel.trace.read()[0]).group(2) == "1+2+3+-4=2"
    assert box.run(src.format(n=12)) == neg(errno.EINVAL)
    assert box.run(src.format(n=32)) == neg(errno.EINVAL)  # five conversions, four arguments


def test_snprintf_truncates_and_returns_the_full_length():
    """program: "%d-%d" of 1234, 5678 into 8 bytes: "1234-56" + NUL, returns 10."""
    box = Box()
    fmt = b"%d-%d\0"
    src = f"""
        {OUT}
        {stack(fmt, -16)}
        stdw [%r10-32], 1234
        stdw [%r10-24], 5678
        mov %r1, %r6
        mov %r2, {{size}}
        mov %r3, %r10
        add %r3, -16
        mov %r4, %r10
        add %r4, -32
        mov %r5, 16
        call 165
        exit
    """
    assert box.run(src.format(size=8)) == len("1234-5678") + 1
    assert box.out_bytes(10) == b"1234-56\0\0\0"
    assert box.run(src.format(size=64)) == 10
    assert box.out_bytes(10) == b"1234-5678\0"
    assert box.run(src.format(size=0)) == 10  # nothing written, length still returned


# --- callbacks ---------------------------------------------------------------------------------
LOOP = f"""
    {OUT}
    stdw [%r10-8], 0
    mov %r1, {{n}}
    lddw %r2, func(body)
    mov %r3, %r10
    add %r3, -8
    mov %r4, {{flags}}
    call 181
    stxdw [%r6+0], %r0
    ldxdw %r1, [%r10-8]
    stxdw [%r6+8], %r1
    mov %r0, 0
    exit
body:
    ldxdw %r3, [%r2+0]
    add %r3, %r1
    stxdw [%r2+0], %r3
    mov %r0, 0
    jne %r1, {{stop}}, +1
    mov %r0, 1
    exit
"""


def test_bpf_loop_counts_and_stops_early():
    """program: a callback summing indexes; returning 1 at index 3 stops after 4 calls."""
    box = Box()
    box.run(LOOP.format(n=10, flags=0, stop=99))
    assert (box.out_u64(0), box.out_u64(1)) == (10, sum(range(10)))
    box.run(LOOP.format(n=10, flags=0, stop=3))
    assert (box.out_u64(0), box.out_u64(1)) == (4, 0 + 1 + 2 + 3)
    box.run(LOOP.format(n=0, flags=0, stop=3))
    assert (box.out_u64(0), box.out_u64(1)) == (0, 0)


def test_bpf_loop_limits():
    """program: more than 1 << 23 loops is E2BIG, a flag is EINVAL; no call is made."""
    box = Box()
    box.run(LOOP.format(n=(1 << 23) + 1, flags=0, stop=0))
    assert (box.out_u64(0), box.out_u64(1)) == (-errno.E2BIG & M64, 0)
    box.run(LOOP.format(n=3, flags=1, stop=0))
    assert (box.out_u64(0), box.out_u64(1)) == (-errno.EINVAL & M64, 0)


FOR_EACH = f"""
    {OUT}
    stdw [%r10-8], 0
    lddw %r1, map_fd(3)
    lddw %r2, func(visit)
    mov %r3, %r10
    add %r3, -8
    mov %r4, 0
    call 164
    stxdw [%r6+0], %r0
    ldxdw %r1, [%r10-8]
    stxdw [%r6+8], %r1
    mov %r0, 0
    exit
visit:
    ldxw %r5, [%r2+0]
    ldxdw %r0, [%r3+0]
    ldxdw %r1, [%r4+0]
    add %r1, %r0
    stxdw [%r4+0], %r1
    add %r0, 1
    stxdw [%r3+0], %r0
    mov %r0, 0
    jne %r5, {{stop_key}}, +1
    mov %r0, 1
    exit
"""


def _for_each_hash(box: Box) -> None:
    m = box.map(3, MapType.HASH, 4, 8, 16, name="h")
    for k in (5, 6, 7):
        m.update(k.to_bytes(4, "little"), (k * 10).to_bytes(8, "little"))
    box.run(FOR_EACH.format(stop_key=999))
    assert (box.out_u64(0), box.out_u64(1)) == (3, 50 + 60 + 70)
    assert m.lookup((6).to_bytes(4, "little")) == (61).to_bytes(8, "little")  # values written
    box.run(FOR_EACH.format(stop_key=int.from_bytes(next(iter(m.keys())), "little")))
    assert box.out_u64(0) == 1  # stopped at the first key


def test_for_each_over_a_hash_map(fakes):
    """program (fake hash): the callback sees key, value and ctx; may update; 1 stops."""
    _for_each_hash(Box())


def test_real_for_each_over_a_hash_map():
    """program (real BPF_MAP_TYPE_HASH)."""
    real(MapType.HASH)
    _for_each_hash(Box())


def test_for_each_over_an_array_frees_its_key_buffer():
    """program: every index of a 4-entry array in order; the temporary key region is freed."""
    box = Box()
    box.map(3, MapType.ARRAY, 4, 8, 4, name="arr")
    for i in range(4):
        box.maps[3].update(i.to_bytes(4, "little"), (i + 1).to_bytes(8, "little"))
    before = len(box.kernel.space.memory.regions)
    prog = box.load(FOR_EACH.format(stop_key=2))
    run_test(prog, data_in=bytes(64))
    assert (box.out_u64(0), box.out_u64(1)) == (3, 1 + 2 + 3)
    names = [r.name for r in box.kernel.space.memory.regions]
    assert not any(n.startswith("for_each:") for n in names)
    assert len(names) == before + 1  # the program's stack only


# --- ring buffer and perf --------------------------------------------------------------------
RINGBUF = f"""
    lddw %r1, map_fd(3)
    mov %r2, 8
    mov %r3, 0
    call 131
    jeq %r0, 0, fail
    mov %r6, %r0
    stdw [%r6+0], 1
    lddw %r1, map_fd(3)
    mov %r2, 8
    mov %r3, 0
    call 131
    jeq %r0, 0, fail
    mov %r7, %r0
    stdw [%r7+0], 2
    lddw %r1, map_fd(3)
    mov %r2, 8
    mov %r3, 0
    call 131
    jeq %r0, 0, fail
    stdw [%r0+0], 3
    mov %r1, %r0
    mov %r2, 0
    call 133
    mov %r1, %r7
    mov %r2, 0
    call 132
    mov %r1, %r6
    mov %r2, 0
    call 132
    stdw [%r10-8], 4
    lddw %r1, map_fd(3)
    mov %r2, %r10
    add %r2, -8
    mov %r3, 8
    mov %r4, 0
    call 130
    jne %r0, 0, fail
    lddw %r1, map_fd(3)
    mov %r2, %r10
    add %r2, -8
    mov %r3, 8
    mov %r4, 4
    call 130
    {OUT}
    stxdw [%r6+0], %r0
    lddw %r1, map_fd(3)
    mov %r2, 8
    mov %r3, 1
    call 131
    stxdw [%r6+8], %r0
    lddw %r1, map_fd(3)
    mov %r2, 0
    call 134
    stxdw [%r6+16], %r0
    lddw %r1, map_fd(3)
    mov %r2, 1
    call 134
    stxdw [%r6+24], %r0
    mov %r0, 0
    exit
fail:
    mov %r0, 1
    exit
"""


def _ringbuf(box: Box) -> None:
    m = box.map(3, MapType.RINGBUF, 0, 0, 4096, name="rb")
    assert box.run(RINGBUF) == 0
    # output flags beyond the wake-up bits: EINVAL; reserve with a flag: NULL
    assert (box.out_u64(0), box.out_u64(1)) == (-errno.EINVAL & M64, 0)
    assert box.out_u64(2) == 4 * 16  # four 8-byte records with 8-byte headers, unconsumed
    assert box.out_u64(3) == 4096
    records = list(m.consume())
    assert [bytes(r)[:8] for r in records] == [struct.pack("<Q", v) for v in (1, 2, 4)]


def test_ringbuf_reserve_submit_discard_output_query(fakes):
    """program (fake ring buffer): reservation order is consumption order; discarded skipped."""
    _ringbuf(Box())


def test_real_ringbuf_round_trip():
    """program (real BPF_MAP_TYPE_RINGBUF)."""
    real(MapType.RINGBUF)
    _ringbuf(Box())


def test_ringbuf_submit_of_an_unreserved_record_stops_the_run(fakes):
    """program (fake ring buffer): submitting a stack address is a HelperMisuse (VmError)."""
    from pybpf.errors import VmError

    box = Box()
    box.map(3, MapType.RINGBUF, 0, 0, 4096, name="rb")
    with pytest.raises(VmError, match="not a ring buffer record"):
        box.run("mov %r1, %r10\nadd %r1, -8\nmov %r2, 0\ncall 132\nmov %r0, 0\nexit")


PERF = """
    stdw [%r10-8], 0x1234
    mov %r1, %r10
    add %r1, -8
    lddw %r2, map_fd(3)
    lddw %r3, {flags:#x}
    mov %r4, %r10
    add %r4, -8
    mov %r5, 8
    call 25
    exit
"""


def _perf(box: Box) -> Map:
    m = box.map(3, MapType.PERF_EVENT_ARRAY, 4, 4, 2, name="events")
    if not isinstance(m, FakePerfArray):  # a perf event fd (its number, unresolved) on slot 0
        m.update(bytes(4), (7).to_bytes(4, "little"))
    assert box.run(PERF.format(flags=0xFFFFFFFF)) == 0  # BPF_F_CURRENT_CPU: cpu 0
    assert box.run(PERF.format(flags=5)) == neg(errno.E2BIG)
    assert box.run(PERF.format(flags=1 << 52)) == neg(errno.EINVAL)
    return m


def test_perf_event_output(fakes):
    """program (fake perf array): current CPU, index past the end, a bad flag, ctx bytes."""
    box = Box()
    m = _perf(box)
    assert box.run(PERF.format(flags=1)) == neg(errno.EOPNOTSUPP)  # slot 1 is another CPU's
    # XDP: BPF_F_CTXLEN_MASK appends packet bytes (the test run's 64 zero bytes)
    assert box.run(PERF.format(flags=(4 << 32) | 0xFFFFFFFF)) == 0
    assert box.run(PERF.format(flags=(65 << 32) | 0xFFFFFFFF)) == neg(errno.EFAULT)
    assert m.read() == [(0, struct.pack("<Q", 0x1234)), (0, struct.pack("<Q", 0x1234) + bytes(4))]


def test_real_perf_event_output():
    """program (real BPF_MAP_TYPE_PERF_EVENT_ARRAY): the checks the helper makes itself."""
    real(MapType.PERF_EVENT_ARRAY)
    m = _perf(Box())
    assert m.read() == [struct.pack("<Q", 0x1234)]


# --- probe_read --------------------------------------------------------------------------------
PROBE = f"""
    {OUT}
    mov %r1, %r6
    mov %r2, {{size}}
    lddw %r3, {{src:#x}}
    call {{helper}}
    exit
"""


@pytest.mark.parametrize("helper", [84, 85, 99])  # sk_lookup_tcp, sk_lookup_udp, skc_lookup_tcp
@pytest.mark.parametrize(("size", "netns", "flags"), [(12, 0, 0), (36, -1, 0), (36, 0, 1),
                                                      (5, 0, 0), (0, 0, 0)])
def test_socket_lookups_find_nothing_in_a_test_run(helper, size, netns, flags):
    """program: a lookup finds no socket (none exists in a test run): NULL, and
    bpf_sk_release(NULL) is 0."""
    box = Box()
    src = f"""
        {OUT}
        {stack(bytes(range(40)), -40)}
        mov %r2, %r10
        add %r2, -40
        mov %r3, {size}
        mov %r4, {netns}
        mov %r5, {flags}
        call {helper}
        stxdw [%r6+0], %r0
        mov %r1, %r0
        call 86
        stxdw [%r6+8], %r0
        mov %r0, 7
        exit
    """
    assert box.run(src) == 7
    assert (box.out_u64(0), box.out_u64(1)) == (0, 0)


def test_probe_read_of_mapped_and_unmapped_memory():
    """program: a fake task_struct in kernel memory; unmapped / wrong-space reads zero-fill."""
    box = Box()
    kmem = kmem_of(box.kernel)
    assert box.kernel.kmem is kmem and isinstance(kmem, KernelMemory)
    task = kmem.place(struct.pack("<QQ16s", 4242, 0xFFFF888000001000, b"systemd\0"),
                      name="task_struct")  # fmt: skip
    user = kmem.place(b"user bytes", user=True)

    def probe(helper: int, src: int, size: int) -> tuple[int, bytes]:
        box.out.update(bytes(4), b"\xaa" * 64)
        kind = ProgType.KPROBE if helper in (4, 45) else ProgType.XDP  # legacy: tracing only
        src = PROBE.format(size=size, src=src, helper=helper)
        return box.run(src, kind), box.out_bytes(size)

    assert probe(113, task, 8) == (0, struct.pack("<Q", 4242))  # probe_read_kernel
    assert probe(113, task + 16, 16) == (0, b"systemd\0" + bytes(8))
    assert probe(113, task + 24, 32) == (neg(errno.EFAULT), bytes(32))  # runs off the segment
    assert probe(113, 0xFFFF_FFFF_DEAD_0000, 8) == (neg(errno.EFAULT), bytes(8))
    assert probe(113, user, 4) == (neg(errno.ERANGE), bytes(4))  # a user address
    assert probe(112, user, 4) == (0, b"user")  # probe_read_user
    assert probe(112, task, 4) == (neg(errno.EFAULT), bytes(4))  # a kernel address
    assert probe(4, user, 4) == (0, b"user")  # probe_read: by address
    assert probe(4, task, 8) == (0, struct.pack("<Q", 4242))
    assert probe(113, task, 0)[0] == 0


def test_probe_read_str_variants():
    """program: lengths include the NUL; truncation keeps size-1 bytes; faults zero-fill."""
    box = Box()
    kmem = kmem_of(box.kernel)
    name = kmem.place(b"systemd\0")
    user = kmem.place(b"bash\0", user=True)
    edge = kmem.place(b"abc")  # no NUL, and an unmapped gap after it

    def probe(helper: int, src: int, size: int) -> tuple[int, bytes]:
        box.out.update(bytes(4), b"\xaa" * 64)
        kind = ProgType.KPROBE if helper in (4, 45) else ProgType.XDP  # legacy: tracing only
        src = PROBE.format(size=size, src=src, helper=helper)
        return box.run(src, kind), box.out_bytes(size)

    assert probe(115, name, 16) == (8, b"systemd\0" + b"\xaa" * 8)  # probe_read_kernel_str
    assert probe(115, name, 4) == (4, b"sys\0")
    assert probe(115, edge, 3) == (3, b"ab\0")  # truncated: size bytes read, all mapped
    assert probe(115, edge, 4) == (neg(errno.EFAULT), bytes(4))  # the 4th byte faults
    assert probe(114, user, 8) == (5, b"bash\0" + b"\xaa" * 3)  # probe_read_user_str
    assert probe(114, name, 8) == (neg(errno.EFAULT), bytes(8))
    assert probe(115, user, 8) == (neg(errno.ERANGE), bytes(8))
    assert probe(45, user, 8)[0] == 5 and probe(45, name, 8)[0] == 8  # probe_read_str
    assert probe(115, name, 0)[0] == 0


def test_probe_read_from_a_kprobe_and_from_program_memory():
    """program (kprobe via run_context): legacy probe_read of the program's own stack."""
    box = Box()
    src = f"""
        {OUT}
        stdw [%r10-8], 0x55667788
        mov %r1, %r6
        mov %r2, 8
        mov %r3, %r10
        add %r3, -8
        call 4
        exit
    """
    assert box.run(src, ProgType.KPROBE) == 0
    assert box.out_u64(0) == 0x55667788


def test_kmem_segments():
    """direct: overlaps are refused, reads may span adjacent segments, unmap."""
    kmem = KernelMemory()
    kmem.map(0x1000, b"ab")
    kmem.map(0x1002, b"cd")
    assert kmem.read(0x1001, 3) == b"bcd" and kmem.read(0x1003, 2) is None
    with pytest.raises(ValueError):
        kmem.map(0x1001, b"x")
    assert kmem.write(0x1000, b"AB") and not kmem.write(0x1003, b"xy")
    kmem.unmap(0x1002)
    assert kmem.read(0x1000, 3) is None and kmem.read_str(0x1000, 8) == (b"AB", False)


# --- strings -----------------------------------------------------------------------------------
def test_strncmp():
    """program: s1 of s1_sz bytes against a constant string; -1 / 0 / 1."""
    box = Box()

    def cmp(s1: bytes, size: int, s2: bytes) -> int:
        s2z = s2 + bytes(1)
        src = f"""
            {stack(s1, -32)}
            {stack(s2z, -64)}
            mov %r1, %r10
            add %r1, -32
            mov %r2, {size}
            mov %r3, %r10
            add %r3, -64
            call 182
            exit
        """
        r = box.run(src)
        return r - (1 << 32) if r >> 31 else r

    assert cmp(b"hello", 5, b"hello") == 0
    assert cmp(b"hello", 3, b"help") == 0
    assert cmp(b"hello", 4, b"help") == -1
    assert cmp(b"help", 4, b"hello") == 1
    assert cmp(b"ab\0zz", 5, b"ab") == 0  # stops at the NUL
    assert cmp(b"ab", 3, b"abc") == -1
    assert cmp(b"\xff", 1, b"a") == 1  # unsigned bytes


@pytest.mark.parametrize(
    "text, flags, result",
    [
        (b"  -42xyz", 10, (5, 42, True)),
        (b"0x1F", 0, (4, 31, False)),
        (b"0x1F", 16, (4, 31, False)),
        (b"017", 0, (3, 15, False)),
        (b"0xz", 0, (1, 0, False)),  # base 8, the 0 alone
        (b"99999999999999999999", 10, (-errno.ERANGE, 0, False)),
        (b"   ", 10, (-errno.EINVAL, 0, False)),
        (b"12", 7, (-errno.EINVAL, 0, False)),
        (b"12", 0x20 | 10, (-errno.EINVAL, 0, False)),
    ],
)
def test_strtoull(text, flags, result):
    """direct: the kernel's __bpf_strtoull."""
    assert strtoull(text, flags) == result


def test_strtol_and_strtoul():
    """program: the result through the pointer and the characters consumed."""
    box = Box()

    def call(helper: int, text: bytes, base: int) -> tuple[int, int]:
        src = f"""
            {OUT}
            {stack(text, -32)}
            mov %r1, %r10
            add %r1, -32
            mov %r2, {len(text)}
            mov %r3, {base}
            mov %r4, %r6
            call {helper}
            exit
        """
        return box.run(src), box.out_u64(0)

    assert call(105, b" -123 ", 10) == (5, -123 & M64)
    assert call(106, b"ff", 16) == (2, 255)
    assert call(106, b"-1", 10) == (neg(errno.EINVAL), 0)
    assert call(105, b"9223372036854775808", 10) == (neg(errno.ERANGE), 0)
    assert call(105, b"-9223372036854775808", 10) == (20, 1 << 63)


# --- spin locks --------------------------------------------------------------------------------
LOCK = f"""
    {OUT}
    {{body}}
    mov %r0, 0
    exit
"""
TAKE = "mov %r1, %r6\ncall 93"
DROP = "mov %r1, %r6\ncall 94"


def test_spin_lock_and_unlock():
    """program: lock then unlock a lock in a map value runs; the word stays zero."""
    box = Box()
    assert box.run(LOCK.format(body=f"{TAKE}\nstdw [%r6+8], 5\n{DROP}\n{TAKE}\n{DROP}")) == 0
    assert box.out_u64(0) == 0 and box.out_u64(1) == 5


@pytest.mark.parametrize(
    "body, message",
    [
        (f"{TAKE}\n{TAKE}", "already held"),
        (DROP, "no lock is held"),
        (f"{TAKE}\nmov %r1, %r6\nadd %r1, 8\ncall 93", "one lock at a time"),
        (f"{TAKE}\nmov %r1, %r6\nadd %r1, 8\ncall 94", "the held lock is at"),
    ],
)
def test_spin_lock_misuse_is_a_clear_error(body, message):
    """program: what the verifier refuses stops the run with SpinLockError (a VmError)."""
    box = Box()
    with pytest.raises(SpinLockError, match=message) as info:
        box.run(LOCK.format(body=body))
    assert info.value.pc is not None


def test_a_non_gpl_program_cannot_call_gpl_helpers():
    """program: probe_read_kernel is GPL-only; ktime_get_ns is not."""
    box = Box()
    with pytest.raises(KernelError) as info:
        box.load("mov %r1, %r10\nadd %r1, -8\nmov %r2, 0\nmov %r3, 0\ncall 113\nexit",
                 license="Proprietary")  # fmt: skip
    assert info.value.errno == errno.EINVAL
    box.load("call 5\nmov %r0, 0\nexit", license="Proprietary")


def test_misc_attach_facts_default_to_zero():
    """program (kprobe via run_context): get_func_ip and get_attach_cookie are 0 unattached."""
    box = Box()
    src = f"{OUT}\nmov %r7, %r1\ncall 173\nstxdw [%r6+0], %r0\nmov %r1, %r7\ncall 174\nexit"
    assert box.run(src, ProgType.KPROBE) == 0 and box.out_u64(0) == 0


def test_rdonly_prog_flag_still_lets_helpers_read():
    """program: a RDONLY_PROG array holds the trace_printk format (as .rodata does)."""
    box = Box()
    ro = box.map(4, MapType.ARRAY, 4, 16, 1, MapFlag.RDONLY_PROG, "ro")
    ro.update(bytes(4), b"n=%d\0".ljust(16, b"\0"))
    src = "lddw %r1, map_value(4, 0)\nmov %r2, 16\nmov %r3, 7\ncall 6\nexit"
    assert box.run(src) == 3
    assert LINE.match(box.kernel.trace.read()[0]).group(2) == "n=7"
