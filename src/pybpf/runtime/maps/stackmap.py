"""BPF_MAP_TYPE_STACK_TRACE: call stacks by id, for bpf_get_stackid (kernel/bpf/stackmap.c).

Contract at creation, after map_create's generic checks: flags within
NUMA_NODE, RDONLY, WRONLY and STACK_BUILD_ID; max_entries > 0; key_size 4;
value_size a non-zero multiple of 8 holding at most
``sysctl_perf_event_max_stack`` (127) u64 instruction pointers — with
BPF_F_STACK_BUILD_ID a multiple of the 32-byte ``struct
bpf_stack_build_id`` holding at most 127 of them — else EINVAL;
max_entries above 2^31 is E2BIG.  The table has ``roundup_pow_of_two
(max_entries)`` buckets and room for max_entries stacks.

User space: lookup copies the stack in a bucket (zero-padded to
value_size; ENOENT for an empty or out-of-range id); update is always
EINVAL; delete is E2BIG for an id beyond the buckets and ENOENT for an
empty one; lookup_and_delete takes the stack out (ENOENT likewise);
get_next_key walks the used buckets in order (a missing or out-of-range id
restarts; ENOENT at the end).

Programs: :meth:`StackTraceMap.record` is bpf_get_stackid's work once the
stack is known: flags other than the skip count (low 8 bits),
BPF_F_USER_STACK, BPF_F_FAST_STACK_CMP and BPF_F_REUSE_STACKID are -EINVAL;
skipping every frame is -EFAULT; the stack hashes to a bucket (pybpf's hash,
not the kernel's jhash2): the same stack answers its id, another stack in
the bucket -EEXIST unless BPF_F_REUSE_STACKID replaces it, no room left
-ENOMEM.
"""

from __future__ import annotations

import errno
import hashlib
import struct

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag, fail
from pybpf.runtime.maps.common import (
    ALL_FLAGS,
    check_generic,
    sys_lookup,
    sys_lookup_and_delete,
    sys_update,
    u32,
)  # fmt: skip

PERF_EVENT_MAX_STACK = 127  # sysctl kernel.perf_event_max_stack (default)
BUILD_ID_SIZE = 32  # sizeof(struct bpf_stack_build_id)
CREATE_FLAGS = MapFlag.NUMA_NODE | MapFlag.RDONLY | MapFlag.WRONLY | MapFlag.STACK_BUILD_ID
SKIP_MASK = 0xFF  # BPF_F_SKIP_FIELD_MASK
BPF_F_USER_STACK = 1 << 8
BPF_F_FAST_STACK_CMP = 1 << 9
BPF_F_REUSE_STACKID = 1 << 10
STACKID_FLAGS = SKIP_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID


@register(MapType.STACK_TRACE)
class StackTraceMap(Map):
    """Stacks in hash buckets (see the module docstring)."""

    allowed_flags = ALL_FLAGS  # checked in check_attr, in the kernel's order

    def __init__(self, attr: MapAttr, space, *, ncpus: int = 1) -> None:
        super().__init__(attr, space, ncpus=ncpus)
        self.n_buckets = 1 << max(0, (attr.max_entries - 1).bit_length())
        self._buckets: dict[int, bytes] = {}  # id -> the stack as stored (value bytes)

    def check_attr(self, attr: MapAttr) -> None:
        check_generic(attr)
        v = attr.value_size
        if attr.map_flags & ~CREATE_FLAGS:
            raise fail(errno.EINVAL, f"map_flags {attr.map_flags:#x} not allowed for stack maps")
        if not attr.max_entries or attr.key_size != 4 or v < 8 or v % 8:
            raise fail(errno.EINVAL, "stack maps: max_entries > 0, key_size 4, value_size "
                                     "a multiple of 8")  # fmt: skip
        unit = BUILD_ID_SIZE if attr.map_flags & MapFlag.STACK_BUILD_ID else 8
        if v % unit or v // unit > PERF_EVENT_MAX_STACK:
            raise fail(errno.EINVAL, f"value_size {v}: at most {PERF_EVENT_MAX_STACK} "
                                     f"{unit}-byte entries")  # fmt: skip
        if attr.max_entries > 1 << 31:
            raise fail(errno.E2BIG, f"max_entries {attr.max_entries} > 2^31")

    # --- programs -----------------------------------------------------------------------
    def record(self, ips: list[int] | bytes, flags: int = 0) -> int:
        """bpf_get_stackid: the id of the stack ``ips`` (innermost first), or -errno.

        ``ips`` are instruction pointers (u64) or, for a build-id map, the
        32-byte records as bytes; the low 8 bits of ``flags`` skip frames.
        """
        if flags & ~STACKID_FLAGS:
            return -errno.EINVAL
        unit = BUILD_ID_SIZE if self.map_flags & MapFlag.STACK_BUILD_ID else 8
        data = ips if isinstance(ips, bytes | bytearray) else \
            b"".join(struct.pack("<Q", ip & (2**64 - 1)) for ip in ips)  # fmt: skip
        data = bytes(data[: (self.value_size // unit) * unit])
        skip = (flags & SKIP_MASK) * unit
        if len(data) <= skip:
            return -errno.EFAULT
        data = data[skip:]
        digest = hashlib.blake2b(data, digest_size=4).digest()
        ident = int.from_bytes(digest, "little") & (self.n_buckets - 1)
        stored = self._buckets.get(ident)
        if stored is not None:
            same = hashlib.blake2b(stored, digest_size=4).digest() == digest
            if stored == data or (flags & BPF_F_FAST_STACK_CMP and same):
                return ident
            if not flags & BPF_F_REUSE_STACKID:
                return -errno.EEXIST
        elif len(self._buckets) >= self.max_entries:
            return -errno.ENOMEM
        self._buckets[ident] = data
        return ident

    def stack(self, ident: int) -> bytes | None:
        """The stack stored under ``ident`` (as recorded), or None."""
        return self._buckets.get(ident)

    # --- user space -----------------------------------------------------------------------
    def _value(self, ident: int) -> bytes:
        data = self._buckets.get(ident)
        if data is None:
            raise fail(errno.ENOENT, f"no stack under id {ident}")
        return data + bytes(self.value_size - len(data))

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        sys_lookup(self, flags)
        self._check_key(key)
        return self._value(u32(key))

    def update(self, key: bytes, value: bytes, flags: int = UpdateFlag.ANY) -> None:
        sys_update(self, flags)
        raise fail(errno.EINVAL, "stacks are recorded by programs, not updated")

    def delete(self, key: bytes) -> None:
        self._check_writable_from_user()
        self._check_key(key)
        err = self.prog_delete_id(u32(key))
        if err:
            raise fail(-err, f"delete of stack id {u32(key)} failed")

    def prog_delete_id(self, ident: int) -> int:
        """Delete the stack ``ident``: 0, -E2BIG beyond the buckets, -ENOENT when empty."""
        if ident >= self.n_buckets:
            return -errno.E2BIG
        return 0 if self._buckets.pop(ident, None) is not None else -errno.ENOENT

    def prog_delete(self, key_addr: int, *, cpu: int = 0) -> int:
        return self.prog_delete_id(u32(self.read(key_addr, 4)))

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        sys_lookup_and_delete(self, flags)
        self._check_key(key or b"")
        ident = u32(key)  # type: ignore[arg-type]
        value = self._value(ident)
        del self._buckets[ident]
        return value

    def get_next_key(self, key: bytes | None) -> bytes:
        self._check_readable_from_user()
        start = 0
        if key is not None:
            self._check_key(key)
            ident = u32(key)
            start = ident + 1 if ident < self.n_buckets and ident in self._buckets else 0
        following = [i for i in self._buckets if i >= start]
        if not following:
            raise fail(errno.ENOENT, "no further stack")
        return min(following).to_bytes(4, "little")

    def __len__(self) -> int:
        return len(self._buckets)

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return 0  # the verifier refuses map_lookup_elem on stack maps
