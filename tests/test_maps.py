"""Map types in the simulated kernel: semantics, errno values, both faces, stability."""

from __future__ import annotations

import errno
import struct

import pytest

from pybpf.errors import KernelError, MemoryFault
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps import MAP_CLASSES
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType
from pybpf.runtime.maps.common import ENOTSUPP
from pybpf.runtime.maps.perf_event_array import BPF_F_CURRENT_CPU
from pybpf.runtime.maps.ringbuf import BUSY_BIT, DISCARD_BIT


def k32(i: int) -> bytes:
    return struct.pack("<I", i)


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(KernelError) as info:
        fn(*args, **kw)
    return info.value.errno


@pytest.fixture
def kernel() -> Kernel:
    return Kernel(ncpus=2, seed=1)


def make(kernel, t, key, value, n, flags=0, **kw):
    return kernel.map_create(MapAttr(MapType(t), key, value, n, flags, **kw))


class Scratch:
    """A region for keys and values passed to the program-side methods."""

    def __init__(self, kernel: Kernel, size: int = 64) -> None:
        self.memory = kernel.space.memory
        self.region = kernel.space.alloc("scratch", size)

    def put(self, data: bytes, off: int = 0) -> int:
        self.memory.write(self.region.base + off, data)
        return self.region.base + off


def test_every_requested_type_is_registered():
    want = {"ARRAY", "PERCPU_ARRAY", "HASH", "PERCPU_HASH", "LRU_HASH", "LRU_PERCPU_HASH",
            "PROG_ARRAY", "PERF_EVENT_ARRAY", "RINGBUF", "QUEUE", "STACK", "LPM_TRIE",
            "BLOOM_FILTER", "ARRAY_OF_MAPS", "HASH_OF_MAPS", "DEVMAP", "DEVMAP_HASH", "XSKMAP"}
    assert want <= {t.name for t in MAP_CLASSES}


# --- arrays -------------------------------------------------------------------------


def test_array_semantics(kernel):
    m = make(kernel, MapType.ARRAY, 4, 6, 3)
    assert m[k32(2)] == bytes(6) and len(m) == 3
    m[k32(1)] = b"abcdef"
    assert errno_of(m.update, k32(3), bytes(6)) == errno.E2BIG
    assert errno_of(m.lookup, k32(3)) == errno.ENOENT
    assert errno_of(m.update, k32(0), bytes(6), 1) == errno.EEXIST
    assert errno_of(m.delete, k32(0)) == errno.EINVAL
    assert errno_of(m.update, k32(0), bytes(5)) == errno.EINVAL
    assert errno_of(m.lookup_and_delete, k32(0)) == ENOTSUPP
    assert [m.get_next_key(None), m.get_next_key(k32(9)), m.get_next_key(k32(1))] == [
        k32(0), k32(0), k32(2)]  # fmt: skip
    assert errno_of(m.get_next_key, k32(2)) == errno.ENOENT
    assert list(m.items())[1] == (k32(1), b"abcdef")


def test_array_program_face_and_global_data(kernel):
    bss = make(kernel, MapType.ARRAY, 4, 4, 1, MapFlag.MMAPABLE, name="x.bss")
    rodata = make(kernel, MapType.ARRAY, 4, 8, 1, MapFlag.MMAPABLE | MapFlag.RDONLY_PROG)
    rodata.update(k32(0), b"rodata!\0")
    rodata.freeze()
    assert errno_of(rodata.update, k32(0), bytes(8)) == errno.EPERM
    assert errno_of(rodata.freeze) == errno.EPERM
    s = Scratch(kernel)
    key = s.put(k32(0))
    assert rodata.prog_lookup(key) == rodata.direct_value_address()
    assert kernel.space.memory.read(rodata.direct_value_address(), 8) == b"rodata!\0"
    with pytest.raises(MemoryFault):  # programs cannot store into RDONLY_PROG values
        kernel.space.memory.store(0, rodata.direct_value_address(), 4, 1)
    assert rodata.prog_update(key, s.put(bytes(8), 8), 0) == -errno.EPERM
    bss.freeze()  # frozen: user space may not write, programs still may
    assert bss.prog_update(key, s.put(k32(7), 8), 0) == 0
    assert bss[k32(0)] == k32(7)
    assert bss.prog_lookup(s.put(k32(1))) == 0
    assert bss.prog_update(s.put(k32(1)), s.put(k32(7), 8), 0) == -errno.E2BIG
    assert bss.prog_delete(key) == -errno.EINVAL


def test_percpu_array(kernel):
    m = make(kernel, MapType.PERCPU_ARRAY, 4, 4, 2)
    assert m.user_value_size == 16
    m.update(k32(1), b"AAAApad0BBBBpad1")
    assert m.lookup(k32(1)) == b"AAAApad0BBBBpad1"
    s = Scratch(kernel)
    key = s.put(k32(1))
    assert kernel.space.memory.read(m.prog_lookup(key, cpu=1), 4) == b"BBBB"
    assert m.prog_update(key, s.put(b"CCCC", 8), 0, cpu=0) == 0
    assert m.lookup(k32(1)) == b"CCCCpad0BBBBpad1"
    assert errno_of(make, kernel, MapType.PERCPU_ARRAY, 4, 4, 2, MapFlag.MMAPABLE) == errno.EINVAL


# --- hashes -------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [0, MapFlag.NO_PREALLOC])
def test_hash_semantics(kernel, flags):
    m = make(kernel, MapType.HASH, 4, 4, 2, flags)
    m[k32(1)] = k32(10)
    m[k32(2)] = k32(20)
    assert errno_of(m.update, k32(3), k32(30)) == errno.E2BIG
    assert errno_of(m.update, k32(1), k32(0), 1) == errno.EEXIST
    assert errno_of(m.update, k32(3), k32(0), 2) == errno.ENOENT
    assert errno_of(m.update, k32(1), k32(0), 3) == errno.EINVAL
    m.update(k32(1), k32(11), 2)
    assert m.get_next_key(k32(99)) == m.get_next_key(None) == k32(1)
    assert m.lookup_and_delete(k32(1)) == k32(11)
    assert errno_of(m.lookup_and_delete, k32(1)) == errno.ENOENT
    assert errno_of(m.delete, k32(1)) == errno.ENOENT
    assert dict(m.items()) == {k32(2): k32(20)} and k32(2) in m and len(m) == 1


def test_hash_value_address_stability(kernel):
    m = make(kernel, MapType.HASH, 4, 8, 64)
    s = Scratch(kernel)
    m[k32(1)] = b"first..."
    addr = m.prog_lookup(s.put(k32(1)))
    for i in range(2, 60):
        m[k32(i)] = bytes(8)
    assert kernel.space.memory.read(addr, 8) == b"first..."
    m[k32(1)] = b"second.."  # updates write in place
    assert kernel.space.memory.read(addr, 8) == b"second.."
    assert m.prog_delete(s.put(k32(1))) == 0
    assert kernel.space.find(addr, 8) is None  # freed with its element
    assert m.prog_lookup(s.put(k32(1))) == 0
    assert m.prog_delete(s.put(k32(1))) == -errno.ENOENT


def test_percpu_hash_program_update(kernel):
    m = make(kernel, MapType.PERCPU_HASH, 4, 4, 4)
    s = Scratch(kernel)
    assert m.prog_update(s.put(k32(1)), s.put(b"XXXX", 8), 0, cpu=1) == 0
    assert m.lookup(k32(1)) == bytes(8) + b"XXXX" + bytes(4)
    m.update(k32(1), b"a" * 16)
    assert kernel.space.memory.read(m.prog_lookup(s.put(k32(1)), cpu=1), 4) == b"aaaa"


def test_hash_create_refusals(kernel):
    assert errno_of(make, kernel, MapType.HASH, 0, 4, 4) == errno.EINVAL
    assert errno_of(make, kernel, MapType.HASH, 4, 4, 4, MapFlag.NO_COMMON_LRU) == errno.EINVAL
    assert errno_of(make, kernel, MapType.LRU_HASH, 4, 4, 4, MapFlag.NO_PREALLOC) == ENOTSUPP
    assert errno_of(make, kernel, MapType.HASH, 4, 1 << 22, 4) == errno.E2BIG


def test_lru_evicts_least_recently_used(kernel):
    m = make(kernel, MapType.LRU_HASH, 4, 4, 4)  # 2 CPUs: one eviction at a time
    for i in range(4):
        m[k32(i)] = k32(i)
    s = Scratch(kernel)
    m.prog_lookup(s.put(k32(0)))  # a program's lookup counts as use
    m.lookup(k32(1))  # a user-space lookup does not
    m[k32(9)] = k32(9)
    assert sorted(m.keys()) == [k32(0), k32(2), k32(3), k32(9)]
    m2 = make(kernel, MapType.LRU_HASH, 4, 4, 16)  # target_free = 16 / 2 / 2 = 4
    for i in range(17):
        m2[k32(i)] = k32(i)
    assert len(m2) == 13 and k32(0) not in m2 and k32(4) in m2


def test_failing_update_changes_nothing(kernel):
    m = make(kernel, MapType.HASH, 4, 4, 2)
    m[k32(1)] = k32(1)
    regions = len(kernel.space.memory.regions)
    for args in [(k32(1), k32(2), 1), (k32(2), k32(2), 2), (k32(1), k32(2), 7), (k32(1), b"x")]:
        with pytest.raises(KernelError):
            m.update(*args)
    assert dict(m.items()) == {k32(1): k32(1)}
    assert len(kernel.space.memory.regions) == regions


def test_batches(kernel):
    m = make(kernel, MapType.HASH, 4, 4, 3)
    assert m.update_batch([(k32(i), k32(i)) for i in range(2)]) == 2
    with pytest.raises(KernelError) as info:
        m.update_batch([(k32(i), k32(i)) for i in range(5, 9)])
    assert info.value.errno == errno.E2BIG and info.value.count == 1
    assert len(m) == 3
    items, nxt = m.lookup_batch(None, 2)
    assert len(items) == 2 and nxt is not None
    with pytest.raises(KernelError) as info:
        m.delete_batch([k32(0), k32(42)])
    assert info.value.count == 1
    a = make(kernel, MapType.ARRAY, 4, 4, 4)
    assert a.update_batch([(k32(i), k32(i * 3)) for i in range(4)]) == 4
    assert [v for _, v in a.lookup_batch(None, 10)[0]] == [k32(i * 3) for i in range(4)]


# --- queue, stack, bloom --------------------------------------------------------------


def test_queue_and_stack(kernel):
    q = make(kernel, MapType.QUEUE, 0, 4, 2)
    st = make(kernel, MapType.STACK, 0, 4, 2)
    for m in (q, st):
        assert errno_of(m.lookup_and_delete, None) == errno.ENOENT
        m.update(None, k32(1))
        m.update(None, k32(2))
        assert errno_of(m.update, None, k32(3)) == errno.E2BIG
        assert errno_of(m.update, None, k32(3), 1) == errno.EINVAL
        m.update(None, k32(3), 2)  # the oldest goes
    assert [q.lookup_and_delete(None), q.lookup_and_delete(None)] == [k32(2), k32(3)]
    assert [st.lookup(None), st.lookup_and_delete(None), st.lookup_and_delete(None)] == [
        k32(3), k32(3), k32(2)]  # fmt: skip
    s = Scratch(kernel)
    assert q.prog_push(s.put(k32(7)), 0) == 0
    assert q.prog_peek(s.region.base + 8) == 0 and s.memory.read(s.region.base + 8, 4) == k32(7)
    assert q.prog_pop(s.region.base + 16) == 0 and q.prog_pop(s.region.base) == -errno.ENOENT
    assert errno_of(make, kernel, MapType.QUEUE, 4, 4, 2) == errno.EINVAL


def test_bloom_filter(kernel):
    b = make(kernel, MapType.BLOOM_FILTER, 0, 4, 64, map_extra=3)
    assert b.nr_hashes == 3
    for i in range(64):
        b.update(None, k32(i))
    assert all(k32(i) in b for i in range(64))
    assert sum(k32(i) in b for i in range(1000, 3000)) < 400
    assert errno_of(b.lookup, None) == errno.EINVAL  # the value must be given
    assert errno_of(b.update, None, k32(1), 1) == errno.EINVAL
    assert errno_of(b.delete, None) == errno.EOPNOTSUPP
    s = Scratch(kernel)
    assert b.prog_peek(s.put(k32(5))) == 0
    assert b.prog_push(s.put(k32(5000)), 0) == 0 and k32(5000) in b
    assert errno_of(make, kernel, MapType.BLOOM_FILTER, 0, 4, 4, map_extra=16) == errno.EINVAL


# --- lpm trie -------------------------------------------------------------------------


def lpm(plen: int, *data: int) -> bytes:
    return struct.pack("<I", plen) + bytes(data)


def test_lpm_trie(kernel):
    assert errno_of(make, kernel, MapType.LPM_TRIE, 8, 4, 4) == errno.EINVAL  # no NO_PREALLOC
    t = make(kernel, MapType.LPM_TRIE, 8, 4, 3, MapFlag.NO_PREALLOC)
    t[lpm(8, 10, 0, 0, 0)] = k32(8)
    t[lpm(16, 10, 1, 0, 0)] = k32(16)
    t[lpm(17, 10, 1, 255, 255)] = k32(17)
    assert errno_of(t.update, lpm(24, 1, 1, 1, 0), k32(0)) == errno.ENOSPC
    assert t[lpm(32, 10, 1, 2, 3)] == k32(16)
    assert t[lpm(32, 10, 1, 128, 0)] == k32(17)
    assert t[lpm(12, 10, 1, 0, 0)] == k32(8)
    assert errno_of(t.lookup, lpm(32, 11, 0, 0, 0)) == errno.ENOENT
    assert errno_of(t.delete, lpm(12, 10, 0, 0, 0)) == errno.ENOENT
    assert errno_of(t.update, lpm(33, 0, 0, 0, 0), k32(0)) == errno.EINVAL
    assert list(t.keys()) == [lpm(17, 10, 1, 255, 255), lpm(16, 10, 1, 0, 0), lpm(8, 10, 0, 0, 0)]
    s = Scratch(kernel)
    addr = t.prog_lookup(s.put(lpm(32, 10, 9, 9, 9)))
    assert s.memory.read(addr, 4) == k32(8)
    assert t.prog_delete(s.put(lpm(8, 10, 0, 0, 0))) == 0 and kernel.space.find(addr) is None


# --- fd maps ------------------------------------------------------------------------


def test_prog_array(kernel):
    from pybpf.asm import ubpf
    from pybpf.runtime.progtypes import ProgType

    pa = make(kernel, MapType.PROG_ARRAY, 4, 4, 4)
    try:
        prog = kernel.prog_load(ubpf.assemble("mov %r0, 1\nexit"), ProgType.XDP, name="t")
    except Exception as err:
        pytest.skip(f"program loading unavailable: {err}")
    pa.resolve_fd = {7: prog}.get
    pa.update(k32(1), k32(7))
    assert pa.program_at(1) is prog and pa.program_at(0) is None and pa.program_at(99) is None
    assert pa.lookup(k32(1)) == k32(prog.id)
    assert errno_of(pa.update, k32(0), k32(8)) == errno.EBADF
    assert errno_of(pa.update, k32(0), k32(7), 1) == errno.EINVAL
    assert errno_of(pa.delete, k32(9)) == errno.E2BIG
    pa.delete(k32(1))
    assert errno_of(pa.delete, k32(1)) == errno.ENOENT


def test_maps_of_maps(kernel):
    template = make(kernel, MapType.ARRAY, 4, 4, 4)
    inner = make(kernel, MapType.ARRAY, 4, 4, 4)
    other = make(kernel, MapType.ARRAY, 4, 4, 8)
    assert errno_of(make, kernel, MapType.ARRAY_OF_MAPS, 4, 4, 2) == errno.EINVAL
    s = Scratch(kernel)
    for t in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        outer = make(kernel, t, 4, 4, 2, inner_map=template)
        outer.resolve_fd = {3: inner, 4: other}.get
        outer.update(k32(0), k32(3))
        assert errno_of(outer.update, k32(1), k32(4)) == errno.EINVAL
        assert errno_of(outer.update, k32(1), k32(5)) == errno.EBADF
        assert outer.lookup(k32(0)) == k32(inner.id)
        assert outer.prog_lookup(s.put(k32(0))) == inner.pointer.base
        assert outer.prog_lookup(s.put(k32(1))) == 0
        assert errno_of(make, kernel, t, 4, 4, 2, inner_map=outer) == errno.EINVAL


def test_perf_event_array(kernel):
    p = make(kernel, MapType.PERF_EVENT_ARRAY, 4, 4, 2)
    p.update(k32(0), k32(11))
    p.update(k32(1), k32(12))
    assert errno_of(p.lookup, k32(0)) == ENOTSUPP
    assert p.output(BPF_F_CURRENT_CPU, b"a", cpu=1) == 0
    assert p.output(0, b"b", cpu=0) == 0
    assert p.output(0, b"c", cpu=1) == -errno.EOPNOTSUPP  # the event is CPU 0's
    assert p.output(5, b"d") == -errno.E2BIG and p.output(1 << 32, b"e") == -errno.EINVAL
    p.delete(k32(1))
    assert p.output(1, b"f", cpu=1) == -errno.ENOENT
    assert p.read(cpu=1) == [b"a"] and p.read() == [b"b"] and p.read() == []


def test_ringbuf(kernel):
    assert errno_of(make, kernel, MapType.RINGBUF, 0, 0, 4095) == errno.EINVAL
    rb = make(kernel, MapType.RINGBUF, 0, 0, 4096)
    mem = kernel.space.memory
    a = rb.reserve(5)
    b = rb.reserve(16)
    assert a and b == a + 16 and mem.load(0, a - 8, 4) == 5 | BUSY_BIT
    mem.write(a, b"hello")
    rb.submit(a)
    assert rb.consume() == [b"hello"]  # stops at b, still busy
    rb.discard(b)
    assert mem.load(0, b - 8, 4) == 16 | DISCARD_BIT
    assert rb.output(b"xyz") == 0 and rb.consume() == [b"xyz"]
    assert rb.reserve(4096) == 0  # larger than the ring
    big = rb.reserve(4096 - 16)  # wraps: the record stays contiguous
    assert big and rb.reserve(1) == 0 and rb.output(b"z") == -errno.EAGAIN
    mem.write(big, b"w" * 4080)
    rb.submit(big)
    assert rb.consume() == [b"w" * 4080]
    assert rb.output(b"q", 4) == -errno.EINVAL and rb.reserve(8, 1) == 0
    assert errno_of(rb.lookup, None) == ENOTSUPP


def test_redirect_maps(kernel):
    d = make(kernel, MapType.DEVMAP, 4, 8, 4)
    d.update(k32(0), k32(3) + bytes(4))
    assert d.target(0) == 3 and d.target(1) is None
    assert errno_of(d.update, k32(1), k32(3) + bytes(4), 1) == errno.EEXIST
    assert errno_of(d.update, k32(0), k32(0) + k32(9)) == errno.EINVAL  # fd without ifindex
    assert errno_of(d.update, k32(0), k32(3) + k32(9)) == errno.EBADF
    dh = make(kernel, MapType.DEVMAP_HASH, 4, 4, 1)
    dh.update(k32(77), k32(2))
    assert dh.target(77) == 2 and errno_of(dh.update, k32(78), k32(2)) == errno.E2BIG
    x = make(kernel, MapType.XSKMAP, 4, 4, 2)
    sock = object()
    x.resolve_fd = {5: sock}.get
    x.update(k32(1), k32(5))
    assert x.target(1) is sock and errno_of(x.lookup, k32(1)) == errno.EOPNOTSUPP
