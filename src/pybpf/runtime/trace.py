"""The trace pipe: where bpf_trace_printk and the printk family write.

Lines have the kernel's layout (kernel/trace/trace_output.c), as
``cat /sys/kernel/tracing/trace_pipe`` shows them::

               <comm>-<pid>     [<cpu>] <flags> <seconds>.<micros>: bpf_trace_printk: <message>

Readers consume lines (a pipe, not a file): :meth:`TracePipe.read` returns
and removes what has been written so far.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque

_COMM = os.path.basename(sys.argv[0] or "python")[:16] or "python"


def format_line(message: str, *, comm: str = _COMM, pid: int | None = None, cpu: int = 0,
                seconds: float | None = None, event: str = "bpf_trace_printk") -> str:  # fmt: skip
    """One trace-pipe line (without the newline)."""
    pid = os.getpid() if pid is None else pid
    seconds = time.monotonic() if seconds is None else seconds
    task = f"{comm}-{pid}"
    return f"{task:>22} [{cpu:03d}] d..21 {seconds:12.6f}: {event}: {message}"


class TracePipe:
    """A bounded queue of trace lines (the oldest are dropped past ``limit``)."""

    def __init__(self, limit: int = 65536) -> None:
        self.lines: deque[str] = deque(maxlen=limit)

    def write(self, message: str, *, cpu: int = 0, event: str = "bpf_trace_printk") -> str:
        """Append the line for ``message``; returns it."""
        line = format_line(message.rstrip("\n"), cpu=cpu, event=event)
        self.lines.append(line)
        return line

    def read(self) -> list[str]:
        """Every line written since the last read, oldest first, removed from the pipe."""
        out = list(self.lines)
        self.lines.clear()
        return out
