"""BPF_MAP_TYPE_LPM_TRIE: longest-prefix match (kernel/bpf/lpm_trie.c).

A key is a native u32 ``prefixlen`` followed by ``key_size - 4`` data bytes
matched most significant bit first.  Contract: BPF_F_NO_PREALLOC is
required; key_size 5..260, value_size >= 1, max_entries > 0 (else EINVAL).
Update and delete match exactly (prefixlen and the first prefixlen bits);
for both, a prefixlen above ``8 * (key_size - 4)`` or flags beyond EXIST are EINVAL,
NOEXIST on a present prefix is EEXIST, EXIST on a missing one ENOENT, and a
new prefix in a full trie ENOSPC (replacing one in a full trie works).
Lookup returns the value of the longest stored prefix no longer than the
key's prefixlen that matches it (ENOENT if none, or if the key's prefixlen
is too large).

The kernel stores the data bytes as given, bits beyond the prefix included,
and get_next_key returns them that way.  Its order is the post-order walk of
the trie: a longer prefix before the shorter one it extends, a 0 branch
before a 1 branch; None, a missing key or a too long prefix start at the
first.  Each value is its own region (valid while the prefix is stored).
"""

from __future__ import annotations

import errno

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ACCESS_MASK,
    ENOTSUPP,
    KMALLOC_MAX_SIZE,
    check_lookup_flags,
    check_update_flags,
    u32,
)  # fmt: skip
from pybpf.vm.memory import Region

DATA_SIZE_MAX = 256


def _bits(data: bytes, n: int) -> str:
    """The first ``n`` bits of ``data``, most significant first, as '0'/'1'."""
    return "".join(f"{b:08b}" for b in data)[:n]


@register(MapType.LPM_TRIE)
class LpmTrieMap(Map):
    """Prefixes to values (see the module docstring)."""

    allowed_flags = MapFlag.NO_PREALLOC | MapFlag.NUMA_NODE | ACCESS_MASK

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.max_prefixlen = 8 * (attr.key_size - 4)
        # prefix bits -> (the key as last stored, value region)
        self._nodes: dict[str, tuple[bytes, Region]] = {}

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        if (attr.max_entries == 0 or not attr.map_flags & MapFlag.NO_PREALLOC
                or not 5 <= attr.key_size <= 4 + DATA_SIZE_MAX
                or not 1 <= attr.value_size <= KMALLOC_MAX_SIZE):  # fmt: skip
            raise fail(errno.EINVAL, "LPM tries need NO_PREALLOC, key_size 5..260, value_size")

    def release(self) -> None:
        for _, region in self._nodes.values():
            self.space.free(region)
        self._nodes.clear()

    def _prefix(self, key: bytes) -> str | None:
        plen = u32(key)
        return None if plen > self.max_prefixlen else _bits(key[4:], plen)

    def _match(self, key: bytes) -> Region | None:
        prefix = self._prefix(key)
        if prefix is None:
            return None
        for n in range(len(prefix), -1, -1):
            node = self._nodes.get(prefix[:n])
            if node is not None:
                return node[1]
        return None

    def _order(self) -> list[str]:
        return sorted(self._nodes, key=lambda p: p + "2")

    # --- -errno primitives ----------------------------------------------------------
    def _update(self, key: bytes, value: bytes, flags: int) -> int:
        if flags > UpdateFlag.EXIST:
            return -errno.EINVAL
        prefix = self._prefix(key)
        if prefix is None:
            return -errno.EINVAL
        node = self._nodes.get(prefix)
        if node is not None and flags == UpdateFlag.NOEXIST:
            return -errno.EEXIST
        if node is None and flags == UpdateFlag.EXIST:
            return -errno.ENOENT
        if node is None and len(self._nodes) >= self.max_entries:
            return -errno.ENOSPC
        region = node[1] if node else self.space.alloc(f"lpm:{self.name}:/{len(prefix)}",
                                                       self.value_size)  # fmt: skip
        region.view[:] = value
        self._nodes[prefix] = (bytes(key), region)
        return 0

    def _delete(self, key: bytes) -> int:
        prefix = self._prefix(key)
        if prefix is None:
            return -errno.EINVAL
        if prefix not in self._nodes:
            return -errno.ENOENT
        self.space.free(self._nodes.pop(prefix)[1])
        return 0

    # --- user space -------------------------------------------------------------------
    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        check_lookup_flags(flags)
        self._check_readable_from_user()
        self._check_key(key)
        region = self._match(bytes(key))
        if region is None:
            raise fail(errno.ENOENT, "no matching prefix")
        return bytes(region.view)

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        self._check_writable_from_user()
        check_update_flags(flags)
        self._check_key(key)
        self._check_value(value)
        err = self._update(bytes(key), bytes(value), flags)
        if err:
            raise fail(-err, "LPM update failed")

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        err = self._delete(bytes(key))
        if err:
            raise fail(-err, "no such prefix")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        order = self._order()
        prefix = None
        if key is not None:
            self._check_key(key)
            prefix = self._prefix(bytes(key))
        if prefix is None or prefix not in self._nodes:
            if not order:
                raise fail(errno.ENOENT, "trie is empty")
            return self._nodes[order[0]][0]
        i = order.index(prefix) + 1
        if i == len(order):
            raise fail(errno.ENOENT, "last prefix")
        return self._nodes[order[i]][0]

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        self._check_readable_from_user()
        self._check_writable_from_user()
        raise fail(ENOTSUPP, "LPM tries have no lookup_and_delete")

    def keys(self):
        return iter([self._nodes[p][0] for p in self._order()])

    def __len__(self) -> int:
        return len(self._nodes)

    # --- programs -------------------------------------------------------------------
    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        region = self._match(self.read(key_addr, self.key_size))
        return region.base if region is not None else 0

    def prog_update(self, key_addr: int, value_addr: int, flags: int, *, cpu: int = 0) -> int:
        key = self.read(key_addr, self.key_size)
        return self._update(key, self.read(value_addr, self.value_size), flags)

    def prog_delete(self, key_addr: int, *, cpu: int = 0) -> int:
        return self._delete(self.read(key_addr, self.key_size))
