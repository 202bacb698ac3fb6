"""Program types: their numbers, contexts, helper availability and SEC names.

:data:`PROG_TYPES` maps each supported ``enum bpf_prog_type`` to a
:class:`ProgTypeSpec`: its bpftool name (``xdp``), the helpers it may call
(the kernel's ``*_func_proto`` per type) and how a test run builds its
context (:mod:`pybpf.runtime.context`).  :data:`SEC_TABLE` maps libbpf's
section names to (program type, expected attach type).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum


class ProgType(IntEnum):
    """``enum bpf_prog_type`` (include/uapi/linux/bpf.h)."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


@dataclass(frozen=True)
class ProgTypeSpec:
    """What pybpf knows of one program type.

    ``make_run`` builds the per-run context for a test run
    (:func:`pybpf.runtime.testrun.test_run` calls it); None means the type
    cannot be test-run.
    """

    prog_type: ProgType
    name: str
    helpers: frozenset[int]
    make_run: Callable | None = None
    extra: dict = field(default_factory=dict)


PROG_TYPES: dict[ProgType, ProgTypeSpec] = {}
