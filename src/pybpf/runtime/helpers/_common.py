"""What several helper modules share: argument decoding, safe reads, the current task.

Not a family of helpers itself (it defines none).  Register values arrive as
unsigned 64-bit integers; :func:`u32` / :func:`s32` narrow them as the
kernel's C prototypes do.  :func:`map_arg` turns a map pointer argument into
the map, or None when the register does not hold one (the verifier would
have refused the program; helpers then answer ``-EINVAL``).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from functools import cache

from pybpf.errors import VmError

M32 = 0xFFFF_FFFF
M64 = 0xFFFF_FFFF_FFFF_FFFF


class HelperMisuse(VmError):
    """A helper was called in a way the verifier would have refused.

    pybpf has no verifier; rather than hang (a second ``bpf_spin_lock``) or
    corrupt state (submitting a ring buffer record twice), the helper stops
    the run with this error, naming what was wrong.
    """


def u32(value: int) -> int:
    return value & M32


def s32(value: int) -> int:
    value &= M32
    return value - (1 << 32) if value & 0x8000_0000 else value


def s64(value: int) -> int:
    value &= M64
    return value - (1 << 64) if value >> 63 else value


def map_arg(env, address: int):
    """The map whose pointer is ``address``, or None."""
    return env.kernel.map_from_pointer(address)


@cache
def _accepts_cpu(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return any(p.name == "cpu" or p.kind is p.VAR_KEYWORD for p in params)


def call_with_cpu(method, *args, cpu: int):
    """``method(*args, cpu=cpu)`` when it takes a ``cpu`` keyword, else ``method(*args)``."""
    func = getattr(method, "__func__", method)
    if _accepts_cpu(func):
        return method(*args, cpu=cpu)
    return method(*args)


def read_cstr(memory, address: int, limit: int = 1 << 16) -> bytes | None:
    """The NUL-terminated string at ``address`` in a region (NUL excluded), or None.

    None when ``address`` is in no region or the region ends before a NUL
    within ``limit`` bytes (an ARG_PTR_TO_CONST_STR the verifier checked
    is always terminated).
    """
    region = memory.find(address, 1)
    if region is None:
        return None
    off = address - region.base
    view = bytes(region.view[off : off + min(limit, region.size - off)])
    nul = view.find(0)
    return view[:nul] if nul >= 0 else None


# --- the current task -------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """What the get_current_* helpers report of the task a program runs in."""

    pid: int
    tgid: int
    uid: int
    gid: int
    comm: str


def _default_comm() -> str:
    from pybpf.runtime import trace

    return getattr(trace, "_COMM", "python")[:15]


def current_task(env) -> Task:
    """The simulated ``current``.

    ``env.kernel.task`` when the kernel carries one (any object with
    ``pid``, ``tgid``, ``uid``, ``gid``, ``comm`` attributes; missing ones
    default as below), else this Python process: pid = tgid = ``os.getpid()``
    (the trace pipe shows the same pid), its uid and gid, and the comm the
    trace pipe prints (the script's base name, 15 characters at most).
    """
    task = getattr(env.kernel, "task", None)
    pid = os.getpid()
    if task is None:
        return Task(pid, pid, os.getuid(), os.getgid(), _default_comm())
    tpid = getattr(task, "pid", pid)
    return Task(tpid, getattr(task, "tgid", tpid), getattr(task, "uid", os.getuid()),
                getattr(task, "gid", os.getgid()),
                str(getattr(task, "comm", _default_comm()))[:15])  # fmt: skip
