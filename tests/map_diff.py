"""Map command sequences answered by pybpf and by the kernel's recording (not a test module).

A sequence drives a ``Maps`` face (pybpf's or the kernel's, from the test module that
defines them) and collects one answer per command; :func:`check` runs it on pybpf and
asserts the answers equal the kernel's recorded ones, naming the first that differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybpf.kernel import linux


def run(maps, sequence: Callable[..., None], *args: Any):
    """``sequence(maps, *args)``, the maps closed afterwards; ``maps`` is returned."""
    try:
        sequence(maps, *args)
    finally:
        maps.close()
    return maps


def ncpus(facts) -> int:
    """The recording kernel's possible CPUs (per-CPU value sizes, LRU free lists)."""
    return facts.fact("possible_cpus", linux.possible_cpus)


def check(facts, key: str, sequence: Callable[..., None], *args: Any, pybpf_maps: Callable,
          kernel_maps: Callable) -> list[Any]:  # fmt: skip
    """pybpf's answers to ``sequence`` are the kernel's recorded ones; they are returned.

    ``pybpf_maps(ncpus)`` and ``kernel_maps()`` make the two faces."""
    ours = run(pybpf_maps(ncpus(facts)), sequence, *args)
    theirs = facts.fact(key, lambda: run(kernel_maps(), sequence, *args).answers)
    assert isinstance(theirs, list), f"{key}: the kernel {theirs}"
    for i, (mine, recorded) in enumerate(zip(ours.answers, theirs, strict=False)):
        if mine != recorded:
            before = [f"  {ours.commands[j]} -> {ours.answers[j]}" for j in range(max(0, i - 8), i)]
            raise AssertionError(f"{key} #{i} {ours.commands[i]}: pybpf {mine}, "
                                 f"the kernel {recorded}\n" + "\n".join(before))  # fmt: skip
    assert len(ours.answers) == len(theirs), f"{key}: {len(ours.answers)} answers, " \
                                             f"the kernel {len(theirs)}"  # fmt: skip
    return ours.answers
