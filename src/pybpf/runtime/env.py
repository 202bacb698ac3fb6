"""What a helper sees of the running program: :class:`ExecEnv`.

The interpreter hands its ``env`` to every helper as the first argument.  The
runtime's env carries, besides the address space's memory (the only thing
the vm layer requires), the kernel (maps by pointer, the trace pipe, the
clock, the random source), the program (its type, name, GPL flag) and the
run (its context object and CPU), so helper implementations never reach for
globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pybpf.vm.memory import Memory

if TYPE_CHECKING:  # imports for annotations only: no cycle at run time
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.program import Program


@dataclass
class ExecEnv:
    """One run of one program.

    ``ctx`` is the program type's context object for this run (for XDP the
    :class:`~pybpf.runtime.context` xdp_buff the adjust helpers move), or
    None; ``cpu`` the simulated CPU the run is on (per-CPU maps use it);
    ``packet`` the region LD_ABS/LD_IND read (skb programs); ``scratch`` a
    per-run dict for helpers that keep state within one run (spin locks,
    ringbuf reservations, bpf_loop depth).
    """

    memory: Memory
    kernel: Kernel
    program: Program
    ctx: Any = None
    cpu: int = 0
    packet: Any = None
    packet_headers: Any = None  # where LD_ABS's negative offsets read (vm.ldabs.Headers)
    scratch: dict[str, Any] = field(default_factory=dict)
