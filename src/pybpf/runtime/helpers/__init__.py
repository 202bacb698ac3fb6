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
load time.  A helper pybpf does not implement still has its kernel
prototype (:data:`pybpf.verifier.helper_protos.KERNEL_PROTOS`): the verifier
checks calls to it as the kernel would, the load succeeds, and calling it
at run time raises :class:`UnimplementedHelperError`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.errors import UnknownHelperError
from pybpf.isa.helper_ids import helper_name
from pybpf.runtime.maps.base import fail
from pybpf.verifier.helper_protos import KERNEL_PROTOS, for_verifier, proto_named
from pybpf.verifier.protos import TAIL_CALL, Arg, ArgFlag, ArgType, HelperProto, Ret
from pybpf.vm.helpers import HelperTable

if TYPE_CHECKING:
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.program import Program


HelperFn = Callable[..., int]


__all__ = ["HELPERS", "Arg", "ArgFlag", "ArgType", "HelperDef", "HelperProto", "Ret",
           "UnimplementedHelperError", "define", "helper_table", "prototypes"]  # fmt: skip


class UnimplementedHelperError(UnknownHelperError):
    """A program called a helper its program type may use but pybpf does not implement.

    The verifier accepted the call (the kernel would have); the run stops
    here, in either engine, with the pc of the call.
    """


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


BPF_F_SLEEPABLE = 1 << 4
_UNKNOWN = object()


def _allowed(spec, attach_type: int) -> frozenset[int]:
    """The helpers a program of ``spec``'s type loaded with ``attach_type`` may call."""
    helpers_for = getattr(spec, "helpers_for", None)
    return helpers_for(attach_type) if helpers_for is not None else spec.helpers


def _owner(allowed: Iterable[int]) -> int | None:
    """The program type whose own helper set ``allowed`` is (the very object), if any."""
    from pybpf.runtime.progtypes import PROG_TYPES

    owners = {t for t, spec in PROG_TYPES.items()
              if allowed is spec.helpers or any(allowed is s for s in
                                                getattr(spec, "by_attach", {}).values())}
    return owners.pop() if len(owners) == 1 else None  # fmt: skip


def _variants(prog_type: int | None) -> dict[int, object]:
    """Helper id -> the prototype ``prog_type`` gets where it differs from the common one
    (the kernel proto its spec names, ``ProgTypeSpec.proto_variants``); ``_UNKNOWN`` for
    a name the verifier's table does not know."""
    if prog_type is None:
        return {}
    from pybpf.runtime.progtypes import PROG_TYPES

    spec = PROG_TYPES.get(prog_type)
    named = getattr(spec, "proto_variants", None) or {}
    out: dict[int, object] = {}
    for ident, symbol in named.items():
        proto = proto_named(symbol)
        out[ident] = _UNKNOWN if proto is None else proto
    return out


def prototypes(allowed: Iterable[int], prog_type: int | None = None,
               prog_flags: int = 0) -> dict[int, HelperProto]:  # fmt: skip
    """The verifier's view of the helpers a program type may call: id -> prototype.

    ``allowed`` is the program type's helper set.  Implemented helpers have
    the prototype they are defined with, tail_call (12) the kernel's
    bpf_tail_call_proto, the others their kernel prototype
    (:data:`~pybpf.verifier.helper_protos.KERNEL_PROTOS`); either with what the
    verifier cannot check yet marked
    (:func:`~pybpf.verifier.helper_protos.for_verifier`; helpers that might
    sleep are checked as the others when ``prog_flags`` has
    BPF_F_SLEEPABLE).  A helper the kernel declares differently for the
    program type has that prototype: ``prog_type``, by default the type
    ``allowed`` belongs to when it is one of :data:`PROG_TYPES
    <pybpf.runtime.progtypes.PROG_TYPES>`' own sets.  A helper whose call
    could not be refused where it must, or whose variant is unknown, is
    left out: the verifier refuses calling it.
    """
    variants = _variants(_owner(allowed) if prog_type is None else prog_type)
    sleepable = bool(prog_flags & BPF_F_SLEEPABLE)
    out = {}
    for ident in allowed:
        variant = variants.get(ident)
        if variant is _UNKNOWN:
            continue
        if ident == 12:
            out[12] = TAIL_CALL
        else:
            if ident in HELPERS and (variant is None or variant == HELPERS[ident].proto):
                proto = HELPERS[ident].proto
            elif ident in KERNEL_PROTOS:
                proto = variant or KERNEL_PROTOS[ident]
            else:
                continue
            proto = for_verifier(ident, proto, sleepable=sleepable)
            if proto is not None:
                out[ident] = proto
    return out


def _unimplemented(ident: int, name: str) -> HelperFn:
    """The dispatch entry of a helper pybpf does not implement: raises when called."""

    def call(env, r1, r2, r3, r4, r5):
        raise UnimplementedHelperError(f"pybpf does not implement helper {name} (id {ident}) yet")

    call.__name__ = f"unimplemented_{name}"
    return call


def helper_table(kernel: Kernel, prog: Program, called: Sequence[int]) -> HelperTable:
    """The dispatch table of ``prog``; refuses at load what the kernel refuses.

    ``called`` are the helper ids the program's ``call`` instructions name.
    Raises KernelError(EINVAL) for an unknown id, a helper the program type
    may not call, or a GPL-only helper in a non-GPL program — with the
    kernel's wording where it has one.  A helper the program type may call
    but pybpf does not implement gets an entry that raises
    :class:`UnimplementedHelperError` when the program calls it.
    """
    from pybpf.runtime.progtypes import PROG_TYPES

    allowed = _allowed(PROG_TYPES[prog.prog_type], prog.expected_attach_type)
    variants = _variants(prog.prog_type)
    table = HelperTable()
    for ident in dict.fromkeys(called):
        if ident == CORE_POISON:  # the verifier refuses it only where it is reachable
            table.register(ident, "core_poison", _core_poison)
            continue
        definition = HELPERS.get(ident)
        if ident == 12 and definition is None:  # tail_call is the interpreter's, not a function
            continue
        proto = variants.get(ident)
        if not isinstance(proto, HelperProto):
            proto = definition.proto if definition is not None else KERNEL_PROTOS.get(ident)
        if proto is None:
            raise fail(errno.EINVAL, f"invalid func unknown#{ident}")
        if ident not in allowed:
            raise fail(errno.EINVAL, f"program of this type is not allowed to use helper "
                                     f"{proto.name}#{ident}")  # fmt: skip
        if proto.gpl_only and not prog.gpl_compatible:
            raise fail(errno.EINVAL, "cannot call GPL-restricted function from non-GPL "
                                     f"compatible program ({proto.name}#{ident})")  # fmt: skip
        fn = definition.fn if definition is not None else _unimplemented(ident, proto.name)
        table.register(ident, proto.name, fn)
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
