"""Helper dispatch: the registry a program's ``call N`` goes through.

A helper is a Python callable ``fn(env, r1, r2, r3, r4, r5) -> int`` where
``env`` is the :class:`Env` of the running program (its memory, for
pointer arguments).  The result becomes r0, truncated to 64 bits.  Ids are
the kernel's ``enum bpf_func_id`` numbers; the runtime layer fills a
registry with the kernel's helpers, tests and the conformance plugin with
their own.  kfuncs (``call`` with src_reg 2) are looked up by BTF id in a
second table.

Tail calls are not helpers here: ``tail_call`` (id 12) is resolved by the
``tail_call`` hook the interpreter is given, because it replaces the running
program instead of returning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pybpf.vm.memory import Memory

TAIL_CALL_ID = 12  # BPF_FUNC_tail_call


class Env(Protocol):
    """What a helper may use of the running program."""

    memory: Memory


HelperFn = Callable[..., int]


@dataclass(frozen=True)
class Helper:
    """A callable with the name listings and errors use (``bpf_trace_printk``)."""

    id: int
    name: str
    fn: HelperFn


@dataclass
class HelperTable:
    """Helpers by id and kfuncs by BTF id.

    ``register`` refuses to replace an id silently; ``get`` answers None for
    an unknown id (the interpreter turns that into UnknownHelperError).
    """

    helpers: dict[int, Helper] = field(default_factory=dict)
    kfuncs: dict[int, Helper] = field(default_factory=dict)

    def register(self, id: int, name: str, fn: HelperFn, *, replace: bool = False) -> None:
        """Add helper ``id``; raises ValueError if taken and not ``replace``."""
        if id in self.helpers and not replace:
            raise ValueError(f"helper {id} is already {self.helpers[id].name}")
        self.helpers[id] = Helper(id, name, fn)

    def register_kfunc(self, btf_id: int, name: str, fn: HelperFn) -> None:
        """Add kfunc ``btf_id``."""
        self.kfuncs[btf_id] = Helper(btf_id, name, fn)

    def get(self, id: int) -> Helper | None:
        """The helper with this id, or None."""
        return self.helpers.get(id)

    def name(self, id: int) -> str | None:
        """The helper's name, or None."""
        helper = self.helpers.get(id)
        return helper.name if helper else None


def conformance_identity(env, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_conformance's helper 5: returns its first argument.

    One named function (not a lambda per table), so a JIT can recognise it
    and compile it in (:func:`pybpf.jit.conformance.native_calls`).
    """
    return r1


def conformance_helpers() -> HelperTable:
    """The helpers the bpf_conformance suite expects: helper 5 returns r1."""
    table = HelperTable()
    table.register(5, "conformance_identity", conformance_identity)
    return table
