"""BPF_MAP_TYPE_PERF_EVENT_ARRAY: bpf_perf_event_output's per-CPU channels.

Values are perf event fds (``resolve_fd`` turns them into objects; without
one the fd number itself is stored).  An event is bound to a CPU: the
object's ``cpu`` attribute, else the slot's index (what perf buffers set
up).  User-space lookup is ENOTSUPP (524); BPF_F_PRESERVE_ELEMS is accepted.

Programs call :meth:`output` with the helper's flags word: its low 32 bits
are an index or BPF_F_CURRENT_CPU; other bits are EINVAL, an index >=
max_entries E2BIG, an empty slot ENOENT, an event of another CPU
EOPNOTSUPP.  Records queue per slot until :meth:`read` takes them.
"""

from __future__ import annotations

import errno
from collections import deque

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType
from pybpf.runtime.maps.fd_array import FdArrayMap

BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK


@register(MapType.PERF_EVENT_ARRAY)
class PerfEventArrayMap(FdArrayMap):
    """Per-slot record queues (see the module docstring)."""

    allowed_flags = FdArrayMap.allowed_flags | MapFlag.PRESERVE_ELEMS
    what = "perf event"
    sys_lookup = False

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1, resolve_fd=None) -> None:
        super().__init__(attr, space, ncpus=ncpus, resolve_fd=resolve_fd)
        self.resolve_fd = resolve_fd or (lambda fd: fd)
        self._records: list[deque[bytes]] = [deque() for _ in range(attr.max_entries)]

    def output(self, flags: int, data: bytes, *, cpu: int = 0) -> int:
        """bpf_perf_event_output: queue ``data``; 0 or -errno."""
        if flags & ~BPF_F_INDEX_MASK:
            return -errno.EINVAL
        index = cpu if flags == BPF_F_CURRENT_CPU else flags
        if index >= self.max_entries:
            return -errno.E2BIG
        event = self._slots.get(index)
        if event is None:
            return -errno.ENOENT
        if getattr(event, "cpu", index) != cpu:
            return -errno.EOPNOTSUPP
        self._records[index].append(bytes(data))
        return 0

    def read(self, cpu: int | None = None) -> list[bytes]:
        """Take the queued records of slot ``cpu`` (None: every slot, in slot order)."""
        slots = range(self.max_entries) if cpu is None else [cpu]
        out: list[bytes] = []
        for i in slots:
            out.extend(self._records[i])
            self._records[i].clear()
        return out
