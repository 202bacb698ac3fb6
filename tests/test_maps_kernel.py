"""pybpf maps against the running kernel's: the same operations, the same answers.

Every test creates a kernel map through bpf(2) and a pybpf map with the same
attributes, applies one sequence of commands to both (seeded random
sequences plus edge cases) and asserts equal errno values and equal
contents.  Hash iteration order depends on the kernel's seeded buckets, so
contents are compared as sets and get_next_key answers by membership.  The
process is pinned to CPU 0 while it runs so the LRU maps' per-CPU free lists
behave deterministically (pybpf's user-space commands run on CPU 0 too).
Skipped, with the reason, where bpf(2) is unusable.
"""

from __future__ import annotations

import errno
import os
import random
import struct

import pytest

from pybpf.errors import KernelError
from pybpf.kernel import linux
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType

REASON = linux.available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.fixture(autouse=True)
def pinned():
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, before)


def k32(i: int) -> bytes:
    return struct.pack("<I", i)


def outcome(fn, *args, **kw):
    """('ok', result) or ('err', errno)."""
    try:
        return ("ok", fn(*args, **kw))
    except KernelError as err:
        return ("err", err.errno)


class Pair:
    """One kernel map and one pybpf map with the same attributes."""

    def __init__(self, t, key, value, n, flags=0, *, inner=None, map_extra=0):
        self.sim_kernel = Kernel(ncpus=linux.possible_cpus(), seed=1)
        self.fds = {}
        inner_fd = 0
        sim_inner = None
        if inner is not None:
            self.kinner = linux.map_create(*inner)
            inner_fd = self.kinner.fd
            sim_inner = self.sim_kernel.map_create(MapAttr(MapType(inner[0]), *inner[1:]))
        self.k = linux.map_create(t, key, value, n, flags, inner_map_fd=inner_fd,
                                  map_extra=map_extra)  # fmt: skip
        self.p = self.sim_kernel.map_create(MapAttr(MapType(t), key, value, n, flags,
                                                    map_extra=map_extra, inner_map=sim_inner))
        self.p.resolve_fd = self.fds.get
        self.log = []

    def both(self, op: str, *args, compare_result=True):
        a = outcome(getattr(self.k, op), *args)
        b = outcome(getattr(self.p, op), *args)
        self.log.append((op, args, a, b))
        if compare_result or a[0] == "err" or b[0] == "err":
            assert a == b, f"{op}{args}: kernel {a} pybpf {b}\n{self.log[-8:]}"
        return a

    def kernel_keys(self):
        out, key = [], None
        while True:
            try:
                key = self.k.get_next_key(key)
            except KernelError as err:
                assert err.errno == errno.ENOENT
                return out
            out.append(key)

    def assert_same_contents(self, ordered=False):
        kk = self.kernel_keys()
        pk = list(self.p.keys())
        if ordered:
            assert kk == pk
        assert sorted(kk) == sorted(pk)
        for key in kk:
            assert self.k.lookup(key) == self.p.lookup(key), key.hex()


FLAGS = [0, 0, 0, 1, 2, 3, 4]


def random_ops(pair: Pair, rng: random.Random, count: int, keyspace: int, *, vsize: int,
               ordered: bool, gnk_exact: bool) -> None:  # fmt: skip
    for _ in range(count):
        op = rng.choice(["update", "update", "update", "lookup", "delete", "gnk", "lad"])
        key = k32(rng.randrange(keyspace))
        if op == "update":
            value = rng.randbytes(pair.p.user_value_size)
            pair.both("update", key, value, rng.choice(FLAGS))
        elif op == "lookup":
            pair.both("lookup", key)
        elif op == "delete":
            pair.both("delete", key)
        elif op == "lad":
            pair.both("lookup_and_delete", key)
        else:
            start = None if rng.random() < 0.2 else key
            if gnk_exact or start is None or start not in pair.p:
                got = pair.both("get_next_key", start, compare_result=gnk_exact)
                if got[0] == "ok" and not gnk_exact:
                    assert got[1] in list(pair.p.keys())
            else:  # from a present key: the next in each map's own order (or ENOENT at its end)
                got = outcome(pair.k.get_next_key, start)
                assert (got[0] == "err" and got[1] == errno.ENOENT) or got[1] in list(pair.p.keys())
    pair.assert_same_contents(ordered=ordered)


STATS: dict[str, int] = {}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("map_type", [MapType.ARRAY, MapType.PERCPU_ARRAY])
def test_random_arrays(map_type, seed):
    rng = random.Random(seed)
    pair = Pair(map_type, 4, rng.choice([1, 4, 7, 8, 12]), rng.choice([1, 5, 16]))
    random_ops(pair, rng, 300, 20, vsize=pair.p.value_size, ordered=True, gnk_exact=True)
    STATS[f"{map_type.name}"] = STATS.get(map_type.name, 0) + len(pair.log)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("flags", [0, MapFlag.NO_PREALLOC])
@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.PERCPU_HASH])
def test_random_hashes(map_type, flags, seed):
    rng = random.Random(seed)
    pair = Pair(map_type, 4, rng.choice([1, 4, 12]), rng.choice([1, 4, 10]), flags)
    random_ops(pair, rng, 300, 16, vsize=pair.p.value_size, ordered=False, gnk_exact=False)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("flags", [0, MapFlag.NO_COMMON_LRU])
@pytest.mark.parametrize("map_type", [MapType.LRU_HASH, MapType.LRU_PERCPU_HASH])
def test_random_lru(map_type, flags, seed):
    """Return codes and element counts agree; which keys go is compared only when the
    sequence has no replacing updates (the kernel's reference bits then reorder)."""
    rng = random.Random(seed)
    pair = Pair(map_type, 4, 8, rng.choice([4, 8, 16, 40]), flags)
    fresh = 0
    for _ in range(300):
        if rng.random() < 0.8:
            fresh += 1
            pair.both("update", k32(fresh), rng.randbytes(pair.p.user_value_size), 0)
        else:  # user lookups do not count as use on either side
            key = k32(rng.randrange(fresh + 1))
            assert outcome(pair.k.lookup, key)[0] == outcome(pair.p.lookup, key)[0]
        assert len(pair.kernel_keys()) == len(pair.p)
    pair.assert_same_contents()


def test_lru_batch_eviction():
    pair = Pair(MapType.LRU_HASH, 4, 4, 200)
    for i in range(200):
        pair.both("update", k32(i), k32(i), 0)
    pair.both("update", k32(1000), k32(0), 0)
    pair.assert_same_contents()
    assert len(pair.p) == 200 - 200 // linux.possible_cpus() // 2 + 1


def test_array_edges():
    pair = Pair(MapType.ARRAY, 4, 8, 4)
    v = bytes(range(8))
    pair.both("update", k32(4), v, 0)  # E2BIG
    pair.both("update", k32(0), v, 1)  # EEXIST
    pair.both("update", k32(0), v, 2)
    pair.both("update", k32(0), v, 3)  # EINVAL
    pair.both("update", k32(0), v, 4)  # F_LOCK without spin lock
    pair.both("lookup", k32(4))
    pair.both("lookup", k32(0), 1)
    pair.both("delete", k32(0))
    pair.both("lookup_and_delete", k32(0))
    for start in (None, k32(9), k32(3), k32(2)):
        pair.both("get_next_key", start)
    pair.both("freeze")
    pair.both("update", k32(1), v, 0)  # EPERM
    pair.both("freeze")  # EPERM, not EBUSY
    pair.assert_same_contents(ordered=True)


def test_rdonly_wronly_flags():
    ro = Pair(MapType.ARRAY, 4, 4, 2, MapFlag.RDONLY)
    ro.both("update", k32(0), k32(1), 0)
    ro.both("freeze")
    ro.both("lookup", k32(0))
    wo = Pair(MapType.ARRAY, 4, 4, 2, MapFlag.WRONLY)
    wo.both("lookup", k32(0))
    wo.both("get_next_key", None)
    wo.both("update", k32(0), k32(1), 0)


def test_hash_full_and_flags():
    for flags in (0, MapFlag.NO_PREALLOC):
        pair = Pair(MapType.HASH, 4, 4, 2, flags)
        pair.both("update", k32(1), k32(1), 0)
        pair.both("update", k32(2), k32(2), 0)
        pair.both("update", k32(3), k32(3), 0)  # E2BIG
        pair.both("update", k32(1), k32(3), 1)  # EEXIST before E2BIG
        pair.both("update", k32(3), k32(3), 2)  # ENOENT before E2BIG
        pair.both("update", k32(1), k32(9), 0)  # replacing in a full map works
        pair.both("delete", k32(7))
        pair.both("lookup_and_delete", k32(7))
        pair.both("lookup_and_delete", k32(1), 1)
        pair.both("lookup_and_delete", k32(1))
        pair.assert_same_contents()


@pytest.mark.parametrize(
    "args",
    [
        (MapType.ARRAY, 8, 4, 4), (MapType.ARRAY, 4, 0, 4), (MapType.ARRAY, 4, 4, 0),
        (MapType.ARRAY, 4, 4, 4, MapFlag.NO_PREALLOC), (MapType.ARRAY, 4, 4, 4, 0x18),
        (MapType.ARRAY, 4, 4, 4, 0x180), (MapType.ARRAY, 4, 4, 4, MapFlag.PRESERVE_ELEMS),
        (MapType.PERCPU_ARRAY, 4, 4, 4, MapFlag.MMAPABLE), (MapType.PERCPU_ARRAY, 4, 32769, 4),
        (MapType.HASH, 0, 4, 4), (MapType.HASH, 4, 0, 4), (MapType.HASH, 4, 4, 0),
        (MapType.HASH, 4, 4, 4, MapFlag.NO_COMMON_LRU), (MapType.HASH, 4, 4, 4, MapFlag.MMAPABLE),
        (MapType.HASH, 4, (1 << 22) - 52, 1), (MapType.HASH, 4, (1 << 22) - 53, 1),
        (MapType.PERCPU_HASH, 4, 32769, 4), (MapType.LRU_HASH, 4, 4, 4, MapFlag.NO_PREALLOC),
        (MapType.QUEUE, 4, 4, 4), (MapType.QUEUE, 0, 0, 4), (MapType.QUEUE, 0, 4, 0),
        (MapType.QUEUE, 0, 4, 4, MapFlag.NO_PREALLOC), (MapType.QUEUE, 0, (1 << 22) + 1, 1),
        (MapType.STACK, 0, 4, 4, MapFlag.RDONLY_PROG),
        (MapType.LPM_TRIE, 8, 4, 4), (MapType.LPM_TRIE, 4, 4, 4, 1), (MapType.LPM_TRIE, 8, 0, 4, 1),
        (MapType.LPM_TRIE, 261, 4, 4, 1), (MapType.LPM_TRIE, 260, 4, 4, 1),
        (MapType.BLOOM_FILTER, 0, 4, 0), (MapType.BLOOM_FILTER, 4, 4, 4),
        (MapType.BLOOM_FILTER, 0, 4, 4, MapFlag.NO_PREALLOC),
        (MapType.RINGBUF, 0, 0, 4096), (MapType.RINGBUF, 0, 0, 4095), (MapType.RINGBUF, 0, 0, 2048),
        (MapType.RINGBUF, 0, 0, 3 * 4096), (MapType.RINGBUF, 4, 0, 4096),
        (MapType.PROG_ARRAY, 4, 8, 4), (MapType.PERF_EVENT_ARRAY, 4, 4, 4, MapFlag.PRESERVE_ELEMS),
        (MapType.DEVMAP, 4, 12, 4), (MapType.DEVMAP, 4, 8, 4), (MapType.XSKMAP, 4, 8, 4),
        (MapType.DEVMAP_HASH, 4, 4, 4, MapFlag.NO_PREALLOC),
    ],
    ids=str,
)
def test_create_errno(args):
    want = outcome(linux.map_create, *args)
    got = outcome(Kernel(ncpus=linux.possible_cpus()).map_create, MapAttr(*args))
    assert (want[0], want[1] if want[0] == "err" else None) == (
        got[0], got[1] if got[0] == "err" else None)  # fmt: skip


def test_map_extra_only_for_bloom():
    want = outcome(linux.map_create, MapType.ARRAY, 4, 4, 4, 0, map_extra=1)
    got = outcome(Kernel().map_create, MapAttr(MapType.ARRAY, 4, 4, 4, map_extra=1))
    assert want[0] == got[0] == "err" and want[1] == got[1]
    for extra in (16, 0x100):
        want = outcome(linux.map_create, MapType.BLOOM_FILTER, 0, 4, 4, 0, map_extra=extra)
        got = outcome(Kernel().map_create, MapAttr(MapType.BLOOM_FILTER, 0, 4, 4, map_extra=extra))
        assert want == got


@pytest.mark.parametrize("map_type", [MapType.QUEUE, MapType.STACK])
@pytest.mark.parametrize("seed", range(4))
def test_queue_stack(map_type, seed):
    rng = random.Random(seed)
    pair = Pair(map_type, 0, 4, rng.choice([1, 3, 8]))
    for i in range(200):
        op = rng.choice(["update", "update", "lookup", "lookup_and_delete"])
        if op == "update":
            pair.both("update", None, k32(i), rng.choice([0, 0, 1, 2, 3, 4]))
        elif op == "lookup":
            pair.both("lookup", None)
        else:
            pair.both("lookup_and_delete", None, rng.choice([0, 0, 0, 4]))
    pair.both("delete", None)
    pair.both("get_next_key", None)
    pair.both("freeze")
    pair.both("lookup_and_delete", None)  # EPERM on a frozen map
    pair.both("lookup", None)
    pair.both("update", None, k32(1), 0)


def lpm_key(plen: int, *data: int) -> bytes:
    return struct.pack("<I", plen) + bytes(data)


@pytest.mark.parametrize("seed", range(5))
def test_lpm_trie(seed):
    rng = random.Random(seed)
    pair = Pair(MapType.LPM_TRIE, 8, 4, 12, MapFlag.NO_PREALLOC)
    for i in range(250):
        plen = rng.choice([0, 1, 7, 8, 9, 16, 17, 24, 31, 32, 33])
        key = lpm_key(plen, rng.choice([10, 11, 128]), rng.choice([0, 1, 255]),
                      rng.randrange(4), rng.randrange(256))  # fmt: skip
        op = rng.choice(["update", "update", "lookup", "delete", "get_next_key"])
        if op == "update":
            pair.both("update", key, k32(i), rng.choice([0, 0, 1, 2, 3]))
        elif op == "lookup":
            pair.both("lookup", lpm_key(rng.choice([8, 16, 24, 32, 40]), *key[4:]))
        elif op == "delete":
            pair.both("delete", key)
        else:
            pair.both("get_next_key", key if rng.random() < 0.8 else None)
    pair.assert_same_contents(ordered=True)
    pair.both("lookup_and_delete", lpm_key(8, 10, 0, 0, 0))


def test_lpm_full():
    pair = Pair(MapType.LPM_TRIE, 8, 4, 2, MapFlag.NO_PREALLOC)
    pair.both("update", lpm_key(8, 10, 0, 0, 0), k32(1), 0)
    pair.both("update", lpm_key(16, 10, 1, 0, 0), k32(2), 0)
    pair.both("update", lpm_key(24, 10, 1, 2, 0), k32(3), 0)  # ENOSPC
    pair.both("update", lpm_key(16, 10, 1, 9, 9), k32(4), 0)  # replace in a full trie
    pair.both("update", lpm_key(16, 10, 1, 0, 0), k32(4), 1)
    pair.both("update", lpm_key(24, 10, 1, 0, 0), k32(4), 2)
    pair.assert_same_contents(ordered=True)


def test_bloom_filter():
    pair = Pair(MapType.BLOOM_FILTER, 0, 4, 100)
    pushed = [k32(i * 7) for i in range(100)]
    for v in pushed:
        pair.both("update", None, v, 0)
    pair.both("update", None, k32(1), 1)
    for v in pushed:  # no false negatives on either side
        assert outcome(pair.k.peek_value, v)[0] == "ok"
        assert pair.p.lookup(None, value=v) == v
    fp_k = sum(outcome(pair.k.peek_value, k32(10**6 + i))[0] == "ok" for i in range(2000))
    fp_p = sum(k32(10**6 + i) in pair.p for i in range(2000))
    assert fp_k < 200 and fp_p < 200  # ~2% expected with 5 hashes
    pair.both("delete", None)
    pair.both("get_next_key", None)
    pair.both("lookup_and_delete", None)


@pytest.mark.parametrize("outer", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_maps_of_maps(outer):
    pair = Pair(outer, 4, 4, 2, inner=(MapType.ARRAY, 4, 4, 4))
    kinners = {
        "same": linux.map_create(MapType.ARRAY, 4, 4, 4),
        "bigger": linux.map_create(MapType.ARRAY, 4, 4, 8),
        "hash": linux.map_create(MapType.HASH, 4, 4, 4),
        "mmap": linux.map_create(MapType.ARRAY, 4, 4, 4, MapFlag.MMAPABLE),
    }
    attrs = {"same": (MapType.ARRAY, 4, 4, 4), "bigger": (MapType.ARRAY, 4, 4, 8),
             "hash": (MapType.HASH, 4, 4, 4), "mmap": (MapType.ARRAY, 4, 4, 4, 0x400)}
    ids = {}
    for name, km in kinners.items():  # the same fd number names both maps
        sim = pair.sim_kernel.map_create(MapAttr(*attrs[name]))
        pair.fds[km.fd] = sim
        ids[km.fd] = sim.id
    same = k32(kinners["same"].fd)
    pair.both("update", k32(0), k32(9999), 0)  # EBADF
    for name in ("bigger", "hash", "mmap"):
        pair.both("update", k32(0), k32(kinners[name].fd), 0)  # EINVAL
    pair.both("update", k32(0), same, 0)
    pair.both("update", k32(0), same, 1)
    pair.both("update", k32(1), same, 2)
    pair.both("update", k32(5), same, 0)
    pair.both("update", k32(6), same, 0)
    got_k = outcome(pair.k.lookup, k32(0))
    got_p = outcome(pair.p.lookup, k32(0))
    assert got_k[0] == got_p[0] == "ok"
    assert got_p[1] == k32(ids[kinners["same"].fd])  # ids differ between the kernels
    pair.both("lookup", k32(3))
    pair.both("delete", k32(3))
    pair.both("delete", k32(9))
    pair.both("delete", k32(0))
    pair.both("delete", k32(0))
    pair.both("lookup_and_delete", k32(1))


def test_fd_arrays_without_objects():
    prog = Pair(MapType.PROG_ARRAY, 4, 4, 4)
    for op, args in [("lookup", (k32(0),)), ("lookup", (k32(8),)), ("delete", (k32(0),)),
                     ("delete", (k32(9),)), ("update", (k32(0), k32(0), 1)),
                     ("update", (k32(9), k32(0), 0)), ("get_next_key", (k32(9),))]:  # fmt: skip
        prog.both(op, *args)
    rb = Pair(MapType.RINGBUF, 0, 0, 4096)
    rb.both("lookup", None)
    rb.both("get_next_key", None)
    dev = Pair(MapType.DEVMAP, 4, 4, 4)
    for op, args in [("update", (k32(0), k32(1), 0)), ("lookup", (k32(0),)),
                     ("update", (k32(1), k32(1), 1)), ("update", (k32(9), k32(1), 0)),
                     ("delete", (k32(3),)), ("delete", (k32(9),)), ("lookup", (k32(3),)),
                     ("update", (k32(0), k32(0), 0)), ("lookup", (k32(0),))]:  # fmt: skip
        dev.both(op, *args)
    dh = Pair(MapType.DEVMAP_HASH, 4, 4, 2)
    for op, args in [("update", (k32(5), k32(1), 0)), ("update", (k32(6), k32(1), 0)),
                     ("update", (k32(7), k32(1), 0)), ("update", (k32(5), k32(1), 1)),
                     ("update", (k32(9), k32(1), 2)), ("delete", (k32(9),)),
                     ("update", (k32(5), k32(0), 0)), ("lookup", (k32(5),))]:  # fmt: skip
        dh.both(op, *args)
    xsk = Pair(MapType.XSKMAP, 4, 4, 4)
    xsk.both("lookup", k32(0))
    xsk.both("delete", k32(0))
    xsk.both("delete", k32(9))
