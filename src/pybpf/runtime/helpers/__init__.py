"""The kernel's helpers: id, name, prototype, availability and implementation.

Every helper is a :class:`HelperDef` in :data:`HELPERS`, keyed by its
``enum bpf_func_id`` number (``pybpf.isa.helper_ids``).  The prototype
(argument and return kinds, as the kernel's ``struct bpf_func_proto``
declares them) is what the verifier will check; ``gpl_only`` helpers are
refused to programs whose license is not GPL-compatible.  Which program
types may call a helper is the program type's business
(:data:`pybpf.runtime.progtypes.PROG_TYPES`).

An implementation is ``fn(env, r1, r2, r3, r4, r5) -> int`` where ``env`` is
the run's :class:`~pybpf.runtime.env.ExecEnv`; pointer arguments are
addresses in the kernel's address space, read and written through
``env.memory``; a negative return is ``-errno`` as in the kernel.

Modules in this package each define a family of helpers and add them with
:func:`define`; :func:`helper_table` builds the per-program dispatch table at
load time.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.isa.helper_ids import helper_name
from pybpf.runtime.maps.base import fail
from pybpf.verifier.protos import TAIL_CALL, Arg, ArgFlag, ArgType, HelperProto, Ret
from pybpf.vm.helpers import HelperTable

if TYPE_CHECKING:
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.program import Program


HelperFn = Callable[..., int]


__all__ = ["HELPERS", "Arg", "ArgFlag", "ArgType", "HelperDef", "HelperProto", "Ret", "define",
           "helper_table", "prototypes"]  # fmt: skip


@dataclass(frozen=True)
class HelperDef:
    """One helper: its kernel id and name, prototype, code.

    ``proto`` is what the verifier checks (:class:`pybpf.verifier.protos.HelperProto`);
    ``args``, ``ret`` and ``gpl_only`` are the prototype's fields as declared.
    """

    id: int
    name: str
    fn: HelperFn
    proto: HelperProto

    @property
    def args(self) -> tuple[Arg | ArgType, ...]:
        return tuple(a if a.flags or a.size else a.base for a in self.proto.args)

    @property
    def ret(self) -> Ret:
        return self.proto.ret

    @property
    def gpl_only(self) -> bool:
        return self.proto.gpl_only


HELPERS: dict[int, HelperDef] = {}


def define(name: str, args: Sequence[Arg | ArgType], ret: Ret, *, gpl_only: bool = False,
           **facts: Any):
    """Decorator: register ``fn`` as the helper called ``name`` (bpf_ prefix optional).

    ``args``, ``ret``, ``gpl_only`` and ``facts`` (the other fields of
    :class:`~pybpf.verifier.protos.HelperProto`: pkt_access, acquire,
    callback...) are the kernel's ``bpf_func_proto`` for the helper.
    """
    from pybpf.isa.helper_ids import helper_id

    def deco(fn: HelperFn) -> HelperFn:
        ident = helper_id(name)
        if ident is None:
            raise ValueError(f"{name} is not in enum bpf_func_id")
        if ident in HELPERS:
            raise ValueError(f"helper {ident} ({name}) is defined twice")
        full = f"bpf_{helper_name(ident)}"
        proto = HelperProto(full, tuple(args), ret, gpl_only=gpl_only, **facts)
        HELPERS[ident] = HelperDef(ident, full, fn, proto)
        return fn

    return deco


def prototypes(allowed: Iterable[int]) -> dict[int, HelperProto]:
    """The verifier's view of the helpers a program type may call: id -> prototype.

    ``allowed`` is the program type's helper set; ids pybpf does not
    implement are left out (the load refuses them), tail_call (12) gets the
    kernel's bpf_tail_call_proto.
    """
    out = {i: HELPERS[i].proto for i in allowed if i in HELPERS}
    if 12 in allowed:
        out[12] = TAIL_CALL
    return out


def helper_table(kernel: Kernel, prog: Program, called: Sequence[int]) -> HelperTable:
    """The dispatch table of ``prog``; refuses at load what the kernel refuses.

    ``called`` are the helper ids the program's ``call`` instructions name.
    Raises KernelError(EINVAL) for an unknown id, a helper the program type
    may not call, or a GPL-only helper in a non-GPL program — with the
    kernel's wording where it has one.
    """
    from pybpf.runtime.progtypes import PROG_TYPES

    allowed = PROG_TYPES[prog.prog_type].helpers
    table = HelperTable()
    for ident in dict.fromkeys(called):
        if ident == CORE_POISON:  # the verifier refuses it only where it is reachable
            table.register(ident, "core_poison", _core_poison)
            continue
        definition = HELPERS.get(ident)
        if ident == 12 and definition is None:  # tail_call is the interpreter's, not a function
            continue
        if definition is None:
            raise fail(errno.EINVAL, f"invalid func unknown#{ident}" if helper_name(ident) is None
                       else f"helper {helper_name(ident)}#{ident} is not supported")  # fmt: skip
        if ident not in allowed:
            raise fail(errno.EINVAL, f"program of this type is not allowed to use helper "
                                     f"{definition.name}#{ident}")  # fmt: skip
        if definition.gpl_only and not prog.gpl_compatible:
            raise fail(errno.EINVAL, "cannot call GPL-restricted function from non-GPL "
                                     f"compatible program ({definition.name}#{ident})")  # fmt: skip
        table.register(ident, definition.name, definition.fn)
    return table


CORE_POISON = 0xBAD2310  # libbpf's call imm for an instruction whose CO-RE relocation failed


def _core_poison(env, *args) -> int:
    from pybpf.errors import VmError

    raise VmError("reached an instruction whose CO-RE relocation failed (libbpf poisoned it "
                  "with call 0xbad2310: the field or type does not exist in the target BTF)")


def _load_implementations() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_load_implementations()
