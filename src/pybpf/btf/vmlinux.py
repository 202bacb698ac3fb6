"""The running kernel's BTF (/sys/kernel/btf/vmlinux), parsed once per process."""

from __future__ import annotations

import os

from pybpf.errors import BtfError

from .model import Btf

VMLINUX = "/sys/kernel/btf/vmlinux"

_cache: dict[tuple[str, int, int], Btf] = {}


def load_vmlinux(path: str = VMLINUX) -> Btf | None:
    """The kernel's BTF, or None when ``path`` does not exist (or cannot be read).

    The result is cached per (path, size, mtime) for the life of the process.
    """
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key in _cache:
            return _cache[key]
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        btf = Btf.parse(data)
    except BtfError as e:
        raise BtfError(f"{path}: {e}") from e
    _cache[key] = btf
    return btf


def load_module_btf(name: str, base: Btf | None = None) -> Btf | None:
    """A kernel module's split BTF (/sys/kernel/btf/<name>) over vmlinux."""
    base = base or load_vmlinux()
    path = os.path.join(os.path.dirname(VMLINUX), name)
    if base is None or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return Btf.parse(f.read(), base=base)
