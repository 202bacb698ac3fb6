"""BPF_MAP_TYPE_CGROUP_ARRAY: cgroups by index, for bpf_skb_under_cgroup and
bpf_current_task_under_cgroup (kernel/bpf/arraymap.c).

An fd array (:mod:`pybpf.runtime.maps.fd_array` gives the contract: key and
value size 4, max_entries > 0, flags NUMA_NODE/RDONLY/WRONLY; update with
BPF_ANY only, E2BIG out of range, ENOENT deleting an empty slot).  The values
are cgroup directory fds: ``resolve_fd`` turns one into the cgroup, and a
descriptor that names nothing, or an object whose ``kind`` is not "cgroup",
is EBADF (cgroup_get_from_fd).  User space cannot look a slot up (ENOTSUPP,
524): the map has no way to show a cgroup.  :meth:`cgroup_at` serves the
helpers.
"""

from __future__ import annotations

import errno

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import MapType, fail
from pybpf.runtime.maps.fd_array import FdArrayMap


@register(MapType.CGROUP_ARRAY)
class CgroupArrayMap(FdArrayMap):
    """Cgroups by index (see the module docstring)."""

    what = "cgroup"
    sys_lookup = False

    def accept(self, obj: object) -> None:
        kind = getattr(obj, "kind", None)
        if kind is not None and kind != "cgroup":
            raise fail(errno.EBADF, f"{obj!r} is not a cgroup")

    def cgroup_at(self, index: int) -> object | None:
        """The cgroup in slot ``index`` (None when empty or out of range)."""
        return self.object_at(index)

    def items(self):
        return iter(())  # a lookup is ENOTSUPP: nothing user space can read

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return 0  # the verifier refuses map_lookup_elem on cgroup arrays
