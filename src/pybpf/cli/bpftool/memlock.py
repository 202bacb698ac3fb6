"""``bytes_memlock``: what the kernel charges a program or a map, as bpftool shows it.

The numbers come from the kernel's own accounting (``bpf_prog_size`` for a
program, ``bpf_map_memory_usage`` per map type for a map) with the sizes of
Linux 6.18's structures on x86-64, measured with bpftool on this kernel.
"""

from __future__ import annotations

from pybpf.errors import PybpfError
from pybpf.runtime.maps.base import Map, MapFlag, MapType

_PAGE = 4096
PROG_HEADER = 72  # offsetof(struct bpf_prog, insns) on x86-64


def prog_memlock(prog) -> int:
    """bytes_memlock of a program: bpf_prog_size() rounded up to pages."""
    size = PROG_HEADER + prog.bytes_xlated
    return _PAGE * ((size + _PAGE - 1) // _PAGE)


def round8(n: int) -> int:
    return (n + 7) // 8 * 8


def _page_align(n: int) -> int:
    return (n + _PAGE - 1) // _PAGE * _PAGE


def _pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


# the sizes of Linux 6.18's structures on x86-64 (measured with bpftool on this kernel)
_BPF_ARRAY, _BPF_HTAB, _BUCKET, _HTAB_ELEM, _LOCKS = 312, 832, 16, 48, 8
_QUEUE_STACK, _RINGBUF_MAP, _BLOOM, _DTAB = 312, 304, 312, 344


def map_memlock(m: Map, ncpus: int) -> int:
    """The ``memlock`` of /proc/PID/fdinfo: the kernel's bpf_map_memory_usage()."""
    t, entries, vsize = m.map_type, m.max_entries, m.value_size
    if t in (MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
             MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS):  # array_map_mem_usage
        elem = round8(vsize) if t in (MapType.ARRAY, MapType.PERCPU_ARRAY) else 8
        if t == MapType.PERCPU_ARRAY:
            return _BPF_ARRAY + entries * 8 + entries * elem * ncpus
        if m.map_flags & MapFlag.MMAPABLE:
            return _page_align(_BPF_ARRAY) + _page_align(entries * elem)
        return _BPF_ARRAY + entries * elem
    if t in (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
             MapType.HASH_OF_MAPS):  # htab_map_mem_usage
        percpu = t in (MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)
        lru = t in (MapType.LRU_HASH, MapType.LRU_PERCPU_HASH)
        value = 8 if t == MapType.HASH_OF_MAPS else round8(vsize)
        elem = _HTAB_ELEM + round8(m.key_size) + (8 if percpu else value)
        usage = _BPF_HTAB + _BUCKET * _pow2(entries) + 4 * ncpus * _LOCKS
        if not m.map_flags & MapFlag.NO_PREALLOC:
            count = entries + (ncpus if not percpu and not lru else 0)
            usage += elem * count
            if percpu:
                usage += value * ncpus * count
            elif not lru:
                usage += 8 * ncpus
        else:
            count = _count(m)
            usage += (elem + 8) * count
            if percpu:
                usage += 16 * count + value * ncpus * count
        return usage
    if t in (MapType.QUEUE, MapType.STACK):
        return _QUEUE_STACK + (entries + 1) * vsize
    if t in (MapType.RINGBUF, MapType.USER_RINGBUF):
        pages = entries // _PAGE
        return _RINGBUF_MAP + (3 + pages) * _PAGE + (3 + 2 * pages) * 8
    if t == MapType.BLOOM_FILTER:
        hashes = (m.attr.map_extra & 0xF) or 5
        bits = _pow2(max(int(entries * hashes / 0.6931471805599453), 1))
        return _BLOOM + max(bits // 8, 8)
    if t in (MapType.DEVMAP, MapType.XSKMAP, MapType.CPUMAP):
        return _DTAB + entries * 8
    if t == MapType.DEVMAP_HASH:
        return _DTAB + _pow2(entries) * 8 + _count(m) * 64
    if t == MapType.LPM_TRIE:
        return _count(m) * (48 + m.key_size - 4 + round8(vsize))
    return _BPF_ARRAY + entries * round8(vsize)


def _count(m: Map) -> int:
    try:
        return sum(1 for _ in m)
    except PybpfError:
        return 0
