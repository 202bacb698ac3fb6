"""BPF_MAP_TYPE_BLOOM_FILTER (kernel/bpf/bloom_filter.c).

Contract: key_size 0, value_size and max_entries > 0, ``map_extra`` low 4
bits the number of hash functions (0 means 5; any other bit is EINVAL),
flags NUMA_NODE, ZERO_SEED and the access flags.  Push (user update,
``prog_push``) takes flags ANY only (else EINVAL) and never fails for room;
peek (user lookup with the value given, ``prog_peek``) answers 0 when every
bit is set and ENOENT otherwise: no false negatives, false positives
possible.  Delete, get_next_key: EOPNOTSUPP; pop (lookup_and_delete):
ENOTSUPP (524).  The bit array is sized like the kernel's
(max_entries × nr_hashes / ln 2, rounded up to a power of two); the hashes
are pybpf's (seeded BLAKE2b, seed 0 with ZERO_SEED), not jhash, so which
values collide differs from a kernel filter.
"""

from __future__ import annotations

import errno
import hashlib
import random

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import ACCESS_MASK, ENOTSUPP

LN2_NUM, LN2_DEN = 7, 5  # the kernel's 1/ln(2) approximation


@register(MapType.BLOOM_FILTER)
class BloomFilterMap(Map):
    """A bit array with k hashes (see the module docstring)."""

    allowed_flags = MapFlag.NUMA_NODE | MapFlag.ZERO_SEED | ACCESS_MASK

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.nr_hashes = attr.map_extra & 0xF or 5
        nbits = attr.max_entries * self.nr_hashes * LN2_NUM // LN2_DEN
        self.nbits = 1 << max(5, (max(nbits, 1) - 1).bit_length())
        self._bits = bytearray(self.nbits // 8)
        seed = 0 if attr.map_flags & MapFlag.ZERO_SEED else random.getrandbits(32)
        self._seed = seed.to_bytes(4, "little")

    def check_attr(self, attr: MapAttr) -> None:
        super().check_attr(attr)
        if attr.key_size != 0 or attr.value_size == 0 or attr.max_entries == 0:
            raise fail(errno.EINVAL, "bloom filters need key_size 0, value_size > 0")
        if attr.map_extra & ~0xF:
            raise fail(errno.EINVAL, f"map_extra {attr.map_extra:#x}: only 4 bits of hashes")

    def _positions(self, value: bytes) -> list[int]:
        out = []
        for i in range(self.nr_hashes):
            h = hashlib.blake2b(value, digest_size=8, key=self._seed + bytes([i]))
            out.append(int.from_bytes(h.digest(), "little") & (self.nbits - 1))
        return out

    def _push(self, value: bytes, flags: int) -> int:
        if flags != UpdateFlag.ANY:
            return -errno.EINVAL
        for bit in self._positions(value):
            self._bits[bit >> 3] |= 1 << (bit & 7)
        return 0

    def _peek(self, value: bytes) -> int:
        ok = all(self._bits[b >> 3] & (1 << (b & 7)) for b in self._positions(value))
        return 0 if ok else -errno.ENOENT

    # --- user space -------------------------------------------------------------------
    def update(self, key: bytes | None, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        """Push ``value`` (``key`` None or empty)."""
        self._check_writable_from_user()
        if flags & UpdateFlag.F_LOCK:
            raise fail(errno.EINVAL, "no spin lock")
        self._check_value(value)
        err = self._push(bytes(value), flags)
        if err:
            raise fail(-err, "bloom filter push takes BPF_ANY only")

    def lookup(self, key: bytes | None = None, flags: int = 0, *, value: bytes | None = None
               ) -> bytes:  # fmt: skip
        """Peek: ``value`` is required; returns it when maybe present, else ENOENT."""
        if flags:
            raise fail(errno.EINVAL, f"flags {flags:#x}")
        self._check_readable_from_user()
        if value is None:
            raise fail(errno.EINVAL, "a bloom filter lookup needs the value")
        self._check_value(value)
        if self._peek(bytes(value)):
            raise fail(errno.ENOENT, "not in the filter")
        return bytes(value)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, bytes | bytearray) and len(value) == self.value_size \
            and self._peek(bytes(value)) == 0  # fmt: skip

    def delete(self, key: bytes | None) -> None:
        self._check_writable_from_user()
        raise fail(errno.EOPNOTSUPP, "bloom filters cannot delete")

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        raise fail(errno.EOPNOTSUPP, "bloom filters have no keys")

    def lookup_and_delete(self, key: bytes | None = None, flags: int = 0) -> bytes:
        self._check_readable_from_user()
        self._check_writable_from_user()
        raise fail(ENOTSUPP, "bloom filters cannot pop")

    def keys(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    # --- programs -------------------------------------------------------------------
    def prog_push(self, value_addr: int, flags: int) -> int:
        """bpf_map_push_elem: 0 or -EINVAL (flags)."""
        return self._push(self.read(value_addr, self.value_size), flags)

    def prog_peek(self, value_addr: int) -> int:
        """bpf_map_peek_elem: 0 when maybe present, -ENOENT when surely absent."""
        return self._peek(self.read(value_addr, self.value_size))

    def prog_pop(self, value_addr: int) -> int:
        """bpf_map_pop_elem: not supported."""
        return -errno.EOPNOTSUPP
