"""BPF_MAP_TYPE_QUEUE (FIFO) and BPF_MAP_TYPE_STACK (LIFO): values without keys.

Contract (kernel/bpf/queue_stack_maps.c): key_size 0, value_size and
max_entries > 0, flags NUMA_NODE and the access flags (else EINVAL);
value_size above KMALLOC_MAX_SIZE is E2BIG.  Push with NOEXIST or flags
beyond EXIST is EINVAL; a full map refuses with E2BIG unless the push says
BPF_EXIST, which drops the *oldest* value (for stacks too).  Pop and peek of
an empty map are ENOENT.  User space: update = push, lookup = peek,
lookup_and_delete = pop (EINVAL with flags; EPERM on a frozen map, whose
peek still works); delete and get_next_key are EINVAL.  Programs use
:meth:`prog_push`, :meth:`prog_pop` and :meth:`prog_peek`, which return 0 or
``-errno`` and copy the value to/from ``value_addr``.
"""

from __future__ import annotations

import errno
from collections import deque

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import ACCESS_MASK, ALLOC_LIMIT, KMALLOC_MAX_SIZE


@register(MapType.QUEUE)
class QueueMap(Map):
    """A bounded FIFO of values (see the module docstring)."""

    allowed_flags = MapFlag.NUMA_NODE | ACCESS_MASK
    lifo = False

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self._values: deque[bytes] = deque()

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        if attr.key_size != 0 or attr.value_size == 0 or attr.max_entries == 0:
            raise fail(errno.EINVAL, "queues and stacks need key_size 0, value_size > 0")
        if attr.value_size > KMALLOC_MAX_SIZE:
            raise fail(errno.E2BIG, f"value_size {attr.value_size} too large")
        if attr.value_size * attr.max_entries > ALLOC_LIMIT:
            raise fail(errno.ENOMEM, "storage exceeds pybpf's allocation limit")

    def snapshot(self) -> list[bytes]:
        """The values, oldest first (what a persistent kernel model saves)."""
        return list(self._values)

    def restore(self, values: list[bytes]) -> None:
        """Replace the contents with ``values`` (oldest first), as :meth:`snapshot` gave them."""
        self._values = deque(bytes(v) for v in values[-self.max_entries :])

    # --- the three operations, -errno style ---------------------------------------
    def _push(self, value: bytes, flags: int) -> int:
        if flags & UpdateFlag.NOEXIST or flags > UpdateFlag.EXIST:
            return -errno.EINVAL
        if len(self._values) >= self.max_entries:
            if not flags & UpdateFlag.EXIST:
                return -errno.E2BIG
            self._values.popleft()  # the oldest goes, for a stack too
        self._values.append(bytes(value))
        return 0

    def _take(self, delete: bool) -> bytes | None:
        if not self._values:
            return None
        if self.lifo:
            return self._values.pop() if delete else self._values[-1]
        return self._values.popleft() if delete else self._values[0]

    # --- user space -------------------------------------------------------------------
    def _check_no_key(self, key: bytes | None) -> None:
        if key:
            raise fail(errno.EINVAL, "queues and stacks have no keys")

    def update(self, key: bytes | None, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        """Push ``value`` (``key`` must be None or empty)."""
        self._check_writable_from_user()
        if flags & UpdateFlag.F_LOCK:
            raise fail(errno.EINVAL, "no spin lock")
        self._check_no_key(key)
        self._check_value(value)
        err = self._push(value, flags)
        if err:
            raise fail(-err, "push failed")

    def lookup(self, key: bytes | None = None, flags: int = 0) -> bytes:
        """Peek."""
        if flags:
            raise fail(errno.EINVAL, f"flags {flags:#x}")
        self._check_readable_from_user()
        value = self._take(delete=False)
        if value is None:
            raise fail(errno.ENOENT, "empty")
        return value

    def lookup_and_delete(self, key: bytes | None = None, flags: int = 0) -> bytes:
        """Pop."""
        if flags & ~UpdateFlag.F_LOCK:
            raise fail(errno.EINVAL, f"flags {flags:#x}")
        self._check_readable_from_user()
        self._check_writable_from_user()
        if flags:
            raise fail(errno.EINVAL, "queues and stacks take no flags")
        value = self._take(delete=True)
        if value is None:
            raise fail(errno.ENOENT, "empty")
        return value

    def delete(self, key: bytes | None) -> None:
        self._check_writable_from_user()
        raise fail(errno.EINVAL, "queues and stacks cannot delete by key")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        raise fail(errno.EINVAL, "queues and stacks have no keys")

    def keys(self):
        return iter(())

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> list[bytes]:
        """The values in pop order (a snapshot)."""
        return list(reversed(self._values)) if self.lifo else list(self._values)

    # --- programs -------------------------------------------------------------------
    def prog_push(self, value_addr: int, flags: int) -> int:
        """bpf_map_push_elem: 0 or -errno."""
        return self._push(self.read(value_addr, self.value_size), flags)

    def prog_pop(self, value_addr: int) -> int:
        """bpf_map_pop_elem: copy the value to ``value_addr``; 0 or -ENOENT."""
        return self._out(value_addr, delete=True)

    def prog_peek(self, value_addr: int) -> int:
        """bpf_map_peek_elem: copy the value to ``value_addr``; 0 or -ENOENT."""
        return self._out(value_addr, delete=False)

    def _out(self, value_addr: int, delete: bool) -> int:
        value = self._take(delete)
        if value is None:
            return -errno.ENOENT
        self.space.memory.write(value_addr, value)
        return 0


@register(MapType.STACK)
class StackMap(QueueMap):
    """A bounded LIFO of values."""

    lifo = True
