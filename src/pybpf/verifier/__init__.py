"""The verifier: the kernel's verdict on a program, before it is run.

A pure analysis over instructions and a description of the target (program
type, maps, helpers); it imports nothing above :mod:`pybpf.isa`, so the
runtime calls it at load time as BPF_PROG_LOAD calls ``bpf_check``.

Modules, bottom up:

* :mod:`.tnum` — tristate numbers (``kernel/bpf/tnum.c``).
* :mod:`.scalar` — a scalar's bounds: tnum plus signed/unsigned 32/64-bit
  min/max, the ALU transfer functions and branch refinement.
* :mod:`.protos` — helper prototypes (``struct bpf_func_proto``): argument
  and return kinds.
* :mod:`.ctx` — context access rules per program type (``is_valid_access``).
* :mod:`.cfg` — structural checks (subprograms, jumps, reachability, call
  and stack depth) and the xlated rewrites (dead code, constant branches).
* :mod:`.state`, :mod:`.check` — the path-sensitive abstract interpreter,
  with :mod:`.memory` (loads and stores per pointer type), :mod:`.calls`
  (helpers, bpf-to-bpf calls, exit, liveness) and :mod:`.prune` (explored
  states and pruning).
* :mod:`.log` — the kernel-format log; :mod:`.report` — the explanation
  for people.
* :mod:`.api` — :func:`verify`, :class:`Target`, :class:`Verdict`.
"""

from __future__ import annotations

__all__ = ["MapInfo", "Target", "Verdict", "verify"]


def __getattr__(name: str):
    """The package's names, imported from :mod:`.api` when first used: a submodule (the
    helper prototypes the runtime lists) comes without the whole verifier."""
    if name in __all__:
        from pybpf.verifier import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
