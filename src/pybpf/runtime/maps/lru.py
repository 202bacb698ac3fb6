"""BPF_MAP_TYPE_LRU_HASH and BPF_MAP_TYPE_LRU_PERCPU_HASH: hashes that evict.

The kernel preallocates max_entries nodes and never fails an insert for
room: it evicts.  What pybpf models exactly (checked against Linux 6.18):

* **node accounting** — common LRU: every node starts on a global free
  list; a CPU that needs one refills its local free list with up to
  ``target_free = clamp(max_entries / ncpus / 2, 1, 128)`` nodes and, when
  the global list cannot supply them all, evicts the missing number of
  elements at once.  So a full map of 200 entries on 2 CPUs drops 50 keys
  for one insert.  BPF_F_NO_COMMON_LRU: each CPU owns ``max_entries /
  ncpus`` nodes and evicts 4 of its own at a time.  Freed nodes return to
  the local list of their CPU while still "pending" (inserted since that
  CPU last refilled), else to the global list.
* **update order** — an update takes a node *before* looking the key up
  (an update of a present key in a full map can evict other keys, even the
  key itself, which then makes EXIST fail with ENOENT), and a failing
  update returns the node but not the evicted elements.  The per-CPU
  variant takes no node for EXIST and updates present keys in place.
* **what counts as use** — a program's lookup and an update that replaces
  a key; a lookup from user space does not (the kernel's syscall lookup
  leaves the reference bit alone).

What is approximated: the kernel keeps active and inactive lists with
reference bits and rotates them; pybpf keeps one recency order (a use moves
the key to the most recent end) and evicts from the least recent end.  For
sequences without program lookups the two agree on which keys go.
User-space commands run on CPU :attr:`LruHashMap.user_cpu` (0).
"""

from __future__ import annotations

import errno
from collections import OrderedDict

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType, UpdateFlag
from pybpf.runtime.maps.hash import HashMap

LOCAL_FREE_TARGET = 128
PERCPU_FREE_TARGET = 4


@register(MapType.LRU_HASH)
class LruHashMap(HashMap):
    """A hash map that evicts its least recently used elements (module docstring)."""

    lru = True
    user_cpu = 0

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.percpu_lru = bool(attr.map_flags & MapFlag.NO_COMMON_LRU)
        self._recent: OrderedDict[bytes, None] = OrderedDict()  # least recent first
        self._owner: dict[bytes, int] = {}  # key -> CPU (percpu LRU: node's; common: pending)
        if self.percpu_lru:
            # the kernel rounds max_entries up to a multiple of the CPUs
            self._free = [-(-attr.max_entries // ncpus)] * ncpus
        else:
            self.target_free = min(max(attr.max_entries // ncpus // 2, 1), LOCAL_FREE_TARGET)
            self._global_free = attr.max_entries
            self._free = [0] * ncpus

    @property
    def capacity(self) -> int:
        """Nodes the map holds (max_entries, rounded up to the CPUs for NO_COMMON_LRU)."""
        return sum(self._free) + len(self._elems) + (0 if self.percpu_lru else self._global_free)

    # --- nodes ---------------------------------------------------------------------
    def _evict(self, n: int, cpu: int) -> int:
        """Drop up to ``n`` least recent evictable elements; their nodes go to ``cpu``."""
        if self.percpu_lru:
            victims = [k for k in self._recent if self._owner[k] == cpu][:n]
        else:
            victims = [k for k in self._recent if k not in self._owner][:n]
        for key in victims:
            self._drop(key)
        self._free[cpu] += len(victims)
        return len(victims)

    def _pop_node(self, cpu: int) -> bool:
        if self._free[cpu] == 0:
            if self.percpu_lru:
                self._evict(PERCPU_FREE_TARGET, cpu)
            else:
                for key in [k for k, c in self._owner.items() if c == cpu]:
                    del self._owner[key]  # this CPU's pending nodes join the LRU list
                take = min(self._global_free, self.target_free)
                self._global_free -= take
                self._free[cpu] += take
                if take < self.target_free:
                    self._evict(self.target_free - take, cpu)
        if self._free[cpu] == 0:
            return False
        self._free[cpu] -= 1
        return True

    def _push_node(self, cpu: int | None) -> None:
        """Return a node: to ``cpu``'s local list, or None: to the global list."""
        if cpu is None and not self.percpu_lru:
            self._global_free += 1
        else:
            self._free[cpu if cpu is not None else self.user_cpu] += 1

    def _drop(self, key: bytes) -> None:
        """Unlink ``key``'s element and free its region (not its node)."""
        self.space.free(self._elems.pop(key))
        del self._recent[key]
        self._owner.pop(key, None)

    def _remove(self, key: bytes) -> None:
        owner = self._owner.get(key)
        self._drop(key)
        self._push_node(owner)

    def _touch(self, key: bytes) -> None:
        self._recent.move_to_end(key)

    # --- updates -------------------------------------------------------------------
    def _insert(self, key: bytes, flags: int, data: bytes, cpu: int | None) -> int:
        on = self.user_cpu if cpu is None else cpu
        if self.percpu and flags == UpdateFlag.EXIST:
            took = False
        else:
            if not self._pop_node(on):
                return -errno.ENOMEM
            took = True
        present = key in self._elems
        err = 0
        if present and flags == UpdateFlag.NOEXIST:
            err = -errno.EEXIST
        elif not present and flags == UpdateFlag.EXIST:
            err = -errno.ENOENT
        if err or (present and self.percpu):
            if took:  # the unused node was pending on this CPU
                self._push_node(on)
            if not err:
                self._write(self._elems[key], data, cpu)
                self._touch(key)
            return err
        if present:  # the new node replaces the old one, marked used
            self._remove(key)
        region = self._elems[key] = self._new_region(key)
        self._write(region, data, cpu)
        self._recent[key] = None
        self._owner[key] = on
        return 0


@register(MapType.LRU_PERCPU_HASH)
class LruPercpuHashMap(LruHashMap):
    """An LRU hash with one value per CPU in each element's region."""

    percpu = True
