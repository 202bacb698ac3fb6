"""BPF_MAP_TYPE_PROG_ARRAY: the tail-call table.

Values are programs (fds from user space, resolved by ``resolve_fd``, or
:meth:`set` with a Program).  The first program stored fixes the map's
program type; a program of another type is EINVAL (the kernel's owner
check).  A user-space lookup returns the program's id; :meth:`program_at`
serves bpf_tail_call.  See :mod:`pybpf.runtime.maps.fd_array` for errnos.
"""

from __future__ import annotations

import errno

from pybpf.runtime.maps import register
from pybpf.runtime.maps.base import MapType, fail
from pybpf.runtime.maps.fd_array import FdArrayMap


@register(MapType.PROG_ARRAY)
class ProgArrayMap(FdArrayMap):
    """Programs by index (see the module docstring)."""

    what = "program"
    owner_type = None

    def accept(self, obj: object) -> None:
        prog_type = getattr(obj, "prog_type", None)
        if prog_type is None or not hasattr(obj, "engine"):
            raise fail(errno.EINVAL, f"{obj!r} is not a program")
        if self.owner_type is not None and prog_type != self.owner_type:
            raise fail(errno.EINVAL, f"program type {prog_type} does not match the map's "
                                     f"{self.owner_type}")  # fmt: skip
        self.owner_type = prog_type

    def program_at(self, index: int):
        """The program in slot ``index`` (None: the tail call falls through)."""
        return self.object_at(index)

    def prog_lookup(self, key_addr: int, *, cpu: int = 0) -> int:
        return 0  # the verifier refuses map_lookup_elem on prog arrays
